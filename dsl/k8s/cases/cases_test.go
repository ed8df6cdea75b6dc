package cases

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseAndTests(t *testing.T) {
	src := `# two probes, one matrix
load ../cluster.yaml policy.yaml

probe tcp/80 udp/81 icmp
           x.a x.b
x.a        -   X     # comment
192.0.2.1  .   -
`
	f, ds := Parse("dir/reach.txt", []byte(src))
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	if got, want := f.LoadPaths(), []string{filepath.Join("cluster.yaml"), filepath.Join("dir", "policy.yaml")}; !cmp.Equal(got, want) {
		t.Errorf("load paths %v, want %v", got, want)
	}
	var got []string
	for _, test := range f.Tests() {
		var steps []string
		for _, s := range test.Steps {
			if s.Reply {
				steps = append(steps, "reply expect "+s.Expect.String())
				continue
			}
			p := s.Packet
			steps = append(steps, p.Proto.Text+" "+p.Src.Host.Text+" -> "+p.Dst.Host.Text+" expect "+s.Expect.String())
			if p.Src.IsName == (p.Src.Host.Text == "192.0.2.1") || !p.Dst.IsName {
				t.Errorf("%s: wrong IsName", test.Name.Text)
			}
		}
		got = append(got, test.Pos.String()+" "+test.Name.Text+": "+strings.Join(steps, "; "))
	}
	want := []string{
		"dir/reach.txt:6:16 tcp/80 x.a -> x.b: tcp x.a -> x.b expect deny",
		"dir/reach.txt:7:12 tcp/80 192.0.2.1 -> x.a: tcp 192.0.2.1 -> x.a expect allow; reply expect allow",
		"dir/reach.txt:6:16 udp/81 x.a -> x.b: udp x.a -> x.b expect deny",
		"dir/reach.txt:7:12 udp/81 192.0.2.1 -> x.a: udp 192.0.2.1 -> x.a expect allow; reply expect allow",
		"dir/reach.txt:6:16 icmp x.a -> x.b: icmp x.a -> x.b expect deny",
		"dir/reach.txt:7:12 icmp 192.0.2.1 -> x.a: icmp 192.0.2.1 -> x.a expect allow; reply expect allow",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tests (-want +got):\n%s", diff)
	}
	if n := len(f.TestFile().Decls); n != 6 {
		t.Errorf("TestFile has %d decls, want 6", n)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"x.a . X\n", `m.txt:1:1: expected load or probe, found "x.a"`},
		{"probe icmp/8\n a\nb .\n", `m.txt:1:7: probe "icmp/8": expected tcp/PORT, udp/PORT, sctp/PORT, icmp or icmpv6`},
		{"probe tcp/0\n a\nb .\n", `m.txt:1:7: probe "tcp/0": port must be 1 to 65535`},
		{"probe tcp/80\n a b\nc .\n", `m.txt:3:1: row c has 1 cells for 2 destinations`},
		{"probe tcp/80\n a\nc ok\n", `m.txt:3:3: cell "ok": expected . (reachable), X (blocked) or - (not checked)`},
		{"probe tcp/80\n", `m.txt:1:1: probe has no matrix under it`},
		{"probe\n a\nc .\n", `m.txt:1:1: probe needs at least one protocol/port, e.g. tcp/80`},
		{"load\n", `m.txt:1:1: load needs at least one file`},
		{"probe tcp/80\n a\nc .\n\nprobe tcp/80\n a\nc X\n", `m.txt:7:3: tcp/80 c -> a is already checked at m.txt:3:3`},
	} {
		_, ds := Parse("m.txt", []byte(tc.src))
		var got []string
		for _, d := range ds {
			got = append(got, d.String())
		}
		if diff := cmp.Diff([]string{tc.want}, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.src, diff)
		}
	}
}

func TestUncheckedCells(t *testing.T) {
	f, ds := Parse("m.txt", []byte("probe sctp/9\n a b\na - -\nb - -\n"))
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	if n := len(f.Tests()); n != 0 {
		t.Errorf("%d tests from unchecked cells", n)
	}
}
