package harness

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/runtime/packet"
)

// TestICMPErrorTypesInKernel: an ICMP message of every type 0–255 (in
// IPv4) and every ICMPv6 type 0–255 (in IPv6), quoting a live flow and
// sent by a router back to the flow's source, is related in the kernel
// and in the reference exactly when it is an error type: ICMP 3, 4, 5, 11,
// 12 (destination unreachable, source quench, redirect, time exceeded,
// parameter problem) and ICMPv6 1–4, the types Linux conntrack relates.
// Every other type meets the source's isolated ingress (default deny) in
// both. Regression: the datapath (bpf/parse.h, polc_is_icmp_error)
// related source quench and redirect, the reference evaluator did not
// (compiler/eval TestICMPErrorTypes is the evaluator's side).
func TestICMPErrorTypesInKernel(t *testing.T) {
	requireBPF(t)
	src := `
endpoint a labels(app=a) addr 10.0.1.10, fd00::10
policy a {
  select app=a
  isolate ingress
  egress allow to world on udp/53, tcp/443
}
`
	path := filepath.Join(t.TempDir(), "icmp-errors.pol")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, ev, k := open(t, path)
	related := map[ir.Proto]map[uint8]bool{
		ir.ProtoICMP:   {3: true, 4: true, 5: true, 11: true, 12: true},
		ir.ProtoICMPv6: {1: true, 2: true, 3: true, 4: true},
	}
	for _, f := range []struct {
		proto       ir.Proto
		a, far, rtr netip.Addr
	}{
		{ir.ProtoICMP, netip.MustParseAddr("10.0.1.10"), netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("192.0.2.254")},
		{ir.ProtoICMPv6, netip.MustParseAddr("fd00::10"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::fe")},
	} {
		for _, out := range []packet.Spec{
			{Proto: ir.ProtoUDP, Src: f.a, Dst: f.far, SPort: 40000, DPort: 53},
			{Proto: ir.ProtoTCP, Src: f.a, Dst: f.far, SPort: 40001, DPort: 443, TCPFlags: ir.TCPSyn},
		} {
			for typ := range 256 {
				typ := uint8(typ)
				if err := k.Reset(); err != nil {
					t.Fatal(err)
				}
				ct := eval.NewConntrack()
				if o, err := Decide(ev, ct, k, CaseFromSpec(out, false)); err != nil || o.Diff() != "" || o.Reference.Rule != ir.FirstRuleID {
					t.Fatalf("%v flow: %v %s %s", out.Proto, err, o.Reference, o.Diff())
				}
				// the quote: the IP header and 8 bytes of L4 (RFC 792)
				l3 := len(packet.IP(out)) - len(l4Of(t, out))
				msg := packet.Spec{Proto: f.proto, Src: f.rtr, Dst: f.a, ICMPType: typ, Embedded: &out, EmbeddedLen: l3 + 8}
				c := CaseFromSpec(msg, true)
				want := ir.RuleDefaultDeny
				if related[f.proto][typ] {
					want = ir.RuleRelated
					if c.Ref.Embedded == nil {
						t.Errorf("%v type %d about %v: the harness gave the reference no quote", f.proto, typ, out.Proto)
						continue
					}
				}
				o, err := Decide(ev, ct, k, c)
				if err != nil {
					t.Fatal(err)
				}
				if o.Reference.Rule != want {
					t.Errorf("%v type %d about %v: reference %s, want %s", f.proto, typ, out.Proto, o.Reference, RuleName(want))
				}
				if d := o.Diff(); d != "" {
					t.Errorf("%v type %d about %v: %s", f.proto, typ, out.Proto, d)
				}
			}
		}
	}
}

// l4Of is the L4 part of a built packet (what follows its IP headers).
func l4Of(t *testing.T, s packet.Spec) []byte {
	t.Helper()
	ip := packet.IP(s)
	sum, err := packet.ParseIP(ip)
	if err != nil {
		t.Fatal(err)
	}
	return ip[sum.L3Len:]
}
