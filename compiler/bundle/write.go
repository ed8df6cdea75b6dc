package bundle

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unicode/utf8"
)

// File is one file of a bundle: a slash-separated path and its bytes.
type File struct {
	Name string
	Data []byte
}

// Seal fills in what the manifest derives from the rest of the bundle:
// format, byte order, source digest, file references with sizes and
// digests, and the map list with entries and digests. Build functions call
// it; Files, Write and WriteTar call it again, so edits made in between
// are reflected.
func (b *Bundle) Seal() error {
	_, err := b.Files()
	return err
}

// Files seals the bundle and returns its files in a fixed order (the
// manifest first, so that a streaming reader sees it before anything else).
func (b *Bundle) Files() ([]File, error) {
	ids, err := marshalLines(b.Identities)
	if err != nil {
		return nil, err
	}
	eps, err := marshalLines(b.Endpoints)
	if err != nil {
		return nil, err
	}
	rules := marshalRules(b.Rules)
	m := &b.Manifest
	m.Format = FormatVersion
	m.ByteOrder = ByteOrder
	m.SourceDigest = SourceDigest(m.Sources)
	m.Object = fileRef(ObjectFile, b.Object)
	m.Identities = fileRef(IdentitiesFile, ids)
	m.Endpoints = fileRef(EndpointsFile, eps)
	m.Rules = fileRef(RulesFile, rules)
	m.Maps = make([]MapSpec, 0, len(b.Maps)) // never reuse a caller's array
	files := []File{{}, {ObjectFile, b.Object}}
	for i := range b.Maps {
		mp := &b.Maps[i]
		if n := mp.KeySize + mp.ValueSize; n == 0 || len(mp.Data)%n != 0 {
			return nil, fmt.Errorf("map %s: %d bytes is not a whole number of %d-byte records", mp.Name, len(mp.Data), n)
		}
		mp.File = MapDir + "/" + mp.Name + ".bin"
		mp.Entries = mp.Len()
		mp.SHA256 = Digest(mp.Data)
		m.Maps = append(m.Maps, mp.MapSpec)
		files = append(files, File{mp.File, mp.Data})
	}
	files = append(files, File{IdentitiesFile, ids}, File{EndpointsFile, eps}, File{RulesFile, rules})
	man, err := marshalJSON(m)
	if err != nil {
		return nil, err
	}
	files[0] = File{ManifestFile, man}
	return files, nil
}

func fileRef(name string, data []byte) FileRef {
	return FileRef{File: name, Size: len(data), SHA256: Digest(data)}
}

func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// marshalLines writes a JSON array with one compact element per line:
// readable, diffable, and fast for tens of thousands of elements.
func marshalLines[T any](list []T) ([]byte, error) {
	buf := []byte("[")
	for i := range list {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, "\n  "...)
		e, err := json.Marshal(&list[i])
		if err != nil {
			return nil, err
		}
		buf = append(buf, e...)
	}
	return append(buf, "\n]\n"...), nil
}

// marshalRules is marshalLines for rules, by hand: a build with 100 000
// rules would otherwise spend a noticeable part of its time in reflection.
// The bytes are what json.Marshal would write.
func marshalRules(rules []Rule) []byte {
	buf := make([]byte, 0, 64+len(rules)*96)
	buf = append(buf, '[')
	for i, r := range rules {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, "\n  {\"id\":"...)
		buf = strconv.AppendUint(buf, uint64(r.ID), 10)
		str := func(name, v string) {
			if v != "" {
				buf = append(buf, ",\""+name+"\":"...)
				buf = appendJSONString(buf, v)
			}
		}
		num := func(name string, v int) {
			if v != 0 {
				buf = append(buf, ",\""+name+"\":"...)
				buf = strconv.AppendInt(buf, int64(v), 10)
			}
		}
		str("name", r.Name)
		str("file", r.File)
		num("line", r.Line)
		num("col", r.Col)
		str("policy", r.Policy)
		str("text", r.Text)
		str("verdict", r.Verdict)
		str("tier", r.Tier)
		if r.Priority != nil {
			buf = append(buf, ",\"priority\":"...)
			buf = strconv.AppendInt(buf, int64(*r.Priority), 10)
		}
		num("rank", int(r.Rank))
		buf = append(buf, '}')
	}
	return append(buf, "\n]\n"...)
}

// appendJSONString appends s as a JSON string the way json.Marshal does:
// <, > and & escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				buf = append(buf, '\\', c)
			case c == '\n':
				buf = append(buf, '\\', 'n')
			case c == '\r':
				buf = append(buf, '\\', 'r')
			case c == '\t':
				buf = append(buf, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				buf = append(buf, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			buf = append(buf, "\\ufffd"...)
		case r == '\u2028' || r == '\u2029':
			buf = append(buf, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			buf = append(buf, s[i:i+size]...)
		}
		i += size
	}
	return append(buf, '"')
}

// Write writes the bundle into dir, creating it. An existing dir must be
// empty or hold a bundle (it has a manifest.json); its bundle files are
// replaced.
func Write(dir string, b *Bundle) error {
	files, err := b.Files()
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case len(ents) > 0:
		if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err != nil {
			return fmt.Errorf("%s is not empty and holds no bundle: refusing to overwrite it", dir)
		}
		if err := os.RemoveAll(filepath.Join(dir, MapDir)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, MapDir), 0o755); err != nil {
		return err
	}
	// The manifest goes last, so that an interrupted write leaves no
	// manifest pointing at missing files... of this bundle at least.
	for _, f := range append(files[1:], files[0]) {
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(f.Name)), f.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// WriteTar writes the bundle as one tar archive: regular files only, in
// Files order, with zero times and owners so that the bytes depend on the
// contents alone.
func WriteTar(w io.Writer, b *Bundle) error {
	files, err := b.Files()
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(dirHeader(MapDir + "/")); err != nil {
		return err
	}
	for _, f := range files {
		h := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     f.Name,
			Mode:     0o644,
			Size:     int64(len(f.Data)),
			ModTime:  time.Unix(0, 0),
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func dirHeader(name string) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR}
}
