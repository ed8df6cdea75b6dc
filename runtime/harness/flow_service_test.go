package harness

import (
	"os"
	"strings"
	"testing"

	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl/k8s"
)

// servicesScenario compiles testdata/k8s/services and returns its Services.
func servicesScenario(t *testing.T) (*ir.Program, *k8s.Services) {
	t.Helper()
	var srcs []k8s.Source
	for _, p := range []string{"../../testdata/k8s/services/cluster.yaml", "../../testdata/k8s/services/policy.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, k8s.Source{Path: p, Src: b})
	}
	var svcs *k8s.Services
	files, ds := k8s.ReadFiles(srcs, k8s.Options{Services: &svcs})
	if ds.HasErrors() {
		t.Fatal(ds)
	}
	prog, ds := compiler.Compile(files, nil)
	if ds.HasErrors() {
		t.Fatal(ds)
	}
	return prog, svcs
}

// Flows to a Service (svc/NS/NAME:PORT, a port name, or a cluster IP of
// either family) become a packet per backend at its target port; other
// flows are ParseFlow's.
func TestParseServiceFlow(t *testing.T) {
	prog, svcs := servicesScenario(t)
	for _, c := range []struct{ in, want string }{
		{"udp default.foo -> 10.96.0.10:53", "udp 10.0.1.1:40000 -> 10.0.0.10:5353; udp 10.0.1.1:40000 -> 10.0.0.11:5353"},
		{"udp default.foo -> svc/kube-system/kube-dns:53", "udp 10.0.1.1:40000 -> 10.0.0.10:5353; udp 10.0.1.1:40000 -> 10.0.0.11:5353"},
		{"tcp default.foo:1234 -> svc/kube-system/kube-dns:dns-tcp flags ack", "tcp 10.0.1.1:1234 -> 10.0.0.10:5353 flags ack; tcp 10.0.1.1:1234 -> 10.0.0.11:5353 flags ack"},
		{"udp default.foo -> [fd00:96::a]:53", "udp [fd00::1:1]:40000 -> [fd00::10]:5353; udp [fd00::1:1]:40000 -> [fd00::11]:5353"},
		{"tcp default.bar -> svc/default/web:80", "tcp 10.0.1.2:40000 -> 10.0.1.3:8080 flags syn"},
		{"tcp default.bar -> svc/default/web-headless:8080", "tcp 10.0.1.2:40000 -> 10.0.1.3:8080 flags syn; tcp 10.0.1.2:40000 -> 10.0.1.4:8080 flags syn"},
		{"icmp default.bar -> svc/default/web-headless", "icmp 10.0.1.2 -> 10.0.1.3 type 8 code 0; icmp 10.0.1.2 -> 10.0.1.4 type 8 code 0"},
		{"tcp default.bar -> 10.96.0.1:443", "tcp 10.0.1.2:40000 -> 192.0.2.1:6443 flags syn"},
		{"tcp default.bar -> svc/default/empty:80", "none: Service svc/default/empty has no backend for port 80/tcp: it has no selector and the input has no EndpointSlices or Endpoints for it"},
		{"tcp default.bar -> default.web-0:8080", "not a Service: tcp 10.0.1.2:40000 -> 10.0.1.3:8080 flags syn"},
	} {
		p, sf, err := ParseServiceFlow(prog, svcs, c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		var got string
		switch {
		case sf == nil:
			got = "not a Service: " + FormatPacket(p)
		case len(sf.Packets) == 0:
			got = "none: " + sf.Translation.NoBackend
		default:
			var ps []string
			for _, bp := range sf.Packets {
				ps = append(ps, FormatPacket(bp))
			}
			got = strings.Join(ps, "; ")
			if p != sf.Packets[0] {
				t.Errorf("%q: the packet is not the first backend's", c.in)
			}
		}
		if got != c.want {
			t.Errorf("%q:\n got %s\nwant %s", c.in, got, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"udp default.foo -> svc/kube-system/kubedns:53", `unknown Service "svc/kube-system/kubedns"; did you mean "svc/kube-system/kube-dns"?`},
		{"udp default.foo -> svc/kube-system/kube-dns:dsn", `Service svc/kube-system/kube-dns has no udp port named "dsn"; did you mean "dns"?`},
		{"udp default.foo -> svc/kube-system/kube-dns", `a udp packet needs a destination port`},
		{"udp default.nobody -> svc/kube-system/kube-dns:53", `to backend kube-system.coredns-a:5353: unknown endpoint "default.nobody"`},
		{"udp 10.0.1.1 -> [fd00:96::a]:53", `mixed address families`},
	} {
		_, _, err := ParseServiceFlow(prog, svcs, c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.in, err, c.want)
		}
	}
	// Without Services, svc/ names are an error and addresses plain.
	if _, _, err := ParseServiceFlow(prog, nil, "udp default.foo -> svc/kube-system/kube-dns:53"); err == nil || !strings.Contains(err.Error(), "the input has no Services") {
		t.Errorf("no Services: %v", err)
	}
	if _, sf, err := ParseServiceFlow(prog, nil, "udp default.foo -> 10.96.0.10:53"); err != nil || sf != nil {
		t.Errorf("no Services, a cluster IP: %v, %v", sf, err)
	}
}
