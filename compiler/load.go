package compiler

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/polc-dev/polc/dsl"
)

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
func load(paths []string) ([]*dsl.File, Sources, dsl.Diagnostics) {
	return loadWith(paths, parseByExt)
}

// loadWith is load with another parser (tests use a fake one).
func loadWith(paths []string, parse func(string, []byte) (*dsl.File, dsl.Diagnostics)) ([]*dsl.File, Sources, dsl.Diagnostics) {
	l := &loader{srcs: Sources{}, seen: map[string]bool{}, parse: parse}
	for _, p := range paths {
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
	src, err := os.ReadFile(path)
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
