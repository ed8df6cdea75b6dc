package ir

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polc-dev/polc/dsl"
)

func TestText(t *testing.T) {
	pos := func(l int) dsl.Pos { return dsl.Pos{File: "a.pol", Line: l, Col: 1} }
	deny := dsl.VerdictDeny
	p := &Program{
		Sources: []Source{{Path: "a.pol", SHA256: "00ff"}, {Path: "gen"}},
		Endpoints: []*Endpoint{
			{Name: "web", Pos: pos(1), Labels: Labels{{"app", "web"}}, Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("fd00::/120")}},
			{Name: "bare", Pos: pos(2), Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.2/32")}},
		},
		Policies: []*Policy{{Name: "p", Pos: pos(3), Subjects: []string{"bare", "web"}, Isolates: [2]bool{false, true}, Rules: []RuleID{16}}},
		Rules: []*Rule{{
			ID: 16, Policy: "p", Pos: pos(4), Text: "egress deny to 10.0.0.0/8 except 10.1.0.0/16, {a in (x, y), !b}, world, any on tcp, icmp type 3 code 1",
			Dir: dsl.Egress, Action: dsl.Deny,
			Peers: []Peer{
				{Kind: PeerCIDR, CIDR: netip.MustParsePrefix("10.0.0.0/8"), Except: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, Set: "s"},
				{Kind: PeerSelector, Selector: Selector{Reqs: []Requirement{{Key: "a", Op: dsl.OpIn, Values: []string{"x", "y"}}, {Key: "b", Op: dsl.OpNotExists}}}},
				{Kind: PeerWorld}, {Kind: PeerAny},
			},
			Ports: []PortMatch{{Proto: ProtoTCP, Hi: 65535}, {Proto: ProtoICMP, ICMPType: 3, ICMPCode: 1}, {Proto: ProtoUDP, Lo: 1, Hi: 2}, {Proto: ProtoAny}},
		}},
		Prefilter: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		Tests: []*Test{{Name: `say "hi"`, Pos: pos(5), Steps: []Step{
			{Pos: pos(5), Packet: Packet{Proto: ProtoUDP, Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2"), SPort: 5000, DPort: 53}},
			{Pos: pos(6), Reply: true, Packet: Packet{Proto: ProtoICMPv6, Src: netip.MustParseAddr("fd00::2"), Dst: netip.MustParseAddr("fd00::1"), ICMPType: 129}, Expect: &deny},
		}}},
	}
	want := `polc-ir 1

source a.pol sha256:00ff
source gen sha256:-

endpoint web at a.pol:1:1
  labels app=web
  addr 10.0.0.1/32
  addr fd00::/120

endpoint bare at a.pol:2:1
  labels -
  addr 10.0.0.2/32

policy p at a.pol:3:1
  select {}
  subjects bare web
  isolates egress
  rules 16

rule 16 policy p at a.pol:4:1
  text egress deny to 10.0.0.0/8 except 10.1.0.0/16, {a in (x, y), !b}, world, any on tcp, icmp type 3 code 1
  egress deny
  peer cidr 10.0.0.0/8 except 10.1.0.0/16 set s
  peer selector {a in (x, y), !b}
  peer world
  peer any
  port tcp
  port icmp type 3 code 1
  port udp/1-2
  port any

prefilter drop 192.0.2.0/24

test "say \"hi\"" at a.pol:5:1
  step 1 at a.pol:5:1 udp [fd00::1]:5000 -> [fd00::2]:53
  step 2 at a.pol:6:1 reply icmpv6 fd00::2 -> fd00::1 type 129 code 0 expect deny
`
	got := p.Text()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Text (-want +got):\n%s", diff)
	}
	if got2 := p.Text(); got2 != got {
		t.Errorf("Text is not stable")
	}
}

func TestEmptyProgramText(t *testing.T) {
	if got, want := (&Program{}).Text(), "polc-ir 1\n\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestStrings(t *testing.T) {
	cases := []struct{ got, want string }{
		{Selector{}.String(), "{}"},
		{Selector{Reqs: []Requirement{{Key: "a", Op: dsl.OpNotEq, Values: []string{"b"}}}}.String(), "a!=b"},
		{Selector{Reqs: []Requirement{{Key: "a", Op: dsl.OpNotIn, Values: []string{"b"}}, {Key: "c", Op: dsl.OpExists}}}.String(), "{a notin (b), c exists}"},
		{PortMatch{Proto: ProtoICMPv6, ICMPType: -1, ICMPCode: -1}.String(), "icmpv6"},
		{PortMatch{Proto: ProtoSCTP, Lo: 9, Hi: 9}.String(), "sctp/9"},
		{Peer{Kind: PeerCIDR, CIDR: netip.MustParsePrefix("fd00::1/128")}.String(), "fd00::1"},
		{Peer{Kind: PeerCIDR, CIDR: netip.MustParsePrefix("10.0.0.0/8"), Except: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("10.2.0.0/16")}}.String(), "10.0.0.0/8 except (10.0.0.1, 10.2.0.0/16)"},
		{TCPFlagsString(TCPSyn | TCPAck | TCPUrg), "syn,ack,urg"},
		{TCPFlagsString(0), "-"},
		{Packet{Proto: ProtoTCP, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SPort: 1, DPort: 2, TCPFlags: TCPRst}.String(), "tcp 10.0.0.1:1 -> 10.0.0.2:2 flags rst"},
		{Packet{Proto: ProtoTCP, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SPort: 1, DPort: 2, TCPFlags: TCPSyn, Via: "evil"}.String(), "tcp 10.0.0.1:1 -> 10.0.0.2:2 flags syn via evil"},
		{Packet{Proto: ProtoICMPv6, Src: netip.MustParseAddr("fe80::1"), Dst: netip.MustParseAddr("fd00::2"), ICMPType: 135, Via: "evil"}.String(), "icmpv6 fe80::1 -> fd00::2 type 135 code 0 via evil"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// Labels and selectors with control characters print quoted, so that the
// text form cannot carry an escape sequence or a forged line.
func TestControlCharactersQuoted(t *testing.T) {
	ls := Labels{{Key: "app", Value: "x\x1b[31mred"}, {Key: "k\nv", Value: "ok"}}
	if got, want := ls.String(), `app="x\x1b[31mred" "k\nv"=ok`; got != want {
		t.Errorf("labels: %s, want %s", got, want)
	}
	r := Requirement{Key: "app", Op: dsl.OpIn, Values: []string{"a", "b\rc"}}
	if got, want := r.String(), `app in (a, "b\rc")`; got != want {
		t.Errorf("requirement: %s, want %s", got, want)
	}
	if got := Printable("plain-value_1.2"); got != "plain-value_1.2" {
		t.Errorf("a plain value is quoted: %s", got)
	}
}

func TestTextDropTunnels(t *testing.T) {
	p := &Program{DropTunnels: true}
	if got := p.Text(); !strings.Contains(got, "\noption drop-tunnels\n") {
		t.Errorf("the text form lacks the option:\n%s", got)
	}
	if got := (&Program{}).Text(); strings.Contains(got, "option") {
		t.Errorf("the text form shows an option not set:\n%s", got)
	}
}
