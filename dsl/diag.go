package dsl

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
)

// Severity of a diagnostic.
type Severity int

const (
	Error Severity = iota
	Warning
)

func (s Severity) String() string {
	if s == Warning {
		return "warning"
	}
	return "error"
}

// Diagnostic is one problem found in a source file.
type Diagnostic struct {
	Pos      Pos
	Severity Severity
	Msg      string
}

func (d Diagnostic) String() string {
	if d.Severity == Warning {
		return d.Pos.String() + ": warning: " + d.Msg
	}
	return d.Pos.String() + ": " + d.Msg
}

// DidYouMean returns `; did you mean "x"?` for the word of known closest
// to w when it is within a few typos of it (at most one edit, or one per
// three letters of the word), and "" otherwise. A diagnostic about an
// unknown name ends with it; the YAML reader's unknown field names use the
// same rule.
func DidYouMean(w string, known []string) string {
	if best := yamlClosest(w, known); best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return ""
}

// Diagnostics is a list of problems; it implements error so that a pass can
// return all of them at once.
type Diagnostics []Diagnostic

func (ds Diagnostics) Error() string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// HasErrors reports whether any diagnostic is an error (not a warning).
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity == Error {
			return true
		}
	}
	return false
}

// Errorf appends an error at pos.
func (ds *Diagnostics) Errorf(pos Pos, format string, args ...any) {
	*ds = append(*ds, Diagnostic{Pos: pos, Severity: Error, Msg: fmt.Sprintf(format, args...)})
}

// Warnf appends a warning at pos.
func (ds *Diagnostics) Warnf(pos Pos, format string, args ...any) {
	*ds = append(*ds, Diagnostic{Pos: pos, Severity: Warning, Msg: fmt.Sprintf(format, args...)})
}

// Sort orders diagnostics by file, line, column, then message, so output is
// stable whatever order the passes found them in.
func (ds Diagnostics) Sort() {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i].Pos, ds[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Col != b.Col {
			return a.Col < b.Col
		}
		return ds[i].Msg < ds[j].Msg
	})
}

// Format renders diagnostics the way compilers do:
//
//	policy.pol:3:14: unknown cidrset "partnrs"
//	    ingress allow from partnrs on tcp/80
//	                       ^
//
// src returns a file's contents (nil when unknown; then only the first line
// is printed).
func (ds Diagnostics) Format(src func(file string) []byte) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.String())
		b.WriteByte('\n')
		if !d.Pos.IsValid() || src == nil {
			continue
		}
		line, ok := sourceLine(src(d.Pos.File), d.Pos.Line)
		if !ok {
			continue
		}
		b.WriteString("    ")
		b.WriteString(line)
		b.WriteString("\n    ")
		// Keep tabs so the caret lines up under tab-indented source.
		col := min(max(d.Pos.Col-1, 0), len(line))
		for _, c := range []byte(line[:col]) {
			if c == '\t' {
				b.WriteByte('\t')
			} else {
				b.WriteByte(' ')
			}
		}
		b.WriteString("^\n")
	}
	return b.String()
}

func sourceLine(src []byte, n int) (string, bool) {
	if src == nil || n < 1 {
		return "", false
	}
	for i := 1; i < n; i++ {
		j := bytes.IndexByte(src, '\n')
		if j < 0 {
			return "", false
		}
		src = src[j+1:]
	}
	if j := bytes.IndexByte(src, '\n'); j >= 0 {
		src = src[:j]
	}
	return strings.TrimRight(string(src), "\r"), true
}
