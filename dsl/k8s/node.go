package k8s

import (
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/polc-dev/polc/dsl"
)

// node is a v1 Node: its name, labels and addresses. Nodes are no
// endpoints (polc enforces on pods, and has no host endpoint); their
// addresses are peers, for Cilium's host and remote-node entities, the
// cluster entity and fromNodes / toNodes (docs/kubernetes.md, Nodes).
type node struct {
	name   string
	labels map[string]string
	addrs  []netip.Prefix // InternalIP and ExternalIP, each a host prefix
	texts  []dsl.Text     // the same, as written, with their positions
}

// addNode records a Node object: read leniently like a Pod, except that
// an InternalIP or ExternalIP that is no address is an error at it.
func (c *cluster) addNode(o *object, ds *dsl.Diagnostics) {
	var n corev1.Node
	if err := decode(o.node, &n); err != nil {
		ds.Errorf(o.pos(o.node), "Node: %v", err)
		return
	}
	if n.Name == "" {
		ds.Errorf(o.pos(o.node), "Node has no metadata.name")
		return
	}
	if c.nodeByName == nil {
		c.nodeByName = map[string]*node{}
	}
	if _, dup := c.nodeByName[n.Name]; dup {
		ds.Errorf(o.at("metadata", "name"), "Node %q appears twice", n.Name)
		return
	}
	nd := &node{name: n.Name, labels: maps.Clone(n.Labels)}
	if nd.labels == nil {
		nd.labels = map[string]string{}
	}
	for i, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue // Hostname, InternalDNS, ExternalDNS: names, not addresses
		}
		pos := o.at("status", "addresses", i, "address")
		ip, err := netip.ParseAddr(a.Address)
		if err != nil || ip.Zone() != "" {
			ds.Errorf(pos, "Node %s: %s %q is not an IP address", n.Name, a.Type, a.Address)
			continue
		}
		pfx := netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
		if slices.Contains(nd.addrs, pfx) {
			continue // the same address as InternalIP and ExternalIP
		}
		if other := c.nodeOwning(pfx); other != nil {
			ds.Errorf(pos, "Node %s: address %s is also node %s's", n.Name, ip.Unmap(), other.name)
			continue
		}
		nd.addrs = append(nd.addrs, pfx)
		nd.texts = append(nd.texts, dsl.Text{Pos: pos, Text: pfx.Addr().String()})
	}
	c.nodes = append(c.nodes, nd)
	c.nodeByName[n.Name] = nd
}

func (c *cluster) nodeOwning(a netip.Prefix) *node {
	for _, n := range c.nodes {
		if slices.Contains(n.addrs, a) {
			return n
		}
	}
	return nil
}

// checkNodeAddrs reports a pod endpoint whose address is also a node's
// (hostNetwork pods, which share it, have no endpoint): the address cannot
// be both a pod's and a node's.
func (c *cluster) checkNodeAddrs(ds *dsl.Diagnostics) {
	if len(c.nodes) == 0 {
		return
	}
	for _, p := range c.pods {
		for i, a := range p.addrs {
			if n := c.nodeOwning(a); n != nil {
				pos := p.endpoint.Pos
				if i < len(p.endpoint.Addrs) {
					pos = p.endpoint.Addrs[i].Pos
				}
				ds.Errorf(pos, "%s %s/%s: address %s is also node %s's (a pod on the node's own address needs hostNetwork: true)",
					p.kind, p.namespace, p.shortName(), a.Addr(), n.name)
			}
		}
	}
}

// nodeAddrs is every node's addresses.
func (c *cluster) nodeAddrs() []netip.Prefix {
	var out []netip.Prefix
	for _, n := range c.nodes {
		out = append(out, n.addrs...)
	}
	return out
}

// nodePeers returns one CIDR peer per address of nodes (a host prefix,
// written as the bare address), at pos.
func nodePeers(pos dsl.Pos, nodes []*node) []dsl.Peer {
	var peers []dsl.Peer
	for _, n := range nodes {
		for _, a := range n.addrs {
			t := dsl.Text{Pos: pos, Text: a.Addr().String()}
			peers = append(peers, dsl.Peer{Pos: pos, Kind: dsl.PeerCIDR, CIDR: dsl.CIDR{Pos: pos, Prefix: t}})
		}
	}
	return peers
}

// hostOf returns the nodes that are "host" and "remote-node" for a pod:
// the node it runs on (spec.nodeName), and every other node. A pod whose
// node is unknown (no spec.nodeName, as in manifests, or a node without a
// Node object) has no host, and every node is remote to it.
func (c *cluster) hostOf(p *pod) (host *node, remote []*node) {
	host = c.nodeByName[p.nodeName]
	for _, n := range c.nodes {
		if n != host {
			remote = append(remote, n)
		}
	}
	return host, remote
}

// nodeSide is a peer whose addresses depend on the subject: Cilium's host
// (the subject's own node) or remote-node (every other node).
type nodeSide struct {
	pos    dsl.Pos
	remote bool
}

// nodeGroups groups the subjects by the node addresses that sides stand
// for on them. Subjects for which the sides cover no address are left
// out: they get nothing from the rule.
func (c *cluster) nodeGroups(subjects []*pod, sides []nodeSide) (groups [][]*pod, peers [][]dsl.Peer) {
	byKey := map[string]int{}
	for _, p := range subjects {
		host, remote := c.hostOf(p)
		var ps []dsl.Peer
		seen := map[string]bool{}
		for _, s := range sides {
			nodes := remote
			if !s.remote {
				nodes = nil
				if host != nil {
					nodes = []*node{host}
				}
			}
			for _, q := range nodePeers(s.pos, nodes) {
				if !seen[q.CIDR.Prefix.Text] {
					seen[q.CIDR.Prefix.Text] = true
					ps = append(ps, q)
				}
			}
		}
		if len(ps) == 0 {
			continue
		}
		key := strings.Join(slices.Sorted(maps.Keys(seen)), " ")
		i, ok := byKey[key]
		if !ok {
			i = len(groups)
			byKey[key] = i
			groups = append(groups, nil)
			peers = append(peers, ps)
		}
		groups[i] = append(groups[i], p)
	}
	return groups, peers
}

// addSides adds a rule whose peers include host or remote-node. The rule's
// other peers are added once, for every subject. The node addresses the
// sides stand for are added per group of subjects on which they are the
// same: in the main policy when one group holds every subject (every
// subject on one node), else in a policy split off for each group and
// namespace (ORIGINAL_nodeN, its subjects named by LabelPodName).
func (b *policyBuilder) addSides(spec ruleSpec) {
	sides := spec.sides
	spec.sides = nil
	if len(spec.peers) > 0 {
		b.add(spec) // warns about named ports no pod declares
	} else {
		for _, np := range spec.named {
			if spec.dir == dsl.Egress || !slices.ContainsFunc(b.subjects(), func(p *pod) bool {
				_, _, ok := p.namedPort(np.name, np.proto)
				return ok
			}) {
				b.warnUndeclared(np, spec.dir)
			}
		}
	}
	if spec.dir == dsl.Egress && len(spec.named) > 0 {
		// Nodes have no named ports: only the numbered ones reach them.
		if len(spec.ports) == 0 {
			return
		}
		spec.named = nil
	}
	subjects := b.subjects()
	groups, peers := b.r.cl.nodeGroups(subjects, sides)
	for i, g := range groups {
		s := spec
		s.peers = peers[i]
		s.quiet = true
		if len(groups) == 1 && len(g) == len(subjects) {
			b.add(s)
			continue
		}
		for _, nsg := range byNamespace(g) {
			s.only = nsg
			b.add(s)
		}
	}
}

// byNamespace splits pods by namespace, in the order namespaces first
// appear.
func byNamespace(pods []*pod) [][]*pod {
	var out [][]*pod
	at := map[string]int{}
	for _, p := range pods {
		i, ok := at[p.namespace]
		if !ok {
			i = len(out)
			at[p.namespace] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], p)
	}
	return out
}
