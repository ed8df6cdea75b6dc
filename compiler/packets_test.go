package compiler

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polc-dev/polc/dsl"
)

func stepsOf(t *testing.T, tst *dsl.Test) []string {
	t.Helper()
	f := file(
		ep(1, "web", "app=web", "fd00::10", "10.0.1.10", "10.0.1.9"),
		ep(2, "v6", "app=v6", "fd00::20"),
		ep(3, "v4", "app=v4", "10.0.3.10"),
		tst,
	)
	prog := mustNormalize(t, f)
	var out []string
	for _, s := range prog.Tests[0].Steps {
		out = append(out, s.Packet.String())
	}
	return out
}

func TestStepsAddressChoice(t *testing.T) {
	allow := expect(dsl.VerdictAllow)
	cases := []struct {
		name string
		pkt  *dsl.Packet
		want string
	}{
		{"IPv4 first, lowest address", packet(1, "tcp", host(1, 1, "web", -1), host(1, 2, "v4", 80)), "tcp 10.0.1.9:40000 -> 10.0.3.10:80 flags syn"},
		{"IPv6 when the other side is IPv6-only", packet(1, "udp", host(1, 1, "web", 5000), host(1, 2, "v6", 53)), "udp [fd00::10]:5000 -> [fd00::20]:53"},
		{"IPv6 when a literal is", packet(1, "sctp", host(1, 1, "fd00::99", -1), host(1, 2, "web", 9)), "sctp [fd00::99]:40000 -> [fd00::10]:9"},
		{"icmp echo by default", packet(1, "icmp", host(1, 1, "web", -1), host(1, 2, "10.9.9.9", -1)), "icmp 10.0.1.9 -> 10.9.9.9 type 8 code 0"},
		{"icmpv6 picks IPv6", packet(1, "icmpv6", host(1, 1, "web", -1), host(1, 2, "v6", -1)), "icmpv6 fd00::10 -> fd00::20 type 128 code 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := stepsOf(t, test(1, "t", step(1, 1, c.pkt, allow)))
			if diff := cmp.Diff([]string{c.want}, got); diff != "" {
				t.Errorf("packet (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStepsRepliesAndFlags(t *testing.T) {
	allow := expect(dsl.VerdictAllow)
	icmpUnreach := packet(4, "icmp", host(4, 1, "web", -1), host(4, 2, "v4", -1))
	icmpUnreach.ICMPType, icmpUnreach.ICMPCode = num(4, 3, 3), num(4, 4, 1)
	got := stepsOf(t, test(1, "t",
		step(1, 1, packet(1, "tcp", host(1, 1, "web", -1), host(1, 2, "v4", 80)), nil),
		replyStep(1, 2, nil),
		step(1, 3, packet(1, "tcp", host(1, 1, "web", -1), host(1, 2, "v4", 80)), nil),
		&dsl.Step{Pos: at(1, 4), Reply: true, Flags: []dsl.Text{txt(1, 5, "FIN"), txt(1, 6, "ack")}},
		step(1, 7, packet(1, "tcp", host(1, 1, "v4", -1), host(1, 2, "web", 80)), nil),
		step(2, 1, packet(2, "icmp", host(2, 1, "web", -1), host(2, 2, "v4", -1)), nil),
		replyStep(2, 2, nil),
		step(3, 1, packet(3, "icmpv6", host(3, 1, "web", -1), host(3, 2, "v6", -1)), nil),
		replyStep(3, 2, nil),
		step(4, 1, icmpUnreach, allow),
	))
	want := []string{
		"tcp 10.0.1.9:40000 -> 10.0.3.10:80 flags syn",
		"tcp 10.0.3.10:80 -> 10.0.1.9:40000 flags ack",
		"tcp 10.0.1.9:40000 -> 10.0.3.10:80 flags ack", // the same flow again
		"tcp 10.0.3.10:80 -> 10.0.1.9:40000 flags ack,fin",
		"tcp 10.0.3.10:40000 -> 10.0.1.9:80 flags syn", // a new flow
		"icmp 10.0.1.9 -> 10.0.3.10 type 8 code 0",
		"icmp 10.0.3.10 -> 10.0.1.9 type 0 code 0",
		"icmpv6 fd00::10 -> fd00::20 type 128 code 0",
		"icmpv6 fd00::20 -> fd00::10 type 129 code 0",
		"icmp 10.0.1.9 -> 10.0.3.10 type 3 code 1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("packets (-want +got):\n%s", diff)
	}
}

func TestStepsErrors(t *testing.T) {
	allow := expect(dsl.VerdictAllow)
	icmp := packet(1, "icmp", host(1, 1, "web", -1), host(1, 2, "v4", -1))
	icmp.ICMPType = num(1, 3, 0)
	tcp := func() *dsl.Packet { return packet(2, "tcp", host(2, 1, "web", -1), host(2, 2, "v4", 80)) }
	f := file(
		ep(1, "web", "app=web", "10.0.1.10"),
		ep(2, "v4", "app=v4", "10.0.3.10"),
		test(10, "reply to echo reply", step(10, 1, icmp, nil), replyStep(10, 5, allow)),
		test(11, "bad flag", &dsl.Step{Pos: at(11, 1), Packet: tcp(), Flags: []dsl.Text{txt(11, 9, "sync")}, Expect: allow}),
		test(12, "any packet", step(12, 1, packet(12, "any", host(12, 1, "web", -1), host(12, 2, "v4", -1)), allow)),
		test(13, "bad address", step(13, 1, packet(13, "udp", host(13, 1, "10.0.0.256", -1), host(13, 30, "v4", 53)), allow)),
		test(14, "source port 0", step(14, 1, packet(14, "udp", host(14, 1, "web", 0), host(14, 30, "v4", 53)), allow)),
		test(15, "no steps"),
		test(16, "unknown via", &dsl.Step{Pos: at(16, 1), Packet: tcp(), Via: &dsl.Ident{Pos: at(16, 30), Name: "v5"}, Expect: allow}),
		test(17, "via on a reply", step(17, 1, tcp(), nil), &dsl.Step{Pos: at(17, 40), Reply: true, Via: &dsl.Ident{Pos: at(17, 50), Name: "v4"}, Expect: allow}),
	)
	_, ds := Compile([]*dsl.File{f}, nil)
	want := []string{
		`t.pol:10:5: cannot reply to icmp type 0: only echo requests have replies; write the packet instead`,
		`t.pol:11:9: unknown TCP flag "sync"; want syn, ack, fin, rst, psh or urg`,
		`t.pol:12:20: a test packet needs a protocol: tcp, udp, sctp, icmp or icmpv6, not "any"`,
		`t.pol:13:1: invalid address "10.0.0.256": IPv4 field has value >255`,
		`t.pol:14:11: port 0 is out of range 1..65535`,
		`t.pol:15:6: test "no steps" has no steps`,
		`t.pol:16:30: unknown endpoint "v5"; did you mean "v4"?`,
		`t.pol:17:50: "via" does not apply to a reply: a reply is sent by the previous packet's destination; write the packet out to send it via another endpoint`,
	}
	if diff := cmp.Diff(want, diagStrings(ds)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
}

// TestStepsVia: via names the sending endpoint whatever the source
// address (an endpoint's, another's or the world's), and a reply to such a
// packet has none, since the previous packet's destination sends it.
func TestStepsVia(t *testing.T) {
	allow := expect(dsl.VerdictAllow)
	via := func(p *dsl.Packet, name string) *dsl.Step {
		return &dsl.Step{Pos: at(1, 1), Packet: p, Via: &dsl.Ident{Pos: at(1, 30), Name: name}}
	}
	got := stepsOf(t, test(1, "t",
		via(packet(1, "tcp", host(1, 1, "web", -1), host(1, 2, "v4", 80)), "v4"),
		replyStep(1, 2, nil),
		via(packet(2, "udp", host(2, 1, "192.0.2.1", -1), host(2, 2, "v4", 53)), "web"),
		via(packet(3, "icmpv6", host(3, 1, "fe80::1", -1), host(3, 2, "v6", -1)), "web"),
		step(4, 1, packet(4, "tcp", host(4, 1, "web", -1), host(4, 2, "v4", 80)), allow),
	))
	want := []string{
		"tcp 10.0.1.9:40000 -> 10.0.3.10:80 flags syn via v4",
		"tcp 10.0.3.10:80 -> 10.0.1.9:40000 flags ack",
		"udp 192.0.2.1:40000 -> 10.0.3.10:53 via web",
		"icmpv6 fe80::1 -> fd00::20 type 128 code 0 via web",
		"tcp 10.0.1.9:40000 -> 10.0.3.10:80 flags ack",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("packets (-want +got):\n%s", diff)
	}
}
