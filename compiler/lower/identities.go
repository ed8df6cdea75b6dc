package lower

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/ir"
)

// An atom is one CIDR peer as rules write it: addresses inside cidr and
// outside every except. Rules naming the same CIDR with the same excepts
// share an atom.
type atom struct {
	cidr   netip.Prefix
	except []netip.Prefix
	text   string // "10.0.0.0/8 except 10.1.0.0/16"
	// classes whose addresses all lie inside the atom, filled by
	// assignIdentities.
	classes []*class
}

// A labelSet is a distinct endpoint label set; it decides an endpoint's
// role as a subject (policies select by labels) and as a selector peer.
type labelSet struct {
	labels    ir.Labels
	text      string // "app=web,tier=frontend"
	endpoints []int  // indices into Program.Endpoints
	classes   []*class
	group     [2]*subjectGroup // per direction; nil when not isolated
	// audit is, per direction, the group of every policy (audit ones
	// too), for label sets an audit policy selects in that direction.
	audit [2]*subjectGroup
}

// subjectClasses are the label set's classes that hold a local endpoint's
// addresses: the identities its policy entries are stamped onto.
func (ls *labelSet) subjectClasses() []*class {
	out := make([]*class, 0, len(ls.classes))
	for _, c := range ls.classes {
		if c.local {
			out = append(out, c)
		}
	}
	return out
}

// groups are the label set's enforcing and audit groups (nil ones too).
func (ls *labelSet) groups() [4]*subjectGroup {
	return [4]*subjectGroup{ls.group[0], ls.group[1], ls.audit[0], ls.audit[1]}
}

// A class is a set of addresses that every rule treats alike: the same
// owner label set (or none) and the same atoms containing them. Each class
// is one identity.
type class struct {
	owner *labelSet // nil: no local endpoint owns these addresses
	atoms []int32   // indices into addrSpace.atoms, ascending
	text  string    // stable description, hashed into the identity
	id    uint32
	// endpoints (local) and remote (remote endpoints) whose addresses fall
	// into the class, sorted, unique.
	endpoints, remote []string
	// local: some local endpoint's addresses fall into the class, so it
	// can be a subject. A class of remote endpoints only is a peer and
	// gets no policy entries of its own.
	local bool
}

// A region node is one prefix that matters: an endpoint address, a rule
// CIDR or an except. Its region is the prefix minus the more specific
// nodes inside it; every address of a region has the node's class.
type regionNode struct {
	prefix netip.Prefix
	owner  int     // endpoint index whose address this is, -1 if none
	add    []int32 // atoms whose CIDR is this prefix
	remove []int32 // atoms with an except equal to this prefix
	class  *class
	parent *regionNode // the nearest containing node, nil at the top
}

// addrSpace is the result of splitting the address space.
type addrSpace struct {
	atoms     []*atom
	atomIndex map[string]int32
	labelSets []*labelSet
	epLabels  []*labelSet // per endpoint
	// epIndex is, per endpoint, its EndpointIndex among the local ones
	// (from 1), 0 for a remote endpoint.
	epIndex []uint32
	nodes   []*regionNode
	classes []*class // sorted by text
	world   *class
}

func labelsText(ls ir.Labels) string {
	var b strings.Builder
	for i, l := range ls {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.Key)
		b.WriteByte('=')
		b.WriteString(l.Value)
	}
	return b.String()
}

func atomText(cidr netip.Prefix, except []netip.Prefix) string {
	s := cidr.String()
	for i, e := range except {
		if i == 0 {
			s += " except "
		} else {
			s += ", "
		}
		s += e.String()
	}
	return s
}

// splitAddressSpace finds the atoms and label sets of prog and the class of
// every region.
func splitAddressSpace(prog *ir.Program) (*addrSpace, error) {
	s := &addrSpace{atomIndex: map[string]int32{}}

	byLabels := map[string]*labelSet{}
	local := uint32(0)
	for i, e := range prog.Endpoints {
		t := labelsText(e.Labels)
		ls := byLabels[t]
		if ls == nil {
			ls = &labelSet{labels: e.Labels, text: t}
			byLabels[t] = ls
			s.labelSets = append(s.labelSets, ls)
		}
		ls.endpoints = append(ls.endpoints, i)
		s.epLabels = append(s.epLabels, ls)
		idx := uint32(0)
		if !e.Remote {
			local++
			idx = local
		}
		s.epIndex = append(s.epIndex, idx)
	}
	slices.SortFunc(s.labelSets, func(a, b *labelSet) int { return strings.Compare(a.text, b.text) })

	// Atoms, sorted by prefix so that identities list them naturally.
	seen := map[string]*atom{}
	for _, r := range prog.Rules {
		for _, p := range r.Peers {
			if p.Kind != ir.PeerCIDR {
				continue
			}
			t := atomText(p.CIDR, p.Except)
			if seen[t] == nil {
				a := &atom{cidr: p.CIDR, except: p.Except, text: t}
				seen[t] = a
				s.atoms = append(s.atoms, a)
			}
		}
	}
	slices.SortFunc(s.atoms, func(a, b *atom) int {
		if c := comparePrefix(a.cidr, b.cidr); c != 0 {
			return c
		}
		return strings.Compare(a.text, b.text)
	})
	for i, a := range s.atoms {
		s.atomIndex[a.text] = int32(i)
	}

	// Region nodes.
	byPrefix := map[netip.Prefix]*regionNode{}
	node := func(p netip.Prefix) *regionNode {
		n := byPrefix[p]
		if n == nil {
			n = &regionNode{prefix: p, owner: -1}
			byPrefix[p] = n
			s.nodes = append(s.nodes, n)
		}
		return n
	}
	for i, e := range prog.Endpoints {
		for _, a := range e.Addrs {
			n := node(a.Masked())
			if n.owner >= 0 && n.owner != i {
				return nil, fmt.Errorf("address %s belongs to two endpoints, %s and %s", a, prog.Endpoints[n.owner].Name, e.Name)
			}
			n.owner = i
		}
	}
	for i, a := range s.atoms {
		if !exceptCovers(a.except, a.cidr) {
			n := node(a.cidr)
			n.add = append(n.add, int32(i))
		}
		for _, e := range a.except {
			if e.Bits() > a.cidr.Bits() && a.cidr.Contains(e.Addr()) {
				n := node(e)
				n.remove = append(n.remove, int32(i))
			}
		}
	}
	slices.SortFunc(s.nodes, func(a, b *regionNode) int { return comparePrefix(a.prefix, b.prefix) })

	// Walk the nodes in order with a stack of the containing ones.
	classes := map[string]*class{}
	intern := func(owner *labelSet, atoms []int32) *class {
		var kb strings.Builder
		if owner != nil {
			kb.WriteByte('E')
			kb.WriteString(owner.text)
		}
		kb.WriteByte(0)
		for _, a := range atoms {
			kb.WriteString(strconv.Itoa(int(a)))
			kb.WriteByte(',')
		}
		k := kb.String()
		c := classes[k]
		if c == nil {
			c = &class{owner: owner, atoms: atoms}
			classes[k] = c
		}
		return c
	}
	s.world = intern(nil, nil)
	var stack []*regionNode
	for _, n := range s.nodes {
		for len(stack) > 0 && !contains(stack[len(stack)-1].prefix, n.prefix) {
			stack = stack[:len(stack)-1]
		}
		var owner *labelSet
		var atoms []int32
		if len(stack) > 0 {
			n.parent = stack[len(stack)-1]
			owner, atoms = n.parent.class.owner, n.parent.class.atoms
		}
		if n.owner >= 0 {
			owner = s.epLabels[n.owner]
		}
		if len(n.add) > 0 || len(n.remove) > 0 {
			next := make([]int32, 0, len(atoms)+len(n.add))
			for _, a := range atoms {
				if !slices.Contains(n.remove, a) {
					next = append(next, a)
				}
			}
			next = append(next, n.add...)
			slices.Sort(next)
			atoms = slices.Compact(next)
		}
		n.class = intern(owner, atoms)
		// A rule prefix inside an endpoint's prefix is still that endpoint's.
		if ep := n.endpoint(); ep >= 0 {
			e := prog.Endpoints[ep]
			if e.Remote {
				n.class.remote = append(n.class.remote, e.Name)
			} else {
				n.class.endpoints = append(n.class.endpoints, e.Name)
				n.class.local = true
			}
		}
		stack = append(stack, n)
	}

	for _, c := range classes {
		c.text = s.classText(c)
		slices.Sort(c.endpoints)
		c.endpoints = slices.Compact(c.endpoints)
		slices.Sort(c.remote)
		c.remote = slices.Compact(c.remote)
		s.classes = append(s.classes, c)
	}
	slices.SortFunc(s.classes, func(a, b *class) int { return strings.Compare(a.text, b.text) })
	s.assignIdentities()
	return s, nil
}

// endpoint is the index of the endpoint that owns the node's addresses:
// its own, else that of the nearest endpoint prefix around it; -1 if none.
func (n *regionNode) endpoint() int {
	for p := n; p != nil; p = p.parent {
		if p.owner >= 0 {
			return p.owner
		}
	}
	return -1
}

// exceptCovers reports whether one of except contains all of p.
func exceptCovers(except []netip.Prefix, p netip.Prefix) bool {
	for _, e := range except {
		if contains(e, p) {
			return true
		}
	}
	return false
}

// contains reports whether prefix a contains prefix b.
func contains(a, b netip.Prefix) bool {
	return a.Addr().BitLen() == b.Addr().BitLen() && a.Bits() <= b.Bits() && a.Contains(b.Addr())
}

// comparePrefix orders IPv4 before IPv6, then by address, then shorter
// prefixes first, so that a prefix comes before every prefix inside it.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func (s *addrSpace) classText(c *class) string {
	var parts []string
	if c.owner != nil {
		parts = append(parts, "endpoint "+c.owner.text)
	}
	for _, a := range c.atoms {
		parts = append(parts, "cidr "+s.atoms[a].text)
	}
	if len(parts) == 0 {
		return "world"
	}
	return strings.Join(parts, "; ")
}

// identitySpace is the number of identities the compiler can assign, from
// bpf.FirstIdentity on.
const identitySpace = 1 << 24

// assignIdentities numbers every class. An identity is a hash of the
// class's description, so it depends on nothing else in the policy:
// adding, removing or reordering unrelated declarations leaves it alone.
// Collisions (rare: 24 bits) move the later class, in text order, to the
// next free number.
func (s *addrSpace) assignIdentities() {
	used := map[uint32]bool{}
	for _, c := range s.classes {
		if c == s.world {
			c.id = bpf.IdentityWorld
			continue
		}
		h := sha256.Sum256([]byte(c.text))
		off := binary.BigEndian.Uint32(h[:4]) % identitySpace
		for used[off] {
			off = (off + 1) % identitySpace
		}
		used[off] = true
		c.id = bpf.FirstIdentity + off
		if c.owner != nil {
			c.owner.classes = append(c.owner.classes, c)
		}
		for _, a := range c.atoms {
			s.atoms[a].classes = append(s.atoms[a].classes, c)
		}
	}
}
