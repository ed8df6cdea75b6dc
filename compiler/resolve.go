package compiler

import (
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// symbols is what resolve builds: every declaration by kind, in load order,
// and the named ones by name. Endpoints, cidrsets, policies and tests each
// have their own namespace.
type symbols struct {
	endpoints  []*dsl.Endpoint
	cidrsets   []*dsl.CIDRSet
	policies   []*dsl.Policy
	prefilters []*dsl.Prefilter
	tests      []*dsl.Test

	endpointByName map[string]*dsl.Endpoint
	cidrsetByName  map[string]*dsl.CIDRSet
	policyByName   map[string]*dsl.Policy

	// Built on first use by selectEndpoints.
	labels      map[string]ir.Labels // endpoints' labels in normal form
	sortedNames []string             // endpoint names, sorted
	selected    map[string][]string  // selector text → names it selects
	index       *selectorIndex       // over sortedNames
}

// resolve builds the symbol tables across all files and reports duplicate
// names (at the second declaration, naming the first) and peers that name
// an unknown cidrset. The first of two duplicates is the one kept.
func resolve(files []*dsl.File) (*symbols, dsl.Diagnostics) {
	var ds dsl.Diagnostics
	s := &symbols{
		endpointByName: map[string]*dsl.Endpoint{},
		cidrsetByName:  map[string]*dsl.CIDRSet{},
		policyByName:   map[string]*dsl.Policy{},
	}
	testByName := map[string]*dsl.Test{}
	for _, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *dsl.Endpoint:
				if first, ok := s.endpointByName[d.Name.Name]; ok {
					ds.Errorf(d.Name.Pos, "endpoint %q is already declared at %s", d.Name.Name, first.Name.Pos)
					continue
				}
				s.endpointByName[d.Name.Name] = d
				s.endpoints = append(s.endpoints, d)
			case *dsl.CIDRSet:
				if first, ok := s.cidrsetByName[d.Name.Name]; ok {
					ds.Errorf(d.Name.Pos, "cidrset %q is already declared at %s", d.Name.Name, first.Name.Pos)
					continue
				}
				s.cidrsetByName[d.Name.Name] = d
				s.cidrsets = append(s.cidrsets, d)
			case *dsl.Policy:
				if first, ok := s.policyByName[d.Name.Name]; ok {
					ds.Errorf(d.Name.Pos, "policy %q is already declared at %s", d.Name.Name, first.Name.Pos)
					continue
				}
				s.policyByName[d.Name.Name] = d
				s.policies = append(s.policies, d)
			case *dsl.Prefilter:
				s.prefilters = append(s.prefilters, d)
			case *dsl.Test:
				if first, ok := testByName[d.Name.Text]; ok {
					ds.Errorf(d.Name.Pos, "test %q is already declared at %s", d.Name.Text, first.Name.Pos)
					continue
				}
				testByName[d.Name.Text] = d
				s.tests = append(s.tests, d)
			}
		}
	}
	for _, p := range s.policies {
		for _, r := range p.Rules {
			for _, peer := range r.Peers {
				if peer.Kind != dsl.PeerSet {
					continue
				}
				name := peer.Set.Name
				if _, ok := s.cidrsetByName[name]; ok {
					continue
				}
				if e, ok := s.endpointByName[name]; ok {
					ds.Errorf(peer.Set.Pos, "%q is an endpoint, not a cidrset; select it by labels, e.g. %s", name, labelHint(e))
					continue
				}
				ds.Errorf(peer.Set.Pos, "unknown cidrset %q", name)
			}
		}
	}
	return s, ds
}

// labelHint suggests a selector for endpoint e: its first label, or a
// reminder that it has none.
func labelHint(e *dsl.Endpoint) string {
	for _, l := range e.Labels {
		if l.Key != "" {
			return l.Key + "=" + l.Value
		}
	}
	return "app=" + e.Name.Name + " (after giving it that label)"
}
