// Package compiler turns policy source files into the IR through a list of
// named passes, each a small function over the same structures:
//
//	load      (load.go)      read files and follow imports, in a fixed order
//	resolve   (resolve.go)   symbol tables: endpoints, cidrsets, policies, tests
//	check     (check.go)     every semantic error and warning, at its token
//	normalize (normalize.go) the IR in the normal form package ir documents
//	lint      (lint.go)      warnings that are easiest to see on the IR
//
// It sits between package dsl (the parsers) and the lowering; docs/ir.md
// describes the passes and the IR's text form.
package compiler

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// Sources maps a file path (as it appears in positions) to its contents, so
// diagnostics can show the offending line.
type Sources map[string][]byte

// Load reads the files at paths and everything they import, and compiles
// them into one IR. Files ending in .yaml or .yml are read as YAML. The
// program is nil when there are errors; warnings come with a program.
//
// Syntax errors (and unreadable files or imports) stop the build after
// loading: the semantic passes would only add confusing follow-up errors.
func Load(paths []string) (*ir.Program, Sources, dsl.Diagnostics) {
	return LoadWith(paths, LoadOptions{})
}

// LoadWith is Load with options (where imports may reach).
func LoadWith(paths []string, opts LoadOptions) (*ir.Program, Sources, dsl.Diagnostics) {
	files, srcs, diags := load(paths, opts)
	if diags.HasErrors() {
		diags.Sort()
		return nil, srcs, diags
	}
	prog, more := Compile(files, srcs)
	diags = append(diags, more...)
	diags.Sort()
	if diags.HasErrors() {
		return nil, srcs, diags
	}
	return prog, srcs, diags
}

// Compile runs the semantic passes over files that are already parsed, in
// the order given (Load passes them in load order; rule ids follow it).
// Import declarations are not followed here: Load has already done that.
// srcs supplies each file's bytes for Program.Sources' digests; a file
// missing from srcs gets an empty digest. The program is nil when there are
// errors. Diagnostics are sorted.
func Compile(files []*dsl.File, srcs Sources) (*ir.Program, dsl.Diagnostics) {
	syms, diags := resolve(files)
	diags = append(diags, check(syms)...)
	if diags.HasErrors() {
		diags.Sort()
		return nil, diags
	}
	prog := normalize(syms)
	for _, f := range files {
		digest := ""
		if src, ok := srcs[f.Path]; ok {
			sum := sha256.Sum256(src)
			digest = hex.EncodeToString(sum[:])
		}
		prog.Sources = append(prog.Sources, ir.Source{Path: f.Path, SHA256: digest})
	}
	diags = append(diags, lint(prog)...)
	diags.Sort()
	return prog, diags
}
