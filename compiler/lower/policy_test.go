package lower

import (
	"testing"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

func TestPolicyQuickstart(t *testing.T) {
	var want []string
	for p := 8080; p <= 8090; p++ { // 11 ports: expanded (SmallRange)
		for _, remote := range []string{"cidr 192.0.2.0/24", "cidr 192.0.2.0/24 + 192.0.2.66/32", "cidr 198.51.100.0/24 except 198.51.100.128/25"} {
			want = append(want, "api ingress "+remote+" tcp "+itoa(p)+" allow 17")
		}
	}
	want = append(want,
		"api ingress web tcp 8080 allow 16",
		"api ingress cidr 192.0.2.0/24 + 192.0.2.66/32 any * deny 18",
		"api egress db tcp 5432 allow 19",
		"api egress world udp 53 allow 20", // world: the datapath probes it for every non-local remote
		"db ingress api tcp 5432 allow 21",
	)
	diffLines(t, "policy", policyLines(mustBuild(t, quickstart())), want)
}

func itoa(i int) string {
	s := ""
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	return s
}

// Every kind of L4 term and peer, and precedence inside one class.
func TestPolicyClasses(t *testing.T) {
	prog := program(
		[]*ir.Endpoint{ep("a", "app=a", "10.0.0.1"), ep("b", "app=b", "10.0.0.2")},
		[]policySpec{
			{name: "p1", subject: sel("app=a"), rules: []ruleSpec{
				in(dsl.Allow, peers(peerAny), tcp(0, 65535)),             // 16: any port
				in(dsl.Allow, peers(peerAny), tcp(1000, 1015)),           // 17: 16 ports, expanded
				in(dsl.Allow, peers(peerAny), tcp(2000, 2040)),           // 18: ranges, split by 19
				in(dsl.Deny, peers(peerAny), tcp(2010, 2010)),            // 19: splits 18
				in(dsl.Allow, peers(peerSel("app=b")), anyProto),         // 20: any protocol
				in(dsl.Allow, peers(peerAny), icmp(8, -1)),               // 21: type 8, any code
				in(dsl.Allow, peers(peerAny), icmp(0, 0)),                // 22: echo reply
				in(dsl.Allow, peers(peerAny), icmp(-1, -1)),              // 23: any ICMP
				in(dsl.Allow, peers(peerAny), ir.PortMatch{Proto: 47}),   // 24: GRE
				out(dsl.Deny, peers(peerWorld), udp(53, 53)),             // 25
				out(dsl.Allow, peers(peerWorld, peerAny), udp(53, 53)),   // 26: world and any
				out(dsl.Allow, peers(peerSel("app=b")), tcp(8000, 8999)), // 27
				out(dsl.Allow, peers(peerSel("app=b")), tcp(8500, 8500)), // 28: inside 27, higher id
				out(dsl.Allow, peers(peerSel("app=b")), tcp(8100, 8100)), // 29
				out(dsl.Deny, peers(peerSel("app=nobody")), tcp(80, 80)), // 30: matches nothing
			}},
			{name: "p2", subject: sel("app=a"), rules: []ruleSpec{
				in(dsl.Deny, peers(peerAny), tcp(1015, 1015)), // 31: another policy, same class
			}},
		},
	)
	var want []string
	for p := 1000; p <= 1014; p++ {
		want = append(want, "a ingress any tcp "+itoa(p)+" allow 17")
	}
	for p := 2000; p <= 2009; p++ { // 10 ports left of the deny: expanded
		want = append(want, "a ingress any tcp "+itoa(p)+" allow 18")
	}
	want = append(want,
		"a ingress any tcp * allow 16",
		"a ingress any tcp 1015 deny 31",
		"a ingress any tcp 2010 deny 19",
		// 2011-2040: 30 ports, the fewest prefixes
		"a ingress any tcp range 2011 allow 18",
		"a ingress any tcp range 2012-2015 allow 18",
		"a ingress any tcp range 2016-2031 allow 18",
		"a ingress any tcp range 2032-2039 allow 18",
		"a ingress any tcp range 2040 allow 18",
		"a ingress b any * allow 20",
		"a ingress any icmp range 2048-2303 allow 21",
		"a ingress any icmp 0 allow 22",
		"a ingress any icmp * allow 23",
		"a ingress any proto-47 * allow 24",
		"a egress world udp 53 deny 25",
		"a egress any udp 53 allow 26",
		// 8000-8999 (27) covers 8500 (28) and 8100 (29): one interval,
		// decided by 27, as the fewest prefixes
		"a egress b tcp range 8000-8063 allow 27",
		"a egress b tcp range 8064-8191 allow 27",
		"a egress b tcp range 8192-8703 allow 27",
		"a egress b tcp range 8704-8959 allow 27",
		"a egress b tcp range 8960-8991 allow 27",
		"a egress b tcp range 8992-8999 allow 27",
	)
	diffLines(t, "policy", policyLines(mustBuild(t, prog)), want)
}

// A subject that a policy only isolates gets the flag and no entries; a
// subject no policy isolates in a direction gets neither.
func TestPolicyIsolateOnly(t *testing.T) {
	prog := program(
		[]*ir.Endpoint{ep("a", "app=a", "10.0.0.1"), ep("b", "app=b", "10.0.0.2")},
		[]policySpec{{name: "p", subject: sel("app=a"), isolate: [2]bool{false, true}}},
	)
	b := mustBuild(t, prog)
	diffLines(t, "policy", policyLines(b), nil)
	diffLines(t, "ipcache", ipcacheLines(b), []string{"10.0.0.1 a local,egress-isolated", "10.0.0.2 b local"})
}
