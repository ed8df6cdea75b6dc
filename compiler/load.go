package compiler

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/polc-dev/polc/dsl"
)

// MaxSourceSize bounds every policy file the loader reads (64 MiB: a
// policy of 100 000 rules is about 5 MiB), so that a device or an endless
// pipe named as a file cannot exhaust memory.
const MaxSourceSize = 64 << 20

// LoadOptions configure LoadWith.
type LoadOptions struct {
	// ImportRoots are directories whose files any import may name, besides
	// the directory tree of the command-line file it was reached from.
	ImportRoots []string
}

// load reads the files at paths and everything they import.
//
// Order: the command-line files in the order given; before each file come
// the files it imports, depth first, in the order of its import
// declarations (a post-order walk, as if each import were pasted at the top
// of the importing file). A file reached a second time, by another import or
// another command-line argument, is read once and keeps its first place.
// The returned files are in this order, and rule ids follow it.
//
// Paths: a command-line path is used as given; an import's path is joined
// to the importing file's directory (filepath.Join, so it is cleaned).
// Positions and Sources use these paths, never absolute ones; two spellings
// of one file are recognized by their absolute path.
//
// Confinement: an import must name a policy file (.pol, .yaml or .yml), a
// regular file, inside the directory tree of the command-line file it was
// reached from (symbolic links resolved), or inside one of
// opts.ImportRoots. So a policy cannot make polc read, or print in a
// diagnostic, a file that is not policy: `import "/etc/shadow"` is an
// error at the import, naming only the path.
func load(paths []string, opts LoadOptions) ([]*dsl.File, Sources, dsl.Diagnostics) {
	return loadWith(paths, opts, parseByExt)
}

// loadWith is load with another parser (tests use a fake one).
func loadWith(paths []string, opts LoadOptions, parse func(string, []byte) (*dsl.File, dsl.Diagnostics)) ([]*dsl.File, Sources, dsl.Diagnostics) {
	l := &loader{srcs: Sources{}, seen: map[string]bool{}, parse: parse}
	for _, r := range opts.ImportRoots {
		d, err := newImportDir(r)
		if err != nil {
			l.diags.Errorf(dsl.Pos{File: r}, "import root: %v", err)
			continue
		}
		l.roots = append(l.roots, d)
	}
	for _, p := range paths {
		l.chainRoot, _ = newImportDir(filepath.Dir(p))
		l.file(p, nil)
	}
	return l.files, l.srcs, l.diags
}

type loader struct {
	parse func(path string, src []byte) (*dsl.File, dsl.Diagnostics)
	files []*dsl.File
	srcs  Sources
	diags dsl.Diagnostics
	seen  map[string]bool // by absolute path: loaded or being loaded
	stack []loading       // the chain of imports being loaded, for cycles
	// chainRoot is the directory of the command-line file being loaded:
	// its imports must stay inside it, or inside roots.
	chainRoot importDir
	roots     []importDir
}

// importDir is a directory imports may reach: its absolute path as
// written and with symbolic links resolved.
type importDir struct{ abs, real string }

func newImportDir(dir string) (importDir, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return importDir{}, err
	}
	real, err := filepath.EvalSymlinks(abs)
	return importDir{abs, real}, err
}

type loading struct {
	key, path string
}

// file loads path and, first, its imports. imp is the import declaration
// that names it (nil for a command-line file); errors about reaching the
// file are reported there.
func (l *loader) file(path string, imp *dsl.Import) {
	key := path
	if abs, err := filepath.Abs(path); err == nil {
		key = abs
	}
	for i, s := range l.stack {
		if s.key != key {
			continue
		}
		chain := []string{}
		for _, t := range l.stack[i:] {
			chain = append(chain, t.path)
		}
		chain = append(chain, path)
		l.diags.Errorf(imp.Path.Pos, "import cycle: %s", strings.Join(chain, " -> "))
		return
	}
	if l.seen[key] {
		return
	}
	if imp != nil {
		if err := l.importable(path); err != nil {
			l.diags.Errorf(imp.Path.Pos, "cannot import %q: %v", imp.Path.Text, err)
			return
		}
	}
	src, err := readSource(path)
	if err != nil {
		if imp == nil {
			l.diags.Errorf(dsl.Pos{File: path}, "%v", err)
		} else {
			l.diags.Errorf(imp.Path.Pos, "cannot import %q: %v", imp.Path.Text, err)
		}
		return
	}
	l.seen[key] = true
	l.srcs[path] = src

	f, ds := l.parse(path, src)
	l.diags = append(l.diags, ds...)
	if f == nil {
		return
	}
	l.stack = append(l.stack, loading{key, path})
	for _, d := range f.Decls {
		imp, ok := d.(*dsl.Import)
		if !ok {
			continue
		}
		if imp.Path.Text == "" {
			l.diags.Errorf(imp.Path.Pos, "empty import path")
			continue
		}
		target := imp.Path.Text
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), filepath.FromSlash(target))
		}
		l.file(target, imp)
	}
	l.stack = l.stack[:len(l.stack)-1]
	l.files = append(l.files, f)
}

// importable says why the file at path may not be imported, or nil.
func (l *loader) importable(path string) error {
	if !IsPolicyFile(path) {
		return errors.New("only policy files (.pol, .yaml, .yml) can be imported")
	}
	outside := fmt.Errorf("it is outside %s, the directory of the file on the command line; imports stay inside it unless --import-root names another directory", l.chainRoot.abs)
	// As written first, so that nothing outside is even looked at...
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if !l.inside(abs, func(d importDir) string { return d.abs }) {
		return outside
	}
	// ...then where symbolic links lead.
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("open %s: %w", path, pe.Err)
		}
		return err
	}
	if !l.inside(real, func(d importDir) string { return d.real }) {
		return outside
	}
	st, err := os.Stat(real)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("not a regular file but %s", fileKind(st.Mode()))
	}
	return nil
}

// fileKind names what a file that is not regular is.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

// inside reports whether path lies in the chain's directory or an import
// root, comparing with the form of the directory that which picks.
func (l *loader) inside(path string, which func(importDir) string) bool {
	for _, d := range append([]importDir{l.chainRoot}, l.roots...) {
		if which(d) != "" && within(path, which(d)) {
			return true
		}
	}
	return false
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// readSource reads a policy file, at most MaxSourceSize bytes.
func readSource(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxSourceSize+1))
	if err != nil {
		return nil, err
	}
	if len(src) > MaxSourceSize {
		return nil, fmt.Errorf("%s is larger than %d MiB", path, MaxSourceSize>>20)
	}
	return src, nil
}

// IsPolicyFile reports whether path names a file polc reads as policy:
// the language (.pol) or YAML.
func IsPolicyFile(path string) bool {
	return IsYAML(path) || strings.EqualFold(filepath.Ext(path), ".pol")
}

// parseByExt parses YAML files (.yaml, .yml) with dsl.ParseYAML and every
// other file with dsl.Parse.
func parseByExt(path string, src []byte) (*dsl.File, dsl.Diagnostics) {
	if IsYAML(path) {
		return dsl.ParseYAML(path, src)
	}
	return dsl.Parse(path, src)
}

// IsYAML reports whether path names a YAML file (.yaml or .yml, in any
// case): the one place that decides which files the compiler, and polc
// fmt, read as YAML rather than as the policy language.
func IsYAML(path string) bool {
	ext := strings.ToLower(filepath.Ext(path))
	return ext == ".yaml" || ext == ".yml"
}
