package compiler

import (
	"slices"
	"strings"
	"testing"

	"github.com/polc-dev/polc/dsl"
)

// TestRemoteEndpointsCompile: a remote endpoint is in the IR, marked,
// and never among a policy's subjects, though selectors still match it
// as a peer; a policy that selects only remote endpoints is no warning
// (it is another node's business); a test packet may come from or go to
// a remote endpoint, but not leave via one (it has no interface here).
func TestRemoteEndpointsCompile(t *testing.T) {
	src := `endpoint web labels(app=web) addr 10.0.0.1
endpoint api remote labels(app=api) addr 10.0.0.2
endpoint api2 labels(app=api) addr 10.0.0.3
policy p { select app=api  ingress allow from app=web }
policy q { select app=web  egress allow to app=api }
policy r { select {app=api, x=y}  isolate ingress }
policy s { select app=api  ingress deny from 10.0.0.9 }
test "t" { tcp api -> web:80 expect allow }
`
	f, ds := dsl.Parse("a.pol", []byte(src))
	if ds.HasErrors() {
		t.Fatal(ds.Format(nil))
	}
	prog, ds := Compile([]*dsl.File{f}, Sources{"a.pol": []byte(src)})
	if ds.HasErrors() || prog == nil {
		t.Fatal(ds.Format(nil))
	}
	if w := ds.Format(nil); !strings.Contains(w, `policy "r" selects no endpoint`) || strings.Count(w, "selects no endpoint") != 1 {
		t.Errorf("warnings:\n%s", w)
	}
	var remote []string
	for _, e := range prog.Endpoints {
		if e.Remote {
			remote = append(remote, e.Name)
		}
	}
	if !slices.Equal(remote, []string{"api"}) {
		t.Errorf("remote endpoints %v, want [api]", remote)
	}
	for _, p := range prog.Policies {
		if slices.Contains(p.Subjects, "api") {
			t.Errorf("policy %s has the remote endpoint as a subject: %v", p.Name, p.Subjects)
		}
	}
	if !strings.Contains(prog.Text(), "endpoint api at a.pol:2:1\n  remote\n") {
		t.Errorf("IR text:\n%s", prog.Text())
	}

	bad := src + "test \"via\" { tcp api -> web:80 via api expect deny }\n"
	f, _ = dsl.Parse("a.pol", []byte(bad))
	_, ds = Compile([]*dsl.File{f}, Sources{"a.pol": []byte(bad)})
	if !strings.Contains(ds.Format(nil), `a.pol:9:36: "via" names "api", a remote endpoint: it has no interface on this node`) {
		t.Errorf("via a remote endpoint:\n%s", ds.Format(nil))
	}
}
