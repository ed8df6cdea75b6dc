package compiler

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polc-dev/polc/dsl"
)

func TestResolveDuplicatesAcrossFiles(t *testing.T) {
	a := file(
		ep(1, "web", "app=web", "10.0.0.1"),
		cidrset(2, "nets", cidr(2, 20, "10.1.0.0/16")),
		policy(3, "p", "app=web"),
		test(5, "t", step(5, 10, packet(5, "tcp", host(5, 20, "web", -1), host(5, 30, "10.9.9.9", 80)), expect(dsl.VerdictAllow))),
	)
	b := &dsl.File{Path: "b.pol", Decls: []dsl.Decl{
		&dsl.Endpoint{Pos: dsl.Pos{File: "b.pol", Line: 1, Col: 1}, Name: dsl.Ident{Pos: dsl.Pos{File: "b.pol", Line: 1, Col: 10}, Name: "web"}},
		&dsl.CIDRSet{Name: dsl.Ident{Pos: dsl.Pos{File: "b.pol", Line: 2, Col: 9}, Name: "nets"}},
		&dsl.Policy{Name: dsl.Ident{Pos: dsl.Pos{File: "b.pol", Line: 3, Col: 8}, Name: "p"}},
		&dsl.Test{Name: dsl.Text{Pos: dsl.Pos{File: "b.pol", Line: 4, Col: 6}, Text: "t"}},
	}}
	syms, ds := resolve([]*dsl.File{a, b})
	want := []string{
		`b.pol:1:10: endpoint "web" is already declared at t.pol:1:10`,
		`b.pol:2:9: cidrset "nets" is already declared at t.pol:2:9`,
		`b.pol:3:8: policy "p" is already declared at t.pol:3:8`,
		`b.pol:4:6: test "t" is already declared at t.pol:5:6`,
	}
	if diff := cmp.Diff(want, diagStrings(ds)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
	if syms.endpointByName["web"] != a.Decls[0] || len(syms.endpoints) != 1 {
		t.Errorf("the first declaration must win")
	}
}

func TestResolveUnknownCIDRSet(t *testing.T) {
	f := file(
		ep(1, "web", "app=web,tier=frontend", "10.0.0.1"),
		cidrset(2, "partners", cidr(2, 20, "192.0.2.0/24")),
		policy(3, "p", "app=web",
			rule(5, dsl.Ingress, dsl.Allow, peers(setPeer(5, 20, "partners"), setPeer(5, 30, "partnrs"), setPeer(5, 40, "web"))),
		),
	)
	_, ds := resolve([]*dsl.File{f})
	want := []string{
		`t.pol:5:30: unknown cidrset "partnrs"`,
		`t.pol:5:40: "web" is an endpoint, not a cidrset; select it by labels, e.g. app=web`,
	}
	if diff := cmp.Diff(want, diagStrings(ds)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
}
