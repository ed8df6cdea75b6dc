package lower

import (
	"net/netip"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/dsl"
)

// ipcacheEntry is one address or prefix with what it resolves to.
type ipcacheEntry struct {
	prefix netip.Prefix
	value  bpf.IPCacheValue
}

// ipcacheEntries lists the region nodes whose class or owning endpoint
// differs from what the longest match would otherwise find (the containing
// node's, or world and no endpoint at the top). The host hash is probed
// before the LPM trie, so a host entry always wins over the prefixes
// around it, as the longest match must; an except is emitted with the
// class of the next-outer region, which lacks the excepted atom.
func ipcacheEntries(s *addrSpace) []ipcacheEntry {
	var out []ipcacheEntry
	for _, n := range s.nodes {
		inherited := bpf.IPCacheValue{Identity: s.world.id}
		if n.parent != nil {
			inherited = s.nodeValue(n.parent)
		}
		v := s.nodeValue(n)
		if v == inherited {
			continue
		}
		out = append(out, ipcacheEntry{n.prefix, v})
	}
	return out
}

// nodeValue is what a region's addresses resolve to: its class's
// identity, and the flags and index of the endpoint that owns them (its
// own or the nearest endpoint prefix around it: a rule CIDR inside an
// endpoint's prefix is still that endpoint's). The index is the
// endpoint's position among the local endpoints of Program.Endpoints,
// from 1 (endpoints.json, interface bindings). A remote endpoint's
// addresses carry IPCacheRemoteEndpoint alone: not world, never a
// subject, no index.
func (s *addrSpace) nodeValue(n *regionNode) bpf.IPCacheValue {
	v := bpf.IPCacheValue{Identity: n.class.id}
	switch ep := n.endpoint(); {
	case ep < 0:
		v.Flags = classFlags(n.class)
	case s.epIndex[ep] == 0:
		v.Flags = bpf.IPCacheRemoteEndpoint
	default:
		v.Flags, v.Endpoint = classFlags(n.class), s.epIndex[ep]
	}
	return v
}

// classFlags describes an identity's addresses as subjects: local, and for
// each direction isolated (by an untiered policy), with range entries, and
// the probe hints.
func classFlags(c *class) uint32 {
	if c.owner == nil {
		return 0
	}
	f := bpf.IPCacheLocal
	// A group of tiered policies alone has entries but isolates nothing.
	if g := c.owner.group[dsl.Ingress]; g != nil {
		f |= g.hints << bpf.IPCacheIngressHintShift
		if g.isolated {
			f |= bpf.IPCacheIngressIsolated
		}
		if g.tieredDeny {
			f |= bpf.IPCacheIngressTieredDeny
		}
		if len(g.ranges) > 0 {
			f |= bpf.IPCacheIngressRanges
		}
	}
	if g := c.owner.group[dsl.Egress]; g != nil {
		f |= g.hints << bpf.IPCacheEgressHintShift
		if g.isolated {
			f |= bpf.IPCacheEgressIsolated
		}
		if g.tieredDeny {
			f |= bpf.IPCacheEgressTieredDeny
		}
		if len(g.ranges) > 0 {
			f |= bpf.IPCacheEgressRanges
		}
	}
	if c.owner.audit[dsl.Ingress] != nil {
		f |= bpf.IPCacheIngressAudit
	}
	if c.owner.audit[dsl.Egress] != nil {
		f |= bpf.IPCacheEgressAudit
	}
	return f
}

// ipcacheRecords splits the entries into the four ipcache maps' records.
func ipcacheRecords(entries []ipcacheEntry) map[string][]byte {
	out := map[string][]byte{}
	for _, e := range entries {
		// One address goes into the host hash, a wider prefix into the trie.
		host, v4 := e.prefix.IsSingleIP(), e.prefix.Addr().Is4()
		switch {
		case host && v4:
			out[bundle.MapIPCache4] = bundle.AppendIPCacheHost(out[bundle.MapIPCache4], e.prefix.Addr(), e.value)
		case host:
			out[bundle.MapIPCache6] = bundle.AppendIPCacheHost(out[bundle.MapIPCache6], e.prefix.Addr(), e.value)
		case v4:
			out[bundle.MapIPCache4LPM] = bundle.AppendIPCacheLPM(out[bundle.MapIPCache4LPM], e.prefix, e.value)
		default:
			out[bundle.MapIPCache6LPM] = bundle.AppendIPCacheLPM(out[bundle.MapIPCache6LPM], e.prefix, e.value)
		}
	}
	return out
}
