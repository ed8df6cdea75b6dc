package k8s

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/polc-dev/polc/dsl"
)

// svcCluster is testCluster's pods x/a (app=web, http = TCP 8080), x/b
// (app=db, http = TCP 8081, dns = UDP 53) and y/c (app=web), plus x/d
// (app=web, not ready), x/e (app=db, http = TCP 8082) and Services in
// front of them.
const svcCluster = testCluster + `---
apiVersion: v1
kind: Pod
metadata: {name: d, namespace: x, labels: {app: web}}
spec:
  containers: [{name: web, ports: [{name: http, containerPort: 9000}]}]
status:
  conditions: [{type: Ready, status: "False"}]
  podIPs: [{ip: 10.1.0.9}]
---
apiVersion: v1
kind: Pod
metadata: {name: e, namespace: x, labels: {app: db}}
spec:
  containers: [{name: db, ports: [{name: http, containerPort: 8082}]}]
status:
  podIPs: [{ip: 10.1.0.5}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: x}
spec:
  selector: {app: web}
  clusterIPs: [10.96.0.1, "fd00:96::1"]
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: raw, port: 81, targetPort: 7000}
  - {name: same, port: 82}
---
apiVersion: v1
kind: Service
metadata: {name: any, namespace: x}
spec:
  selector: {app: db}
  clusterIP: 10.96.0.2
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: all, namespace: x}
spec:
  selector: {}
  clusterIP: 10.96.0.6
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: sliced, namespace: x}
spec:
  selector: {app: web}
  clusterIP: 10.96.0.3
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: sliced-1, namespace: x, labels: {kubernetes.io/service-name: sliced}}
addressType: IPv4
ports: [{name: http, port: 8081, protocol: TCP}]
endpoints:
- addresses: [10.1.0.2]
- addresses: [192.0.2.7]
- addresses: [10.1.0.1]
  conditions: {ready: false}
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: x}
spec:
  clusterIP: 10.96.0.4
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: legacy, namespace: x}
subsets:
- addresses: [{ip: 10.1.0.1}]
  notReadyAddresses: [{ip: 10.1.0.2}]
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: x}
spec:
  clusterIP: None
  selector: {app: db}
---
apiVersion: v1
kind: Service
metadata: {name: bare, namespace: x}
spec:
  clusterIP: 10.96.0.5
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: alias, namespace: x}
spec:
  type: ExternalName
  externalName: example.com
`

func readServices(t *testing.T, src string) (*Services, dsl.Diagnostics) {
	t.Helper()
	var svcs *Services
	_, ds := ReadFiles([]Source{{Path: "s.yaml", Src: []byte(src)}}, Options{Services: &svcs})
	return svcs, ds
}

func translation(tr Translation) string {
	if len(tr.Targets) == 0 {
		return "none: " + tr.NoBackend
	}
	var out []string
	for _, t := range tr.Targets {
		out = append(out, fmt.Sprintf("%s %v", t, t.Addrs))
	}
	return strings.Join(out, "; ")
}

// Rule: a Service's backends are the ready pods of its namespace that its
// selector matches, its port translated to targetPort (a number, a
// container port's name resolved on each pod, or the port itself); its
// EndpointSlices, when the input has any, decide instead (ready endpoints,
// pods by address, other addresses alone), and else its v1 Endpoints. A
// headless Service's name is its backends, the port unchanged.
// ExternalName Services, Services without selector or endpoints, ports
// the Service does not have and ICMP have no backend.
func TestServiceBackends(t *testing.T) {
	svcs, ds := readServices(t, svcCluster)
	if len(ds) > 0 {
		t.Fatalf("diagnostics:\n%s", ds.Error())
	}
	for _, c := range []struct{ proto, host, port, want string }{
		{"tcp", "svc/x/web", "80", "x.a:8080 [10.1.0.1]"},  // y/c is in another namespace, x/d is not ready
		{"tcp", "10.96.0.1", "80", "x.a:8080 [10.1.0.1]"},  // by cluster IP
		{"tcp", "fd00:96::1", "80", "x.a:8080 [10.1.0.1]"}, // either family's
		{"tcp", "svc/x/web", "http", "x.a:8080 [10.1.0.1]"},
		{"tcp", "svc/x/web", "81", "x.a:7000 [10.1.0.1]"},
		{"tcp", "svc/x/web", "82", "x.a:82 [10.1.0.1]"},
		{"tcp", "svc/x/any", "80", "x.b:8081 [10.1.0.2]; x.e:8082 [10.1.0.5]"}, // each pod's own http
		{"tcp", "svc/x/all", "80", "none: Service svc/x/all has no backend for port 80/tcp: it has no selector and the input has no EndpointSlices or Endpoints for it"},
		{"udp", "svc/x/web", "80", "none: Service svc/x/web has no port 80/udp (its ports: 80/tcp (http), 81/tcp (raw), 82/tcp (same))"},
		{"tcp", "svc/x/sliced", "80", "x.b:8081 [10.1.0.2]; 192.0.2.7:8081 [192.0.2.7]"},
		{"tcp", "svc/x/legacy", "80", "x.a:8080 [10.1.0.1]"},
		{"tcp", "svc/x/db", "5432", "x.b:5432 [10.1.0.2]; x.e:5432 [10.1.0.5]"},
		{"icmp", "svc/x/db", "", "x.b:0 [10.1.0.2]; x.e:0 [10.1.0.5]"},
		{"icmp", "svc/x/web", "", "none: icmp is not load-balanced: Service svc/x/web translates only TCP, UDP and SCTP"},
		{"tcp", "svc/x/bare", "80", "none: Service svc/x/bare has no backend for port 80/tcp: it has no selector and the input has no EndpointSlices or Endpoints for it"},
		{"tcp", "svc/x/alias", "80", "none: Service svc/x/alias is of type ExternalName (example.com): a DNS alias, with no cluster IP and no backend"},
	} {
		tr, err := svcs.Translate(c.proto, c.host, c.port)
		if err != nil {
			t.Errorf("%s %s:%s: %v", c.proto, c.host, c.port, err)
			continue
		}
		if got := translation(tr); got != c.want {
			t.Errorf("%s %s:%s:\n got %s\nwant %s", c.proto, c.host, c.port, got, c.want)
		}
	}
	for _, c := range []struct{ proto, host, port, want string }{
		{"tcp", "svc/x/wbe", "80", `unknown Service "svc/x/wbe"; did you mean "svc/x/web"?`},
		{"tcp", "svc/y/web", "80", `unknown Service "svc/y/web"; did you mean svc/x/web?`},
		{"tcp", "svc/web", "80", `"svc/web": name a Service svc/NAMESPACE/NAME`},
		{"tcp", "svc/x/web", "htp", `Service svc/x/web has no tcp port named "htp"; did you mean "http"?`},
		{"tcp", "10.96.0.99", "80", `"10.96.0.99" is no Service's`},
	} {
		if _, err := svcs.Translate(c.proto, c.host, c.port); err == nil || err.Error() != c.want {
			t.Errorf("%s %s:%s: error %v, want %s", c.proto, c.host, c.port, err, c.want)
		}
	}
	if !svcs.IsService("10.96.0.4") || svcs.IsService("10.1.0.1") || !svcs.IsService("svc/q/r") {
		t.Error("IsService: cluster IPs and svc/ names are Services, pod addresses are not")
	}
	var none *Services
	if _, err := none.Translate("tcp", "svc/x/web", "80"); err == nil || !strings.Contains(err.Error(), "the input has no Services") {
		t.Errorf("no Services: %v", err)
	}
}

// Rule: a Service, EndpointSlice or Endpoints is checked against its API
// type (unknown fields and values of the wrong shape are errors at their
// position), and what decides backends must make sense.
func TestServiceErrors(t *testing.T) {
	svc := func(spec string) string {
		return "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: x}\nspec:\n" + spec
	}
	slice := func(body string) string {
		return "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s-1, namespace: x, labels: {kubernetes.io/service-name: s}}\n" + body
	}
	for _, c := range []struct{ name, src, want string }{
		{"unknown field", svc("  selectr: {app: web}\n"), `s.yaml:5:3: Service: unknown field "selectr"`},
		{"wrong shape", svc("  ports: {port: 80}\n"), `s.yaml:5:10: Service: expected a list, found a mapping`},
		{"bad cluster IP", svc("  clusterIPs: [10.96.0.300]\n"), `s.yaml:5:16: Service x/s: cluster IP "10.96.0.300" is not an IP address`},
		{"bad protocol", svc("  ports: [{port: 80, protocol: ICMP}]\n"), `s.yaml:5:32: Service x/s: protocol "ICMP": want TCP, UDP or SCTP`},
		{"bad port", svc("  ports: [{port: 0}]\n"), `s.yaml:5:18: Service x/s: port 0: want 1 to 65535`},
		{"twice", svc("  ports: [{port: 80}]\n") + "---\n" + svc("  ports: [{port: 80}]\n"), `s.yaml:9:18: Service x/s appears twice (first at s.yaml:1:1)`},
		{"slice address", slice("addressType: IPv4\nendpoints:\n- addresses: [fd00::1]\n"), `s.yaml:6:15: EndpointSlice x/s-1: "fd00::1" is not an IPv4 address`},
		{"slice address type", slice("addressType: IPv5\nendpoints: []\n"), `s.yaml:4:14: EndpointSlice x/s-1: addressType "IPv5": want IPv4, IPv6 or FQDN`},
		{"slice unknown field", slice("addressType: IPv4\nendpoint: []\n"), `s.yaml:5:1: EndpointSlice: unknown field "endpoint"`},
		{"slice port", slice("addressType: IPv4\nports: [{name: http}]\nendpoints: []\n"), `s.yaml:5:9: EndpointSlice x/s-1: a port needs a port number, 1 to 65535`},
		{"endpoints address", "apiVersion: v1\nkind: Endpoints\nmetadata: {name: s}\nsubsets:\n- addresses: [{ip: nope}]\n", `s.yaml:5:20: Endpoints default/s: "nope" is not an IP address`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, ds := readServices(t, c.src)
			var got []string
			for _, d := range ds {
				got = append(got, d.String())
			}
			if diff := cmp.Diff([]string{c.want}, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// Rule: Cilium's kube-apiserver entity is the addresses of the
// default/kubernetes Service's endpoints (EndpointSlices, else v1
// Endpoints): a pod's address is that pod, another address itself; an
// input without them makes the entity an error at its position.
func TestCiliumKubeAPIServer(t *testing.T) {
	policy := cnp("  endpointSelector: {}\n  egress:\n  - toEntities: [kube-apiserver]\n")
	slices := "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: kubernetes, namespace: default, labels: {kubernetes.io/service-name: kubernetes}}\n" +
		"addressType: IPv4\nports: [{name: https, port: 6443}]\nendpoints:\n- addresses: [192.0.2.2, 10.1.0.1]\n"
	wantPolicies(t, policy+slices, `
policy cnp_x.p select {k8s:io.kubernetes.pod.namespace=x} isolate egress
  egress allow to 192.0.2.2/32 | {k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (a)}
`)
	endpoints := "---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: kubernetes, namespace: default}\nsubsets:\n- addresses: [{ip: 192.0.2.3}]\n  ports: [{name: https, port: 6443}]\n"
	wantPolicies(t, policy+endpoints, `
policy cnp_x.p select {k8s:io.kubernetes.pod.namespace=x} isolate egress
  egress allow to 192.0.2.3/32
`)
	wantDiags(t, policy,
		`p.yaml:9:18: CiliumNetworkPolicy: entity "kube-apiserver": the input has no EndpointSlice or Endpoints of the Service default/kubernetes, which give the API server's addresses`)
}

// Rule: a matrix cell (a test) to a Service becomes a test per backend,
// named after it, to the backend's endpoint (or, for a cluster IP, its
// address of that family) at the target port; a blocked cell of a Service
// without backend holds and is dropped, a reachable one is an error.
func TestTranslateTests(t *testing.T) {
	svcs, ds := readServices(t, svcCluster)
	if len(ds) > 0 {
		t.Fatal(ds.Error())
	}
	pos := dsl.Pos{File: "reach.txt", Line: 3, Col: 5}
	test := func(dst string, isName bool, port int64, v dsl.Verdict) *dsl.Test {
		return &dsl.Test{Pos: pos, Name: dsl.Text{Text: "tcp x.b -> " + dst}, Steps: []*dsl.Step{
			{Pos: pos, Expect: &v, ExpectPos: pos, Packet: &dsl.Packet{
				Pos: pos, Proto: dsl.Text{Text: "tcp"},
				Src: dsl.HostPort{Host: dsl.Text{Text: "x.b"}, IsName: true},
				Dst: dsl.HostPort{Pos: pos, Host: dsl.Text{Text: dst}, IsName: isName, Port: &dsl.Int{Value: port}},
			}},
			{Pos: pos, Reply: true},
		}}
	}
	got, ds := svcs.TranslateTests([]*dsl.Test{
		test("svc/x/any", true, 80, dsl.VerdictAllow),
		test("10.96.0.1", false, 80, dsl.VerdictDeny),
		test("fd00:96::1", false, 80, dsl.VerdictDeny), // x.a has no IPv6 address
		test("x.a", true, 80, dsl.VerdictAllow),
		test("svc/x/bare", true, 80, dsl.VerdictDeny),
		test("svc/x/bare", true, 80, dsl.VerdictAllow),
	})
	var lines []string
	for _, t := range got {
		d := t.Steps[0].Packet.Dst
		lines = append(lines, fmt.Sprintf("%s: %s(name %v):%d, %d steps", t.Name.Text, d.Host.Text, d.IsName, d.Port.Value, len(t.Steps)))
	}
	want := []string{
		"tcp x.b -> svc/x/any via x.b:8081: x.b(name true):8081, 2 steps",
		"tcp x.b -> svc/x/any via x.e:8082: x.e(name true):8082, 2 steps",
		"tcp x.b -> 10.96.0.1 via x.a:8080: 10.1.0.1(name false):8080, 2 steps",
		"tcp x.b -> x.a: x.a(name true):80, 2 steps",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("tests (-want +got):\n%s", diff)
	}
	var diags []string
	for _, d := range ds {
		diags = append(diags, d.String())
	}
	wantDiags := []string{
		"reach.txt:3:5: tcp x.b -> fd00:96::1: backend x.a:8080 of svc/x/web has no address of the family of fd00:96::1",
		"reach.txt:3:5: tcp x.b -> svc/x/bare: expected reachable, but no packet can be delivered: " +
			"Service svc/x/bare has no backend for port 80/tcp: it has no selector and the input has no EndpointSlices or Endpoints for it",
	}
	if diff := cmp.Diff(wantDiags, diags); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
}
