package harness

import (
	"strings"
	"testing"

	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/ir"
)

func TestParseFlow(t *testing.T) {
	prog, _, diags := compiler.Load([]string{"../../testdata/quickstart.pol"})
	if prog == nil {
		t.Fatalf("compile: %v", diags)
	}
	good := []struct{ in, want string }{
		{"tcp 10.0.1.10:40000 -> 10.0.2.10:8080", "tcp 10.0.1.10:40000 -> 10.0.2.10:8080 flags syn"},
		{"tcp 10.0.1.10->10.0.2.10:8080", "tcp 10.0.1.10:40000 -> 10.0.2.10:8080 flags syn"},
		{"udp web -> api:53", "udp 10.0.1.10:40000 -> 10.0.2.10:53"},
		{"sctp web:5000 -> db:5432", "sctp 10.0.1.10:5000 -> 10.0.3.10:5432"},
		{"tcp [fd00::1]:40000 -> [fd00::2]:80", "tcp [fd00::1]:40000 -> [fd00::2]:80 flags syn"},
		{"tcp web -> [fd00::20]:8080 flags ack", "tcp [fd00::10]:40000 -> [fd00::20]:8080 flags ack"},
		{"tcp web -> api:8080 flags syn, ack", "tcp 10.0.1.10:40000 -> 10.0.2.10:8080 flags syn,ack"},
		{"icmp 10.0.1.10 -> 10.0.2.10 type 8 code 0", "icmp 10.0.1.10 -> 10.0.2.10 type 8 code 0"},
		{"icmp web -> api", "icmp 10.0.1.10 -> 10.0.2.10 type 8 code 0"},
		{"icmp web -> api type 3 code 4", "icmp 10.0.1.10 -> 10.0.2.10 type 3 code 4"},
		{"icmpv6 web -> api", "icmpv6 [fd00::10] -> [fd00::20] type 128 code 0"},
		{"icmpv6 [fd00::10] -> api type 1", "icmpv6 [fd00::10] -> [fd00::20] type 1 code 0"},
		{"udp 192.0.2.7:1 -> db:53", "udp 192.0.2.7:1 -> 10.0.3.10:53"},
		{"tcp web -> api:8080 via db", "tcp 10.0.1.10:40000 -> 10.0.2.10:8080 flags syn via db"},
		{"tcp web -> api:8080 flags syn, ack via db", "tcp 10.0.1.10:40000 -> 10.0.2.10:8080 flags syn,ack via db"},
		{"tcp web -> api:8080 via db flags ack", "tcp 10.0.1.10:40000 -> 10.0.2.10:8080 flags ack via db"},
		{"udp 192.0.2.7 -> api:53 via web", "udp 192.0.2.7:40000 -> 10.0.2.10:53 via web"},
		{"icmpv6 [fe80::1] -> api type 135 via db", "icmpv6 [fe80::1] -> [fd00::20] type 135 code 0 via db"},
		{"icmp web -> api VIA api", "icmp 10.0.1.10 -> 10.0.2.10 type 8 code 0 via api"},
		{"tcp fd00::1 -> [fd00::2]:80", "tcp [fd00::1]:40000 -> [fd00::2]:80 flags syn"},
		{"icmpv6 fd00::10 -> fd00::20", "icmpv6 [fd00::10] -> [fd00::20] type 128 code 0"},
	}
	for _, c := range good {
		p, err := ParseFlow(prog, c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if got := FormatPacket(p); got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
		// What FormatPacket writes reads back the same.
		if p2, err := ParseFlow(prog, FormatPacket(p)); err != nil || p2 != p {
			t.Errorf("%q: round trip gives %+v, %v", c.in, p2, err)
		}
	}
	bad := []struct{ in, want string }{
		{"tcp web api:8080", "want PROTO SRC -> DST"},
		{"gre web -> api", "unknown protocol"},
		{"tcp web -> api", "needs a destination port"},
		{"tcp web -> nobody:80", `unknown endpoint "nobody"`},
		{"tcp web -> fd00::2", "needs a destination port"},
		{"tcp fe80::1%eth0 -> api:80", "brackets"},
		{"tcp 10.0.1.10 -> [fd00::2]:80", "mixed address families"},
		{"icmp web:5 -> api", "have no ports"},
		{"icmp [fd00::1] -> [fd00::2]", "use icmpv6"},
		{"tcp web -> api:0", "want 1 to 65535"},
		{"tcp web -> api:70000", "want 1 to 65535"},
		{"tcp web -> api:80 flags nope", "unknown TCP flag"},
		{"udp web -> api:80 flags syn", "TCP flags on a udp packet"},
		{"icmp web -> api code 3", "needs a type"},
		{"icmp web -> api type 300", "want 0 to 255"},
		{"tcp web -> db:80 extra", `unexpected "extra"`},
		{"tcp db -> [fd00::1]:80", `endpoint "db" has no IPv6 address`},
		{"tcp web -> api:80 via", "via needs an endpoint name"},
		{"tcp web -> api:80 via evil", `unknown endpoint "evil" after via`},
		{"tcp web -> api:80 via wbe", `unknown endpoint "wbe" after via; did you mean "web"?`},
		{"tcp web -> api:80 via db via web", "via given twice"},
		{"tcp web -> api:80 via db extra", `unexpected "extra": want type, code, flags or via`},
		{"tcp 10.0.1.0/24 -> api:80", "a packet goes to one address, not a prefix"},
		{"tcp web -> x.deploy/:80", `"x.deploy/": not an address or endpoint name`},
		{"tcp web -> x.deploy/web:80", `unknown endpoint "x.deploy/web"`},
	}
	for _, c := range bad {
		_, err := ParseFlow(prog, c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got error %v, want one containing %q", c.in, err, c.want)
		}
	}
}

// An unknown endpoint name suggests the endpoints of that name in any
// namespace (Kubernetes names written without NS. or KIND/), else the
// nearest name.
func TestSuggestEndpoint(t *testing.T) {
	prog := &ir.Program{}
	for _, n := range []string{"a.web", "b.web", "default.deploy/deathstar", "default.xwing", "api"} {
		prog.Endpoints = append(prog.Endpoints, &ir.Endpoint{Name: n})
	}
	for _, c := range []struct{ name, want string }{
		{"xwing", `; did you mean "default.xwing"?`},
		{"deathstar", `; did you mean "default.deploy/deathstar"?`},
		{"deploy/deathstar", `; did you mean "default.deploy/deathstar"?`},
		{"web", "; did you mean one of a.web, b.web?"},
		{"apj", `; did you mean "api"?`},
		{"zzzzzzzz", ""},
	} {
		if got := suggestEndpoint(prog, c.name); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}
