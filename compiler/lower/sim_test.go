package lower

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// datapath simulates the lookups of bpf/policy.h over a bundle's maps,
// exactly as bpf/types.go describes them, probe hints included (so that a
// missing hint shows up as a wrong verdict).
type datapath struct {
	t         testing.TB
	hosts     map[netip.Addr]bpf.IPCacheValue
	lpm       map[netip.Prefix]bpf.IPCacheValue
	policy    map[bpf.PolicyKey]bpf.PolicyValue
	ranges    map[bpf.PolicyRangeKey]bpf.PolicyValue
	constants map[string]uint64
}

func newDatapath(t testing.TB, b *bundle.Bundle) *datapath {
	d := &datapath{t: t, hosts: map[netip.Addr]bpf.IPCacheValue{}, lpm: map[netip.Prefix]bpf.IPCacheValue{},
		policy: map[bpf.PolicyKey]bpf.PolicyValue{}, ranges: map[bpf.PolicyRangeKey]bpf.PolicyValue{}, constants: map[string]uint64{}}
	for _, c := range b.Manifest.Constants {
		d.constants[c.Name] = c.Value
	}
	for i := range b.Maps {
		m := &b.Maps[i]
		if m.Len() > int(m.MaxEntries) {
			t.Fatalf("map %s: %d entries > max %d", m.Name, m.Len(), m.MaxEntries)
		}
		for j := 0; j < m.Len(); j++ {
			k, v := m.Record(j)
			switch m.Name {
			case bundle.MapIPCache4, bundle.MapIPCache6:
				d.hosts[bundle.DecodeHostKey(k)] = bundle.DecodeIPCacheValue(v)
			case bundle.MapIPCache4LPM, bundle.MapIPCache6LPM:
				d.lpm[bundle.DecodeLPMKey(k)] = bundle.DecodeIPCacheValue(v)
			case bundle.MapPolicy:
				d.policy[bundle.DecodePolicyKey(k)] = bundle.DecodePolicyValue(v)
			case bundle.MapPolicyRanges:
				d.ranges[bundle.DecodePolicyRangeKey(k)] = bundle.DecodePolicyValue(v)
			}
		}
	}
	return d
}

// ipcache: the host hash, then (if the family has prefixes) the longest
// LPM match, else world.
func (d *datapath) ipcache(a netip.Addr) bpf.IPCacheValue {
	if v, ok := d.hosts[a]; ok {
		return v
	}
	c := "cfg_has_prefixes4"
	if a.Is6() {
		c = "cfg_has_prefixes6"
	}
	if d.constants[c] != 0 {
		for bits := a.BitLen(); bits >= 0; bits-- {
			p, _ := a.Prefix(bits)
			if v, ok := d.lpm[p]; ok {
				return v
			}
		}
	}
	return bpf.IPCacheValue{Identity: bpf.IdentityWorld}
}

type decision struct {
	verdict uint8
	rule    ir.RuleID
}

func policyPort(p ir.Packet) uint16 {
	switch {
	case p.Proto.HasPorts():
		return p.DPort
	case p.Proto.IsICMP():
		return uint16(p.ICMPType)<<8 | uint16(p.ICMPCode)
	}
	return 0
}

// decide is polc_policy_ask: per slot the hit of lowest order over every
// probe; then the admin slot unless empty or pass, the main slot unless
// empty or pass, the subject's default.
func (d *datapath) decide(subject, remote bpf.IPCacheValue, dir dsl.Direction, p ir.Packet) decision {
	type best struct {
		verdict uint8
		rule    uint32
		order   uint32
	}
	var admin, main best
	take := func(b *best, verdict uint8, rule, order uint32) {
		switch verdict {
		case 0:
			return
		case bpf.VerdictAllow, bpf.VerdictDeny, bpf.VerdictPass:
		default:
			d.t.Fatalf("bad verdict %d", verdict)
		}
		if b.verdict == 0 || order < b.order {
			*b = best{verdict, rule, order}
		}
	}
	hit := func(v bpf.PolicyValue, ok bool) {
		if !ok {
			return
		}
		if v.Verdict == 0 && v.AdminVerdict == 0 {
			d.t.Fatalf("policy value with both slots empty")
		}
		take(&admin, v.AdminVerdict, v.AdminRule, v.AdminOrder)
		take(&main, v.Verdict, v.Rule, v.Order)
	}
	egress := uint8(0)
	isolated, rflag := bpf.IPCacheIngressIsolated, bpf.IPCacheIngressRanges
	if dir == dsl.Egress {
		egress, isolated, rflag = bpf.PolicyEgress, bpf.IPCacheEgressIsolated, bpf.IPCacheEgressRanges
	}
	ranges := d.constants["cfg_has_ranges"] != 0 && subject.Flags&rflag != 0
	hints := uint32(0xf)
	if d.constants["cfg_policy_hints"] != 0 {
		shift := uint32(bpf.IPCacheIngressHintShift)
		if dir == dsl.Egress {
			shift = bpf.IPCacheEgressHintShift
		}
		hints = subject.Flags >> shift & 0xf
	}
	port := policyPort(p)
	probe := func(r uint32) {
		k := bpf.PolicyKey{Subject: subject.Identity, Remote: r, Port: port, Proto: uint8(p.Proto), Flags: egress}
		v, ok := d.policy[k]
		hit(v, ok)
		k.Port, k.Flags = 0, egress|bpf.PolicyAnyPort
		if hints&bpf.HintAnyPort != 0 {
			v, ok = d.policy[k]
			hit(v, ok)
		}
		if k.Proto != 0 && hints&bpf.HintAnyProto != 0 {
			k.Proto = 0
			v, ok = d.policy[k]
			hit(v, ok)
		}
		if ranges {
			for bits := 16; bits >= 0; bits-- {
				mask := uint16(0xffff << (16 - bits))
				if bits == 0 {
					mask = 0
				}
				rk := bpf.PolicyRangeKey{Prefixlen: uint32(bpf.PolicyRangeKeyFixedBits + bits), Proto: uint8(p.Proto), Flags: egress}
				rk.Subject = be4(subject.Identity)
				rk.Remote = be4(r)
				pp := port & mask
				rk.Port = [2]byte{byte(pp >> 8), byte(pp)}
				if v, ok := d.ranges[rk]; ok {
					hit(v, ok)
					break
				}
			}
		}
	}
	probe(remote.Identity)
	if hints&bpf.HintAnyRemote != 0 {
		probe(bpf.IdentityAny)
	}
	if hints&bpf.HintWorld != 0 && remote.Flags&(bpf.IPCacheLocal|bpf.IPCacheRemoteEndpoint) == 0 && remote.Identity != bpf.IdentityWorld {
		probe(bpf.IdentityWorld)
	}
	switch {
	case admin.verdict == bpf.VerdictAllow || admin.verdict == bpf.VerdictDeny:
		return decision{admin.verdict, ir.RuleID(admin.rule)}
	case main.verdict == bpf.VerdictAllow || main.verdict == bpf.VerdictDeny:
		return decision{main.verdict, ir.RuleID(main.rule)}
	case subject.Flags&isolated != 0:
		return decision{bpf.VerdictDeny, ir.RuleDefaultDeny}
	}
	return decision{bpf.VerdictAllow, ir.RuleDefaultAllow}
}

func be4(x uint32) [4]byte { return [4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)} }

// observe returns the decisions at the sender's egress and the receiver's
// ingress; ok is false where the address is no local endpoint.
func (d *datapath) observe(p ir.Packet) (eg, in decision, egOK, inOK bool) {
	fam := "cfg_has_ipv4"
	if p.Src.Is6() {
		fam = "cfg_has_ipv6"
	}
	if d.constants[fam] == 0 {
		return
	}
	src, dst := d.ipcache(p.Src), d.ipcache(p.Dst)
	if src.Flags&bpf.IPCacheLocal != 0 {
		eg, egOK = d.decide(src, dst, dsl.Egress, p), true
	}
	if dst.Flags&bpf.IPCacheLocal != 0 {
		in, inOK = d.decide(dst, src, dsl.Ingress, p), true
	}
	return
}

// refEval evaluates the meaning directly from the IR (DESIGN.md §1), the
// way compiler/eval does, independently of the lowering.
type refEval struct{ prog *ir.Program }

func (r refEval) owner(a netip.Addr) *ir.Endpoint {
	var best *ir.Endpoint
	bestBits := -1
	for _, e := range r.prog.Endpoints {
		for _, p := range e.Addrs {
			if p.Contains(a) && p.Bits() > bestBits {
				best, bestBits = e, p.Bits()
			}
		}
	}
	return best
}

func (r refEval) peerMatches(p ir.Peer, a netip.Addr) bool {
	switch p.Kind {
	case ir.PeerAny:
		return true
	case ir.PeerWorld:
		return r.owner(a) == nil
	case ir.PeerSelector:
		o := r.owner(a)
		return o != nil && p.Selector.Matches(o.Labels)
	case ir.PeerCIDR:
		if !p.CIDR.Contains(a) {
			return false
		}
		for _, e := range p.Except {
			if e.Contains(a) {
				return false
			}
		}
		return true
	}
	return false
}

func portMatches(m ir.PortMatch, p ir.Packet) bool {
	if m.Proto == ir.ProtoAny {
		return true
	}
	if m.Proto != p.Proto {
		return false
	}
	switch {
	case m.Proto.HasPorts():
		return m.Lo <= p.DPort && p.DPort <= m.Hi
	case m.Proto.IsICMP():
		return (m.ICMPType < 0 || m.ICMPType == int(p.ICMPType)) && (m.ICMPCode < 0 || m.ICMPCode == int(p.ICMPCode))
	}
	return true
}

// matches reports whether rule applies to the packet from/to remote.
func (r refEval) matches(rule *ir.Rule, remote netip.Addr, p ir.Packet) bool {
	peer, port := false, false
	for _, pe := range rule.Peers {
		peer = peer || r.peerMatches(pe, remote)
	}
	for _, pm := range rule.Ports {
		port = port || portMatches(pm, p)
	}
	return peer && port
}

// decide follows the tiers as the brief of issue 15 states them: the admin
// tier's first matching rule by (priority, policy name, rule id), pass
// going on; the namespace level (deny beats allow) where an untiered
// policy isolates; else the baseline tier likewise; else default allow.
// It orders tiered rules itself, never reading Rule.Rank.
func (r refEval) decide(subject *ir.Endpoint, dir dsl.Direction, remote netip.Addr, p ir.Packet) decision {
	isolated := false
	var deny, allow ir.RuleID
	var tiered [3][]*ir.Rule
	for _, pol := range r.prog.Policies {
		selected := false
		for _, s := range pol.Subjects {
			selected = selected || s == subject.Name
		}
		if !selected || pol.Audit {
			continue
		}
		isolated = isolated || (pol.Isolates[dir] && pol.Tier == dsl.TierNone)
		for _, id := range pol.Rules {
			rule := r.prog.Rules[id-ir.FirstRuleID]
			if rule.Dir != dir || !r.matches(rule, remote, p) {
				continue
			}
			switch {
			case pol.Tier != dsl.TierNone:
				tiered[pol.Tier] = append(tiered[pol.Tier], rule)
			case rule.Action == dsl.Deny:
				if deny == 0 || rule.ID < deny {
					deny = rule.ID
				}
			case allow == 0 || rule.ID < allow:
				allow = rule.ID
			}
		}
	}
	first := func(rules []*ir.Rule) (decision, bool) {
		policy := map[string]*ir.Policy{}
		for _, pol := range r.prog.Policies {
			policy[pol.Name] = pol
		}
		slices.SortFunc(rules, func(a, b *ir.Rule) int {
			pa, pb := policy[a.Policy], policy[b.Policy]
			return cmp.Or(cmp.Compare(pa.Priority, pb.Priority), strings.Compare(pa.Name, pb.Name), cmp.Compare(a.ID, b.ID))
		})
		if len(rules) == 0 || rules[0].Action == dsl.Pass {
			return decision{}, false
		}
		if rules[0].Action == dsl.Deny {
			return decision{bpf.VerdictDeny, rules[0].ID}, true
		}
		return decision{bpf.VerdictAllow, rules[0].ID}, true
	}
	if d, ok := first(tiered[dsl.TierAdmin]); ok {
		return d
	}
	switch {
	case !isolated:
		if d, ok := first(tiered[dsl.TierBaseline]); ok {
			return d
		}
		return decision{bpf.VerdictAllow, ir.RuleDefaultAllow}
	case deny != 0:
		return decision{bpf.VerdictDeny, deny}
	case allow != 0:
		return decision{bpf.VerdictAllow, allow}
	}
	return decision{bpf.VerdictDeny, ir.RuleDefaultDeny}
}

// observe decides at the hooks of local endpoints only: a remote
// endpoint has none on this node.
func (r refEval) observe(p ir.Packet) (eg, in decision, egOK, inOK bool) {
	if s := r.owner(p.Src); s != nil && !s.Remote {
		eg, egOK = r.decide(s, dsl.Egress, p.Dst, p), true
	}
	if d := r.owner(p.Dst); d != nil && !d.Remote {
		in, inOK = r.decide(d, dsl.Ingress, p.Src, p), true
	}
	return
}
