package harness

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// TestRemoteEndpointsInKernel: a node bundle in the kernel, as in the
// reference. A remote endpoint's packets arrive from outside (the
// prefilter drops far's) and meet only the local destination's ingress;
// a packet to one leaves through the local sender's egress only; between
// remote endpoints a packet is Elsewhere; an expected deny that only the
// remote node can give is RemoteHalf. Conntrack is this node's: web's
// egress opens a flow to db, whose own node would deny it, and db's
// reply is established at web's isolated ingress (the documented
// difference from a bundle with both endpoints local).
func TestRemoteEndpointsInKernel(t *testing.T) {
	src := `endpoint web labels(app=web) addr 10.0.1.10
endpoint db remote labels(app=db) addr 10.0.2.10
endpoint far remote labels(app=far) addr 10.9.0.5
policy web { select app=web  isolate ingress  egress allow to app=db on tcp/5432  egress deny to world }
policy db { select app=db  ingress allow from app=far }
prefilter drop from 10.9.0.0/24
test "to remote" { tcp web -> db:5432 expect allow; reply expect allow }
test "world" { tcp web -> 192.0.2.1:5432 expect deny }
test "from remote" { tcp db -> web:80 expect deny }
test "prefiltered remote" { tcp far -> web:80 expect deny }
test "elsewhere" { tcp db -> far:80 expect deny }
test "remote half" { tcp web -> db:5432 expect deny }
`
	path := filepath.Join(t.TempDir(), "node.pol")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	prog, ev, k := open(t, path)
	res, err := RunTests(prog, ev, RunOptions{Kernel: k})
	if err != nil {
		t.Fatal(err)
	}
	type step struct {
		rule            ir.RuleID
		points          int
		elsewhere, half bool
	}
	want := map[string][]step{
		"to remote":          {{prog.Rules[0].ID, 1, false, false}, {ir.RuleEstablished, 1, false, false}},
		"world":              {{prog.Rules[1].ID, 1, false, false}},
		"from remote":        {{ir.RuleDefaultDeny, 1, false, false}},
		"prefiltered remote": {{ir.RulePrefilter, 0, false, false}},
		"elsewhere":          {{ir.RuleDefaultAllow, 0, true, false}},
		"remote half":        {{prog.Rules[0].ID, 1, false, true}},
	}
	for _, tr := range res {
		ws := want[tr.Test.Name]
		if len(tr.Steps) != len(ws) {
			t.Fatalf("%s: %d steps", tr.Test.Name, len(tr.Steps))
		}
		for i, sr := range tr.Steps {
			w := ws[i]
			if !sr.OK() || sr.Kernel == nil || sr.Kernel.Rule != w.rule || sr.Reference.Rule != w.rule ||
				len(sr.Kernel.Points) != w.points || sr.Elsewhere != w.elsewhere || sr.RemoteHalf != w.half {
				t.Errorf("%s step %d: %+v kernel %+v reference %s elsewhere %v half %v; want %+v",
					tr.Test.Name, i+1, sr.Problems, sr.Kernel, sr.Reference, sr.Elsewhere, sr.RemoteHalf, w)
			}
		}
		delete(want, tr.Test.Name)
	}
	if len(want) > 0 {
		t.Errorf("tests not run: %v", want)
	}
	if sr := res[0].Steps[0]; sr.Kernel.Points[0].Dir != dsl.Egress {
		t.Errorf("to remote: hook %v", sr.Kernel.Points[0])
	}
}
