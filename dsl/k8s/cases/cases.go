// Package cases reads reachability matrices: the expected verdicts of a
// cluster snapshot, in the shape of the truth tables the upstream
// Kubernetes network-policy end-to-end tests print. Each checked cell
// becomes an ordinary policy test (package dsl), so the reference
// evaluator and the kernel harness check matrices the way they check any
// test. docs/testing.md describes the format.
//
//	# comment
//	load ../cluster.yaml policy.yaml
//
//	probe tcp/80 udp/80 icmp
//	     x.a x.b x.c
//	x.a  -   .   X
//	x.b  .   -   X
package cases

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/polc-dev/polc/dsl"
)

// File is one parsed matrix file.
type File struct {
	Path string
	// Load lists the Kubernetes files the matrices are about, as written
	// (relative to the matrix file's directory); LoadPaths resolves them.
	Load     []dsl.Text
	Matrices []*Matrix
}

// Matrix is one table: sources down, destinations across, one verdict per
// cell, checked for each probe.
type Matrix struct {
	Pos    dsl.Pos
	Probes []Probe
	Dsts   []dsl.Text // endpoint names or addresses
	Rows   []*Row
}

// Probe is a protocol and destination port (tcp/80), or an ICMP echo
// request (icmp, icmpv6).
type Probe struct {
	Pos   dsl.Pos
	Proto string // tcp, udp, sctp, icmp or icmpv6
	Port  int64  // 0 for icmp and icmpv6
}

func (p Probe) String() string {
	if p.Port == 0 {
		return p.Proto
	}
	return p.Proto + "/" + strconv.FormatInt(p.Port, 10)
}

// Row is one source and its cells, one per destination.
type Row struct {
	Src   dsl.Text
	Cells []Cell
}

// Cell is one expected result; Expect is nil for "-" (not checked).
type Cell struct {
	Pos    dsl.Pos
	Expect *dsl.Verdict
}

// Cell symbols.
const (
	Reachable = "."
	Blocked   = "X"
	Unchecked = "-"
)

// Parse reads a matrix file.
func Parse(path string, src []byte) (*File, dsl.Diagnostics) {
	f := &File{Path: path}
	var ds dsl.Diagnostics
	var cur *Matrix
	wantHeader := false
	seen := map[string]dsl.Pos{}
	for i, line := range strings.Split(string(src), "\n") {
		words := fields(path, i+1, line)
		if len(words) == 0 {
			if cur != nil && !wantHeader {
				cur = nil // a blank line ends a matrix
			}
			continue
		}
		switch {
		case words[0].Text == "load":
			if cur != nil && !wantHeader {
				cur = nil
			}
			if len(words) == 1 {
				ds.Errorf(words[0].Pos, "load needs at least one file")
			}
			f.Load = append(f.Load, words[1:]...)
		case words[0].Text == "probe":
			cur = &Matrix{Pos: words[0].Pos}
			f.Matrices = append(f.Matrices, cur)
			wantHeader = true
			if len(words) == 1 {
				ds.Errorf(words[0].Pos, "probe needs at least one protocol/port, e.g. tcp/80")
			}
			for _, w := range words[1:] {
				p, err := parseProbe(w)
				if err != nil {
					ds.Errorf(w.Pos, "%v", err)
					continue
				}
				cur.Probes = append(cur.Probes, p)
			}
		case cur == nil:
			ds.Errorf(words[0].Pos, "expected load or probe, found %q", words[0].Text)
		case wantHeader:
			cur.Dsts = words
			wantHeader = false
		default:
			row := &Row{Src: words[0]}
			cells := words[1:]
			if len(cells) != len(cur.Dsts) {
				ds.Errorf(words[0].Pos, "row %s has %d cells for %d destinations", words[0].Text, len(cells), len(cur.Dsts))
				continue
			}
			for j, c := range cells {
				cell := Cell{Pos: c.Pos}
				switch c.Text {
				case Reachable:
					v := dsl.VerdictAllow
					cell.Expect = &v
				case Blocked, "x":
					v := dsl.VerdictDeny
					cell.Expect = &v
				case Unchecked:
				default:
					ds.Errorf(c.Pos, "cell %q: expected %s (reachable), %s (blocked) or %s (not checked)", c.Text, Reachable, Blocked, Unchecked)
					continue
				}
				if cell.Expect != nil {
					for _, p := range cur.Probes {
						key := p.String() + " " + row.Src.Text + " " + cur.Dsts[j].Text
						if first, dup := seen[key]; dup {
							ds.Errorf(c.Pos, "%s %s -> %s is already checked at %s", p, row.Src.Text, cur.Dsts[j].Text, first)
						}
						seen[key] = c.Pos
					}
				}
				row.Cells = append(row.Cells, cell)
			}
			cur.Rows = append(cur.Rows, row)
		}
	}
	for _, m := range f.Matrices {
		if m.Dsts == nil {
			ds.Errorf(m.Pos, "probe has no matrix under it")
		}
	}
	ds.Sort()
	return f, ds
}

// fields splits a line into words with their positions, dropping a
// comment that starts with '#'.
func fields(path string, line int, s string) []dsl.Text {
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	var out []dsl.Text
	for i := 0; i < len(s); {
		if s[i] == ' ' || s[i] == '\t' || s[i] == '\r' {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] != ' ' && s[j] != '\t' && s[j] != '\r' {
			j++
		}
		out = append(out, dsl.Text{Pos: dsl.Pos{File: path, Line: line, Col: i + 1}, Text: s[i:j]})
		i = j
	}
	return out
}

func parseProbe(w dsl.Text) (Probe, error) {
	proto, port, ok := strings.Cut(w.Text, "/")
	proto = strings.ToLower(proto)
	if !ok && (proto == "icmp" || proto == "icmpv6") {
		return Probe{Pos: w.Pos, Proto: proto}, nil
	}
	if !ok || (proto != "tcp" && proto != "udp" && proto != "sctp") {
		return Probe{}, fmt.Errorf("probe %q: expected tcp/PORT, udp/PORT, sctp/PORT, icmp or icmpv6", w.Text)
	}
	n, err := strconv.ParseInt(port, 10, 64)
	if err != nil || n < 1 || n > 65535 {
		return Probe{}, fmt.Errorf("probe %q: port must be 1 to 65535", w.Text)
	}
	return Probe{Pos: w.Pos, Proto: proto, Port: n}, nil
}

// LoadPaths returns the files named by load, relative to the directory of
// the matrix file.
func (f *File) LoadPaths() []string {
	dir := filepath.Dir(f.Path)
	out := make([]string, len(f.Load))
	for i, l := range f.Load {
		out[i] = l.Text
		if !filepath.IsAbs(l.Text) {
			out[i] = filepath.Join(dir, l.Text)
		}
	}
	return out
}

// Tests turns every checked cell into a test, for each probe of its
// matrix, named "PROBE SRC -> DST": a reachable cell is a connection
// whose first packet and reply are allowed (replies of allowed flows are
// stateful), a blocked cell one whose first packet is denied. An icmp
// probe is an echo request, its reply the echo reply.
func (f *File) Tests() []*dsl.Test {
	var tests []*dsl.Test
	for _, m := range f.Matrices {
		for _, p := range m.Probes {
			for _, row := range m.Rows {
				for j, c := range row.Cells {
					if c.Expect == nil {
						continue
					}
					tests = append(tests, cellTest(p, row.Src, m.Dsts[j], c))
				}
			}
		}
	}
	return tests
}

func cellTest(p Probe, src, dst dsl.Text, c Cell) *dsl.Test {
	var port *dsl.Int
	if p.Port != 0 {
		port = &dsl.Int{Pos: p.Pos, Value: p.Port}
	}
	pkt := &dsl.Packet{
		Pos:   c.Pos,
		Proto: dsl.Text{Pos: p.Pos, Text: p.Proto},
		Src:   host(src, nil),
		Dst:   host(dst, port),
	}
	v := *c.Expect
	t := &dsl.Test{
		Pos:   c.Pos,
		Name:  dsl.Text{Pos: c.Pos, Text: fmt.Sprintf("%s %s -> %s", p, src.Text, dst.Text)},
		Steps: []*dsl.Step{{Pos: c.Pos, Packet: pkt, Expect: &v, ExpectPos: c.Pos}},
	}
	if v == dsl.VerdictAllow {
		allow := dsl.VerdictAllow
		t.Steps = append(t.Steps, &dsl.Step{Pos: c.Pos, Reply: true, Expect: &allow, ExpectPos: c.Pos})
	}
	return t
}

// host is a matrix name: an address literal, or else an endpoint name.
func host(t dsl.Text, port *dsl.Int) dsl.HostPort {
	_, err := netip.ParseAddr(t.Text)
	return dsl.HostPort{Pos: t.Pos, Host: t, IsName: err != nil, Port: port}
}

// TestFile returns the tests as a source file of their own, to compile
// together with the files the matrices are about.
func (f *File) TestFile() *dsl.File {
	out := &dsl.File{Path: f.Path}
	for _, t := range f.Tests() {
		out.Decls = append(out.Decls, t)
	}
	return out
}
