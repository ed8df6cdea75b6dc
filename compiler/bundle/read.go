package bundle

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ErrCorrupt is wrapped by every error Read and Verify return for a bundle
// whose files do not match its manifest.
var ErrCorrupt = errors.New("corrupt bundle")

// Read reads and verifies the bundle at path: a bundle directory or a tar
// file written by WriteTar.
func Read(p string) (*Bundle, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	var files map[string][]byte
	if st.IsDir() {
		files, err = readDir(p)
	} else {
		files, err = readTar(p)
	}
	if err != nil {
		return nil, err
	}
	b, err := Decode(files)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return b, nil
}

func readDir(dir string) (map[string][]byte, error) {
	man, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("%s is not a bundle: %w", dir, err)
	}
	var m Manifest
	if err := json.Unmarshal(man, &m); err != nil {
		return nil, fmt.Errorf("%s: %w: manifest.json: %v", dir, ErrCorrupt, err)
	}
	files := map[string][]byte{ManifestFile: man}
	names := []string{m.Object.File, m.Identities.File, m.Endpoints.File, m.Rules.File}
	for _, s := range m.Maps {
		names = append(names, s.File)
	}
	for _, n := range names {
		if !validName(n) {
			return nil, fmt.Errorf("%s: %w: bad file name %q in manifest", dir, ErrCorrupt, n)
		}
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(n)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %v", dir, ErrCorrupt, err)
		}
		files[n] = data
	}
	return files, nil
}

// validName accepts the relative, clean, slash-separated names a bundle
// uses, so that a manifest cannot point outside the bundle.
func validName(n string) bool {
	return n != "" && path.Clean(n) == n && !path.IsAbs(n) && n != ".." && !strings.HasPrefix(n, "../")
}

func readTar(p string) (map[string][]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %v", p, ErrCorrupt, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %v", p, ErrCorrupt, err)
		}
		files[h.Name] = data
	}
	if _, ok := files[ManifestFile]; !ok {
		return nil, fmt.Errorf("%s is not a bundle: no %s in the archive", p, ManifestFile)
	}
	return files, nil
}

// Decode builds a bundle from its files (name → bytes) and verifies it.
func Decode(files map[string][]byte) (*Bundle, error) {
	b := &Bundle{}
	if err := json.Unmarshal(files[ManifestFile], &b.Manifest); err != nil {
		return nil, fmt.Errorf("%w: manifest.json: %v", ErrCorrupt, err)
	}
	m := &b.Manifest
	if m.Format != FormatVersion {
		return nil, fmt.Errorf("bundle format %d, this polc reads format %d", m.Format, FormatVersion)
	}
	get := func(ref FileRef, what string) ([]byte, error) {
		data, ok := files[ref.File]
		if !ok {
			return nil, fmt.Errorf("%w: %s: file %q is missing", ErrCorrupt, what, ref.File)
		}
		if err := checkDigest(what, ref.File, data, ref.SHA256); err != nil {
			return nil, err
		}
		if len(data) != ref.Size {
			return nil, fmt.Errorf("%w: %s: %s has %d bytes, the manifest says %d", ErrCorrupt, what, ref.File, len(data), ref.Size)
		}
		return data, nil
	}
	var err error
	if b.Object, err = get(m.Object, "object"); err != nil {
		return nil, err
	}
	ids, err := get(m.Identities, "identities")
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(ids, &b.Identities); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, IdentitiesFile, err)
	}
	eps, err := get(m.Endpoints, "endpoints")
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(eps, &b.Endpoints); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, EndpointsFile, err)
	}
	rules, err := get(m.Rules, "rules")
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(rules, &b.Rules); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, RulesFile, err)
	}
	for _, s := range m.Maps {
		data, ok := files[s.File]
		if !ok {
			return nil, fmt.Errorf("%w: map %s: file %q is missing", ErrCorrupt, s.Name, s.File)
		}
		b.Maps = append(b.Maps, Map{MapSpec: s, Data: data})
	}
	if err := b.Verify(); err != nil {
		return nil, err
	}
	return b, nil
}

func checkDigest(what, file string, data []byte, want string) error {
	if got := Digest(data); got != want {
		return fmt.Errorf("%w: %s: %s has SHA-256 %s, the manifest says %s", ErrCorrupt, what, file, got, want)
	}
	return nil
}

// Verify checks what a loader relies on: the source digest, every map's
// digest, record size, count and order (sorted, unique keys), and that
// no map holds more entries than its max.
func (b *Bundle) Verify() error {
	m := &b.Manifest
	if got := SourceDigest(m.Sources); got != m.SourceDigest {
		return fmt.Errorf("%w: source digest %s does not match the sources listed (%s)", ErrCorrupt, m.SourceDigest, got)
	}
	if len(b.Maps) != len(m.Maps) {
		return fmt.Errorf("%w: %d maps, the manifest lists %d", ErrCorrupt, len(b.Maps), len(m.Maps))
	}
	for i := range b.Maps {
		mp := &b.Maps[i]
		// Maps this package does not know (a test's own object) are only
		// checked for consistency; the loader compares them with the object.
		want, err := Spec(mp.Name)
		if err == nil && (mp.KeySize != want.KeySize || mp.ValueSize != want.ValueSize || mp.Type != want.Type) {
			return fmt.Errorf("%w: map %s: %s with %d-byte keys and %d-byte values, want %s with %d and %d",
				ErrCorrupt, mp.Name, mp.Type, mp.KeySize, mp.ValueSize, want.Type, want.KeySize, want.ValueSize)
		}
		if err := checkDigest("map "+mp.Name, mp.File, mp.Data, mp.SHA256); err != nil {
			return err
		}
		n := mp.KeySize + mp.ValueSize
		if n <= 0 || len(mp.Data)%n != 0 || mp.Len() != mp.Entries {
			return fmt.Errorf("%w: map %s: %d bytes, want %d records of %d bytes", ErrCorrupt, mp.Name, len(mp.Data), mp.Entries, n)
		}
		if uint32(mp.Entries) > mp.MaxEntries {
			return fmt.Errorf("%w: map %s: %d entries exceed max_entries %d", ErrCorrupt, mp.Name, mp.Entries, mp.MaxEntries)
		}
		for j := 1; j < mp.Len(); j++ {
			prev, _ := mp.Record(j - 1)
			key, _ := mp.Record(j)
			if bytes.Compare(prev, key) >= 0 {
				return fmt.Errorf("%w: map %s: records %d and %d are not in strictly increasing key order", ErrCorrupt, mp.Name, j-1, j)
			}
		}
	}
	// Endpoints are numbered 1, 2, ... in name order: the runtime binds
	// interfaces by these numbers and must find each name once.
	for i, e := range b.Endpoints {
		if e.Index != uint32(i)+1 {
			return fmt.Errorf("%w: %s: endpoint %q has index %d, want %d", ErrCorrupt, EndpointsFile, e.Name, e.Index, i+1)
		}
		if i > 0 && b.Endpoints[i-1].Name >= e.Name {
			return fmt.Errorf("%w: %s: endpoints %q and %q are not in strictly increasing name order", ErrCorrupt, EndpointsFile, b.Endpoints[i-1].Name, e.Name)
		}
	}
	return nil
}
