package harness

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/runtime/packet"
)

// TestAuditInKernel: audit policies, in the kernel as in the reference.
// db's enforcing policy allows web and api; an audit policy adds a deny
// on tcp/22: api's ssh passes, reported with the audit deny rule; its
// tcp/5432 passes unreported (an audit policy, like any policy, only adds
// to what others allow: web stays allowed too). cache has no enforcing
// policy, and an audit one allowing api only: web's connection passes,
// reported as the audit policy's default deny. What the enforcing policy
// denies stays denied.
func TestAuditInKernel(t *testing.T) {
	src := `endpoint web labels(app=web) addr 10.0.1.10
endpoint api labels(app=api) addr 10.0.1.20
endpoint db  labels(app=db)  addr 10.0.1.30
endpoint cache labels(app=cache) addr 10.0.1.40
policy db-now {
  select app=db
  ingress allow from app=web on tcp/5432
  ingress allow from app=api on tcp/5432, tcp/22
}
policy db-next audit {
  select app=db
  ingress allow from app=api on tcp/5432
  ingress deny from any on tcp/22
}
policy cache-next audit {
  select app=cache
  ingress allow from app=api on tcp/6379
}
`
	path := filepath.Join(t.TempDir(), "audit.pol")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	prog, ev, k := open(t, path)
	ruleAt := func(line int) ir.RuleID {
		for _, r := range prog.Rules {
			if r.Pos.Line == line {
				return r.ID
			}
		}
		t.Fatalf("no rule at line %d", line)
		return 0
	}
	for _, c := range []struct {
		name     string
		src, dst string
		port     uint16
		verdict  dsl.Verdict
		rule     ir.RuleID
		audit    ir.RuleID
	}{
		{"web to db, allowed by both", "10.0.1.10", "10.0.1.30", 5432, dsl.VerdictAllow, ruleAt(7), 0},
		{"api to db, allowed by both", "10.0.1.20", "10.0.1.30", 5432, dsl.VerdictAllow, ruleAt(8), 0},
		{"api ssh to db, audit deny rule", "10.0.1.20", "10.0.1.30", 22, dsl.VerdictAllow, ruleAt(8), ruleAt(13)},
		{"web ssh to db, denied (enforced)", "10.0.1.10", "10.0.1.30", 22, dsl.VerdictDeny, ir.RuleDefaultDeny, 0},
		{"web to cache, audit default deny", "10.0.1.10", "10.0.1.40", 6379, dsl.VerdictAllow, ir.RuleDefaultAllow, ir.RuleAuditDefaultDeny},
		{"api to cache, allowed by the audit policy", "10.0.1.20", "10.0.1.40", 6379, dsl.VerdictAllow, ir.RuleDefaultAllow, 0},
	} {
		if err := k.Reset(); err != nil {
			t.Fatal(err)
		}
		s := packet.Spec{Proto: ir.ProtoTCP, Src: netip.MustParseAddr(c.src), Dst: netip.MustParseAddr(c.dst), SPort: 40000, DPort: c.port, TCPFlags: ir.TCPSyn}
		o, err := Decide(ev, eval.NewConntrack(), k, CaseFromSpec(s, false))
		if err != nil {
			t.Fatal(err)
		}
		if d := o.Diff(); d != "" {
			t.Errorf("%s: %s", c.name, d)
		}
		if r := o.Reference; r.Verdict != c.verdict || r.Rule != c.rule || r.Audit != c.audit {
			t.Errorf("%s: reference %s, want %s (%s) audit %s", c.name, r, c.verdict, RuleName(c.rule), RuleName(c.audit))
		}
	}
}
