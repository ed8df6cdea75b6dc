package lower

import (
	"cmp"
	"slices"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// Options tune a build.
type Options struct {
	// Compiler is the compiler version recorded in the manifest.
	Compiler string
	// Limits overrides DefaultLimits for some maps.
	Limits Limits
}

// Build lowers prog and assembles the bundle around the BPF object (the
// ELF bytes bpf.Object returns; tests may pass anything). The same program
// and object always give the same bundle bytes.
func Build(prog *ir.Program, object []byte, opts Options) (*bundle.Bundle, error) {
	space, err := splitAddressSpace(prog)
	if err != nil {
		return nil, err
	}
	groups, err := groupSubjects(prog, space)
	if err != nil {
		return nil, err
	}
	pl := &policyLowering{prog: prog, space: space, selectors: map[string][]uint32{}}
	for _, g := range groups {
		if err := pl.lowerGroup(g); err != nil {
			return nil, err
		}
	}

	records := ipcacheRecords(ipcacheEntries(space))
	for _, name := range bundle.MapNames {
		if err := opts.Limits.check(name, count(name, records[name])); err != nil {
			return nil, err
		}
	}
	pol, ranges, err := policyRecords(space, opts.Limits)
	if err != nil {
		return nil, err
	}
	records[bundle.MapPolicy] = pol
	records[bundle.MapPolicyRanges] = ranges
	for _, p := range prog.Prefilter {
		name := bundle.MapPrefilter4
		if p.Addr().Is6() {
			name = bundle.MapPrefilter6
		}
		records[name] = bundle.AppendPrefilter(records[name], p.Masked())
	}

	b := &bundle.Bundle{Object: object}
	for _, name := range bundle.MapNames {
		recs := records[name]
		n := count(name, recs)
		if err := opts.Limits.check(name, n); err != nil {
			return nil, err
		}
		m, err := bundle.NewMap(name, recs)
		if err != nil {
			return nil, err
		}
		m.MaxEntries = opts.Limits.maxEntries(name, n)
		if name == bundle.MapCounters {
			m.MaxEntries = counterSlots(prog)
		}
		b.Maps = append(b.Maps, m)
	}

	f := features{
		prefixes4: len(records[bundle.MapIPCache4LPM]) > 0,
		prefixes6: len(records[bundle.MapIPCache6LPM]) > 0,
		ranges:    len(ranges) > 0,
		prefilter: len(prog.Prefilter) > 0,
		tunnels:   prog.DropTunnels,
	}
	for _, e := range prog.Endpoints {
		for _, a := range e.Addrs {
			f.ipv4 = f.ipv4 || a.Addr().Is4()
			f.ipv6 = f.ipv6 || a.Addr().Is6()
		}
	}
	m := &b.Manifest
	m.Compiler = opts.Compiler
	for _, s := range prog.Sources {
		m.Sources = append(m.Sources, bundle.Source{Path: s.Path, SHA256: s.SHA256})
	}
	m.Programs, m.TailCalls, m.Constants = layout(f)
	b.Identities = identities(space)
	b.Endpoints = endpoints(prog, space)
	b.Rules = rules(prog)
	if err := b.Seal(); err != nil {
		return nil, err
	}
	return b, nil
}

// identities lists every identity for identities.json, by number.
func identities(s *addrSpace) []bundle.Identity {
	out := []bundle.Identity{{ID: bpf.IdentityWorld, Kind: bundle.IdentityWorld}}
	for _, c := range s.classes {
		if c == s.world {
			continue
		}
		id := bundle.Identity{ID: c.id, Kind: bundle.IdentityCIDR, Endpoints: c.endpoints, Remote: c.remote}
		if c.owner != nil {
			id.Kind = bundle.IdentityEndpoint
			id.Labels = []string{}
			for _, l := range c.owner.labels {
				id.Labels = append(id.Labels, l.Key+"="+l.Value)
			}
		}
		for _, a := range c.atoms {
			id.CIDRs = append(id.CIDRs, s.atoms[a].text)
		}
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b bundle.Identity) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// endpoints lists every local endpoint with its index for endpoints.json
// (remote endpoints have no interface to bind here).
func endpoints(prog *ir.Program, s *addrSpace) []bundle.Endpoint {
	out := []bundle.Endpoint{}
	for i, e := range prog.Endpoints {
		if s.epIndex[i] == 0 {
			continue
		}
		be := bundle.Endpoint{Index: s.epIndex[i], Name: e.Name, Addrs: make([]string, len(e.Addrs))}
		for j, a := range e.Addrs {
			if a.IsSingleIP() {
				be.Addrs[j] = a.Addr().String()
			} else {
				be.Addrs[j] = a.String()
			}
		}
		out = append(out, be)
	}
	return out
}

// rules lists the reserved rule ids and every rule for rules.json.
func rules(prog *ir.Program) []bundle.Rule {
	var out []bundle.Rule
	for id := ir.RuleDefaultAllow; id <= ir.LastReservedRule; id++ {
		v := "deny"
		switch id {
		case ir.RuleDefaultAllow, ir.RuleEstablished, ir.RuleRelated, ir.RuleNonIP:
			v = "allow"
		case ir.RuleAuditDefaultDeny:
			v = "audit"
		}
		out = append(out, bundle.Rule{ID: uint32(id), Name: ir.ReservedName(id), Verdict: v})
	}
	for _, r := range prog.Rules {
		v := "allow"
		switch r.Action {
		case dsl.Deny:
			v = "deny"
		case dsl.Pass:
			v = "pass"
		}
		if r.Audit {
			v = "audit" // reported, never enforced
		}
		br := bundle.Rule{
			ID: uint32(r.ID), File: r.Pos.File, Line: r.Pos.Line, Col: r.Pos.Col,
			Policy: r.Policy, Text: r.Text, Verdict: v,
		}
		if r.Tier != dsl.TierNone {
			prio := r.Priority
			br.Tier, br.Priority, br.Rank = r.Tier.String(), &prio, r.Rank
		}
		out = append(out, br)
	}
	return out
}
