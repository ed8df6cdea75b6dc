package bundle

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadRefusesHostileFiles: a bundle's files must be regular files no
// larger than its manifest says; links to devices, FIFOs and huge files
// are refused before they are read, so a hostile bundle can neither
// exhaust memory nor hang the reader.
func TestReadRefusesHostileFiles(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(dir string) error
		want   string
	}{
		{"a map that is a link to /dev/zero", func(dir string) error {
			p := filepath.Join(dir, "maps/policy.bin")
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Symlink("/dev/zero", p)
		}, "policy.bin is not a regular file but a symbolic link"},
		{"a FIFO for the rules", func(dir string) error {
			p := filepath.Join(dir, RulesFile)
			if err := os.Remove(p); err != nil {
				return err
			}
			return syscall.Mkfifo(p, 0o644)
		}, "rules.json is not a regular file but a named pipe"},
		{"a manifest that is a link", func(dir string) error {
			p := filepath.Join(dir, ManifestFile)
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(p+".real", data, 0o644); err != nil {
				return err
			}
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Symlink(ManifestFile+".real", p)
		}, "manifest.json is not a regular file but a symbolic link"},
		{"a file larger than the manifest says", func(dir string) error {
			f, err := os.OpenFile(filepath.Join(dir, IdentitiesFile), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write(make([]byte, 1<<20))
			return err
		}, "more than the"},
		{"a manifest that claims a huge object", func(dir string) error {
			return editManifest(dir, func(s string) string {
				i := strings.Index(s, `"object"`)
				j := i + strings.Index(s[i:], `"size": `) + len(`"size": `)
				k := j + strings.Index(s[j:], ",")
				return s[:j] + "68719476736" + s[k:]
			})
		}, "more than a bundle file may have"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := Write(dir, sample(t)); err != nil {
				t.Fatal(err)
			}
			if err := c.mutate(dir); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { _, err := Read(dir); done <- err }()
			select {
			case err := <-done:
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("Read: %v, want ErrCorrupt mentioning %q", err, c.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Read hangs")
			}
		})
	}
}

// writeTarFiles writes a tar of the given entries, in order.
func writeTarFiles(t *testing.T, entries []*tar.Header, data map[string][]byte) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if d, ok := data[h.Name]; ok {
			if _, err := tw.Write(d); err != nil {
				t.Fatal(err)
			}
		}
	}
	// no Close for a truncated archive: the caller asked for what it wrote
	_ = tw.Flush()
	p := filepath.Join(t.TempDir(), "b.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReadTar: a tar made by tar itself (tar -C dir -cf x.tar ., with ./
// names and directory entries) is a bundle; an entry whose declared size
// is beyond the limits (a sparse file's logical size, say) is refused
// before it is read, and so is a name given twice.
func TestReadTar(t *testing.T) {
	b := sample(t)
	files, err := b.Files()
	if err != nil {
		t.Fatal(err)
	}
	dotted := []*tar.Header{{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755}, {Name: "./maps/", Typeflag: tar.TypeDir, Mode: 0o755}}
	data := map[string][]byte{}
	for _, f := range files {
		name := "./" + f.Name
		dotted = append(dotted, &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.Data))})
		data[name] = f.Data
	}
	got, err := Read(writeTarFiles(t, dotted, data))
	if err != nil {
		t.Fatalf("a tar with ./ names: %v", err)
	}
	if got.Text() != b.Text() {
		t.Errorf("the tar with ./ names reads as another bundle")
	}

	huge := []*tar.Header{{Name: ManifestFile, Typeflag: tar.TypeReg, Mode: 0o644, Size: 64 << 30}}
	if _, err := Read(writeTarFiles(t, huge, nil)); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "more than a bundle file may have") {
		t.Errorf("a 64 GiB manifest entry: %v", err)
	}
	twice := append(dotted[2:], &tar.Header{Name: "manifest.json", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2})
	data["manifest.json"] = []byte("{}")
	if _, err := Read(writeTarFiles(t, twice, data)); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a name given twice: %v", err)
	}
}

// TestDumpQuotesControlCharacters: labels, names and rule text with
// control characters print quoted in polc inspect's dump.
func TestDumpQuotesControlCharacters(t *testing.T) {
	b := sample(t)
	b.Identities = append(b.Identities, Identity{ID: 999, Kind: IdentityEndpoint, Labels: []string{"app=x\x1b[31mred"}})
	b.Rules = append(b.Rules, Rule{ID: 99, File: "a.pol", Line: 1, Col: 1, Policy: "p\x07", Text: "ingress allow from app=x\x1b[2J"})
	text := b.Text()
	if strings.ContainsAny(text, "\x1b\x07") {
		t.Fatalf("the dump carries control characters")
	}
	for _, want := range []string{`{"app=x\x1b[31mred"}`, `"p\a"`, `"ingress allow from app=x\x1b[2J"`} {
		if !strings.Contains(text, want) {
			t.Errorf("the dump lacks %s", want)
		}
	}
}
