package harness

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/compiler/lower"
	"github.com/polc-dev/polc/runtime/packet"
)

// TestUnnamedProtocols: protocols polc has no name for match only `any`
// terms, in the kernel as in the reference — including IPv4 protocol 0,
// which is the value the datapath's policy keys use for "any protocol".
// Protocol 0 was a kernel bug found by the differential tester (seed 2,
// policy 30): with probe hints, a subject whose only entries were "any"
// never matched a protocol-0 packet.
func TestUnnamedProtocols(t *testing.T) {
	requireBPF(t)
	src := `
endpoint a labels(app=a) addr 10.0.1.10
endpoint b labels(app=b) addr 10.0.1.11
policy a-out {
  select app=a
  egress allow to app=b on any
}
`
	path := filepath.Join(t.TempDir(), "proto.pol")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, ev, k := open(t, path)
	for _, proto := range []ir.Proto{0, 47, 50, 255} {
		if err := k.Reset(); err != nil {
			t.Fatal(err)
		}
		s := packet.Spec{Proto: proto, Src: netip.MustParseAddr("10.0.1.10"), Dst: netip.MustParseAddr("10.0.1.11"), Payload: []byte("data")}
		o, err := Decide(ev, eval.NewConntrack(), k, CaseFromSpec(s, false))
		if err != nil {
			t.Fatal(err)
		}
		if o.Reference.Rule != ir.FirstRuleID {
			t.Errorf("protocol %d: reference %s, want the rule", proto, o.Reference)
		}
		if d := o.Diff(); d != "" {
			t.Errorf("protocol %d: %s", proto, d)
		}
	}
}

// TestRelatedErrorQuotingExtensionHeaders: an ICMPv6 error that quotes a
// packet with IPv6 extension headers is related, in the kernel as in the
// reference. Found by the differential tester (seed 6, policy 12): the
// datapath's polc_parse_inner took the quoted header's next-header field
// as the protocol without walking the extension headers, so such an error
// met policy (and was dropped by a's isolated ingress). Now it walks them,
// with the outer parser's limit; a quote cut inside them is unrelated.
func TestRelatedErrorQuotingExtensionHeaders(t *testing.T) {
	requireBPF(t)
	src := `
endpoint a labels(app=a) addr fd00::10
policy a-in {
  select app=a
  isolate ingress
}
`
	path := filepath.Join(t.TempDir(), "ext.pol")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, ev, k := open(t, path)
	a, far := netip.MustParseAddr("fd00::10"), netip.MustParseAddr("2001:db8::1")
	for _, ext := range [][]packet.Ext{
		nil,
		{{Type: packet.ExtDestOpts}},
		{{Type: packet.ExtHopByHop}, {Type: packet.ExtRouting}, {Type: packet.ExtDestOpts}},
	} {
		for _, proto := range []ir.Proto{ir.ProtoTCP, ir.ProtoUDP} {
			if err := k.Reset(); err != nil {
				t.Fatal(err)
			}
			ct := eval.NewConntrack()
			out := packet.Spec{Proto: proto, Src: a, Dst: far, SPort: 40000, DPort: 443, IPv6Ext: ext}
			if proto == ir.ProtoTCP {
				out.TCPFlags = ir.TCPSyn
			}
			if o, err := Decide(ev, ct, k, CaseFromSpec(out, false)); err != nil || o.Diff() != "" {
				t.Fatalf("%v %v: first packet: %v %s", proto, ext, err, o.Diff())
			}
			// the quote: all of it, then the IP headers and 8 bytes of L4
			// (RFC 4443 asks for as much as fits; routers quote less)
			sum, err := packet.ParseIP(packet.IP(out))
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{0, sum.L3Len + 8} {
				tooBig := packet.Spec{Proto: ir.ProtoICMPv6, Src: far, Dst: a, ICMPType: 2, ICMPRest: 1280, Embedded: &out, EmbeddedLen: n}
				o, err := Decide(ev, ct, k, CaseFromSpec(tooBig, true))
				if err != nil {
					t.Fatal(err)
				}
				if o.Reference.Rule != ir.RuleRelated {
					t.Errorf("%v, extension headers %v, quote %d: reference %s, want related", proto, ext, n, o.Reference)
				}
				if d := o.Diff(); d != "" {
					t.Errorf("%v, extension headers %v, quote %d: %s", proto, ext, n, d)
				}
			}
			// a quote cut inside the extension headers is not related: it
			// meets a's isolated ingress, in both
			if ext != nil {
				cut := packet.Spec{Proto: ir.ProtoICMPv6, Src: far, Dst: a, ICMPType: 2, ICMPRest: 1280, Embedded: &out, EmbeddedLen: 40 + 4}
				o, err := Decide(ev, ct, k, CaseFromSpec(cut, true))
				if err != nil {
					t.Fatal(err)
				}
				if o.Reference.Rule != ir.RuleDefaultDeny {
					t.Errorf("%v, extension headers %v, cut quote: reference %s, want default-deny", proto, ext, o.Reference)
				}
				if d := o.Diff(); d != "" {
					t.Errorf("%v, extension headers %v, cut quote: %s", proto, ext, d)
				}
			}
		}
	}
}

// TestDropTunnels: with Program.DropTunnels (polc build --drop-tunnels)
// every tunnel protocol is dropped at the endpoints, as tunnel, in the
// kernel as in the reference, whatever the policy allows; other
// protocols and bundles without the option go by policy.
func TestDropTunnels(t *testing.T) {
	requireBPF(t)
	src := `
endpoint a labels(app=a) addr 10.0.1.10, fd00::10
endpoint b labels(app=b) addr 10.0.1.11, fd00::11
policy a-out {
  select app=a
  egress allow to app=b on any
}
`
	path := filepath.Join(t.TempDir(), "tunnels.pol")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, drop := range []bool{true, false} {
		prog, srcs, diags := compiler.Load([]string{path})
		if diags.HasErrors() {
			t.Fatal(diags.Format(func(f string) []byte { return srcs[f] }))
		}
		prog.DropTunnels = drop
		b, err := lower.Build(prog, bpf.Object(), lower.Options{Compiler: "test"})
		if err != nil {
			t.Fatal(err)
		}
		k, err := Open(b)
		if err != nil {
			t.Fatal(err)
		}
		ev := eval.New(prog)
		for _, proto := range append(slices.Clone(ir.TunnelProtos), 50, ir.ProtoUDP) {
			for _, fam := range [][2]string{{"10.0.1.10", "10.0.1.11"}, {"fd00::10", "fd00::11"}} {
				if err := k.Reset(); err != nil {
					t.Fatal(err)
				}
				s := packet.Spec{Proto: proto, Src: netip.MustParseAddr(fam[0]), Dst: netip.MustParseAddr(fam[1]), SPort: 1, DPort: 2, Payload: []byte("inner packet")}
				o, err := Decide(ev, eval.NewConntrack(), k, CaseFromSpec(s, false))
				if err != nil {
					t.Fatal(err)
				}
				want := ir.FirstRuleID
				if drop && slices.Contains(ir.TunnelProtos, proto) {
					want = ir.RuleTunnel
				}
				if o.Reference.Rule != want {
					t.Errorf("drop %v, protocol %d, %s: reference %s, want %s", drop, proto, fam[0], o.Reference, RuleName(want))
				}
				if d := o.Diff(); d != "" {
					t.Errorf("drop %v, protocol %d, %s: %s", drop, proto, fam[0], d)
				}
			}
		}
		k.Close()
	}
}
