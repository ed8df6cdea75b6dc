package lower

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/golden"
)

// goldenObject stands in for the BPF object in golden bundles, so that a
// change of the datapath does not rewrite every golden file.
var goldenObject = []byte("polc golden test object\n")

// testdataPolicies lists the policies golden/bundle holds dumps of,
// relative to the repository root.
func testdataPolicies(t *testing.T) []string {
	var out []string
	for _, pat := range []string{"testdata/*.pol", "testdata/lang/*.pol", "testdata/tiers/*.pol"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	if len(out) == 0 {
		t.Fatal("no testdata policies found")
	}
	return out
}

// TestGoldenBundles builds every testdata policy and compares `polc
// inspect`'s dump of the bundle with golden/bundle/NAME.txt ('make golden'
// rewrites them). It also checks each bundle with the simulated datapath:
// against the direct evaluation on packets around every address and port
// the policy names, and against the policy's own tests.
func TestGoldenBundles(t *testing.T) {
	t.Chdir("../..")
	for _, path := range testdataPolicies(t) {
		t.Run(path, func(t *testing.T) {
			prog, _, diags := compiler.Load([]string{path})
			if diags.HasErrors() || prog == nil {
				t.Fatalf("load: %v", diags)
			}
			b, err := Build(prog, goldenObject, Options{Compiler: "golden"})
			if err != nil {
				t.Fatal(err)
			}
			name := strings.TrimSuffix(strings.TrimPrefix(filepath.ToSlash(path), "testdata/"), ".pol")
			golden.Check(t, "bundle/"+name+".txt", []byte(b.Text()))

			dp, ref := newDatapath(t, b), refEval{prog}
			for _, p := range probePackets(prog) {
				eg, in, egOK, inOK := dp.observe(p)
				weg, win, wegOK, winOK := ref.observe(p)
				if egOK != wegOK || inOK != winOK || eg != weg || in != win {
					t.Errorf("%v %v -> %v:%d (icmp %d/%d): datapath egress %v(%v) ingress %v(%v), meaning egress %v(%v) ingress %v(%v)",
						p.Proto, p.Src, p.Dst, p.DPort, p.ICMPType, p.ICMPCode, eg, egOK, in, inOK, weg, wegOK, win, winOK)
				}
			}
			checkOwnTests(t, prog, dp)
		})
	}
}

// checkOwnTests runs the first packet of each of the policy's tests (no
// connection state yet) through the simulated datapath.
func checkOwnTests(t *testing.T, prog *ir.Program, dp *datapath) {
	for _, test := range prog.Tests {
		if len(test.Steps) == 0 {
			continue
		}
		s := test.Steps[0]
		if s.Reply || s.Expect == nil || inPrefilter(prog, s.Packet.Src) {
			continue
		}
		eg, in, egOK, inOK := dp.observe(s.Packet)
		got := dsl.VerdictAllow
		if (egOK && eg.verdict != 1) || (inOK && in.verdict != 1) {
			got = dsl.VerdictDeny
		}
		if got == dsl.VerdictAllow && *s.Expect == dsl.VerdictDeny && hasRemote(prog, s.Packet) {
			continue // the remote endpoint's node decides the other half
		}
		if got != *s.Expect {
			t.Errorf("%s: test %q: datapath says %v (egress %v, ingress %v), the test expects %v", s.Pos, test.Name, got, eg, in, *s.Expect)
		}
	}
}

// hasRemote reports whether either end of p is a remote endpoint's.
func hasRemote(prog *ir.Program, p ir.Packet) bool {
	r := refEval{prog}
	for _, a := range []netip.Addr{p.Src, p.Dst} {
		if e := r.owner(a); e != nil && e.Remote {
			return true
		}
	}
	return false
}

func inPrefilter(prog *ir.Program, a netip.Addr) bool {
	for _, p := range prog.Prefilter {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// probePackets makes packets between addresses at and around everything
// the program names, on the protocols and port edges its rules use.
func probePackets(prog *ir.Program) []ir.Packet {
	addrs := map[netip.Addr]bool{
		netip.MustParseAddr("8.8.8.8"): true, netip.MustParseAddr("2001:db8::1"): true,
	}
	edge := func(p netip.Prefix) {
		addrs[p.Addr()] = true
		last := p.Addr()
		for i := 0; i < 1<<min(8, p.Addr().BitLen()-p.Bits()) && i < 256; i++ {
			last = last.Next()
		}
		if p.Contains(last.Prev()) {
			addrs[last.Prev()] = true
		}
		if n := p.Addr().Next(); n.IsValid() && p.Contains(n) {
			addrs[n] = true
		}
		if pr := p.Addr().Prev(); pr.IsValid() {
			addrs[pr] = true
		}
	}
	for _, e := range prog.Endpoints {
		for _, a := range e.Addrs {
			edge(a)
		}
	}
	type l4 struct {
		proto      ir.Proto
		port       uint16
		icmpT, icC uint8
	}
	l4s := map[l4]bool{{ir.ProtoTCP, 80, 0, 0}: true, {ir.ProtoUDP, 53, 0, 0}: true, {ir.ProtoICMP, 0, 8, 0}: true, {ir.ProtoICMPv6, 0, 128, 0}: true, {47, 0, 0, 0}: true}
	for _, r := range prog.Rules {
		for _, pe := range r.Peers {
			if pe.Kind == ir.PeerCIDR {
				edge(pe.CIDR)
				for _, e := range pe.Except {
					edge(e)
				}
			}
		}
		for _, pm := range r.Ports {
			switch {
			case pm.Proto.HasPorts():
				for _, p := range []int{int(pm.Lo) - 1, int(pm.Lo), int(pm.Hi), int(pm.Hi) + 1} {
					if p >= 0 && p <= 65535 {
						l4s[l4{pm.Proto, uint16(p), 0, 0}] = true
					}
				}
			case pm.Proto.IsICMP():
				t, c := max(pm.ICMPType, 0), max(pm.ICMPCode, 0)
				l4s[l4{pm.Proto, 0, uint8(t), uint8(c)}] = true
				l4s[l4{pm.Proto, 0, uint8(t), uint8(c + 1)}] = true
			}
		}
	}
	var out []ir.Packet
	for src := range addrs {
		for dst := range addrs {
			if src.Is4() != dst.Is4() {
				continue
			}
			for x := range l4s {
				if (x.proto == ir.ProtoICMP && !src.Is4()) || (x.proto == ir.ProtoICMPv6 && src.Is4()) {
					continue
				}
				out = append(out, ir.Packet{Proto: x.proto, Src: src, Dst: dst, SPort: 40000, DPort: x.port, ICMPType: x.icmpT, ICMPCode: x.icC})
			}
		}
	}
	return out
}

// Reordering declarations in the source and adding unrelated ones keeps
// the identities of the untouched endpoints (rule ids do change).
func TestIdentitiesStableAcrossSourceEdits(t *testing.T) {
	dir := t.TempDir()
	a := `endpoint web labels(app=web) addr 10.0.1.10
endpoint api labels(app=api) addr 10.0.2.10
policy api-in {
  select app=api
  ingress allow from app=web on tcp/8080
  ingress deny from 10.0.0.0/8 except 10.0.1.0/24
}
`
	b := `endpoint extra labels(app=extra) addr 10.0.9.9
policy extra-in {
  select app=extra
  egress allow to 192.0.2.0/24
}
policy api-in {
  select app=api
  ingress deny from 10.0.0.0/8 except 10.0.1.0/24
  ingress allow from app=web on tcp/8080
}
endpoint api labels(app=api) addr 10.0.2.10
endpoint web labels(app=web) addr 10.0.1.10
`
	ids := func(name, src string) map[string]uint32 {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		prog, _, diags := compiler.Load([]string{path})
		if diags.HasErrors() || prog == nil {
			t.Fatalf("load %s: %v", name, diags)
		}
		out := map[string]uint32{}
		bd := mustBuild(t, prog)
		for id, n := range idNames(bd) {
			out[n] = id
		}
		return out
	}
	before, after := ids("a.pol", a), ids("b.pol", b)
	for _, n := range []string{"web", "api in cidr 10.0.0.0/8 except 10.0.1.0/24", "cidr 10.0.0.0/8 except 10.0.1.0/24", "world"} {
		if before[n] == 0 || before[n] != after[n] {
			t.Errorf("identity of %q: %d before, %d after", n, before[n], after[n])
		}
	}
}
