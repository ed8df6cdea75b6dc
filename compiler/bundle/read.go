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
	"syscall"
)

// ErrCorrupt is wrapped by every error Read and Verify return for a bundle
// whose files do not match its manifest.
var ErrCorrupt = errors.New("corrupt bundle")

// Limits on what Read reads, so that a hostile bundle (a sparse tar entry
// of 64 GiB, a file that is a link to /dev/zero, a FIFO) cannot exhaust
// memory or hang the reader. A policy of 4 million entries has map files
// of about 100 MiB; the limits leave room above that.
const (
	// MaxManifestSize bounds manifest.json.
	MaxManifestSize = 16 << 20
	// MaxFileSize bounds any one file of a bundle.
	MaxFileSize = 1 << 30
	// MaxBundleSize bounds all files of a bundle together.
	MaxBundleSize = 2 << 30
)

// Read reads and verifies the bundle at path: a bundle directory or a tar
// file written by WriteTar (or by tar itself, ./ prefixes and all). Every
// file must be a regular file, no larger than the manifest says (and the
// limits above); the manifest is read first.
func Read(p string) (*Bundle, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	var files map[string][]byte
	switch {
	case st.IsDir():
		files, err = readDir(p)
	case st.Mode().IsRegular():
		files, err = readTar(p)
	default:
		return nil, fmt.Errorf("%s is not a bundle: a bundle is a directory or a tar file, not %s", p, fileKind(st.Mode()))
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
	man, err := readRegular(filepath.Join(dir, ManifestFile), MaxManifestSize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is not a bundle: %w", dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", dir, ErrCorrupt, err)
	}
	var m Manifest
	if err := json.Unmarshal(man, &m); err != nil {
		return nil, fmt.Errorf("%s: %w: manifest.json: %v", dir, ErrCorrupt, err)
	}
	sizes, err := m.fileSizes()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	files := map[string][]byte{ManifestFile: man}
	for n, size := range sizes {
		data, err := readRegular(filepath.Join(dir, filepath.FromSlash(n)), size)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %v", dir, ErrCorrupt, err)
		}
		files[n] = data
	}
	return files, nil
}

// fileSizes lists every file the manifest names with the size it gives
// (the sizes checked against the limits), refusing names that leave the
// bundle and totals beyond MaxBundleSize.
func (m *Manifest) fileSizes() (map[string]int64, error) {
	sizes := map[string]int64{}
	add := func(name string, size int64) error {
		if !validName(name) {
			return fmt.Errorf("%w: bad file name %q in manifest", ErrCorrupt, name)
		}
		if size < 0 || size > MaxFileSize {
			return fmt.Errorf("%w: %s: %d bytes, more than a bundle file may have (%d MiB)", ErrCorrupt, name, size, MaxFileSize>>20)
		}
		sizes[name] = size
		return nil
	}
	for _, r := range []FileRef{m.Object, m.Identities, m.Endpoints, m.Rules} {
		if err := add(r.File, int64(r.Size)); err != nil {
			return nil, err
		}
	}
	for _, s := range m.Maps {
		rec := int64(s.KeySize) + int64(s.ValueSize)
		if s.KeySize < 0 || s.ValueSize < 0 || s.Entries < 0 || rec > 1<<16 {
			return nil, fmt.Errorf("%w: map %s: bad record layout in manifest", ErrCorrupt, s.Name)
		}
		if err := add(s.File, int64(s.Entries)*rec); err != nil {
			return nil, err
		}
	}
	var total int64
	for _, s := range sizes {
		total += s
	}
	if total > MaxBundleSize {
		return nil, fmt.Errorf("%w: the manifest lists %d bytes of files, more than a bundle may have (%d MiB)", ErrCorrupt, total, MaxBundleSize>>20)
	}
	return sizes, nil
}

// readRegular reads a regular file (not a link, device or FIFO) of at most
// max bytes: a larger one is an error, not truncated.
func readRegular(p string, max int64) ([]byte, error) {
	st, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file but %s", filepath.Base(p), fileKind(st.Mode()))
	}
	if st.Size() > max {
		return nil, fmt.Errorf("%s has %d bytes, more than the %d the manifest allows", filepath.Base(p), st.Size(), max)
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s has more than the %d bytes the manifest allows", filepath.Base(p), max)
	}
	return data, nil
}

// fileKind names what a file that is not regular is.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeSymlink != 0:
		return "a symbolic link"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
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
	var total int64
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
			continue // directories (tar -C dir .), links: not bundle files
		}
		name := path.Clean(h.Name) // ./manifest.json from tar -C dir -cf x.tar .
		if _, dup := files[name]; dup {
			return nil, fmt.Errorf("%s: %w: %s is in the archive twice", p, ErrCorrupt, name)
		}
		// h.Size is the logical size: a sparse entry of 64 GiB says so
		// before any of it is read.
		max := int64(MaxFileSize)
		if name == ManifestFile {
			max = MaxManifestSize
		}
		if h.Size > max || total+h.Size > MaxBundleSize {
			return nil, fmt.Errorf("%s: %w: %s has %d bytes, more than a bundle file may have", p, ErrCorrupt, name, h.Size)
		}
		data, err := io.ReadAll(io.LimitReader(tr, h.Size))
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %v", p, ErrCorrupt, err)
		}
		total += int64(len(data))
		files[name] = data
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
