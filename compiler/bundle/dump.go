package bundle

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/polc-dev/polc/bpf"
)

// Decoded is a bundle with every map record decoded: what `polc inspect -o
// json` prints.
type Decoded struct {
	// Digest is the bundle's root digest (RootDigest), "sha256:HEX".
	Digest       string         `json:"digest"`
	Manifest     Manifest       `json:"manifest"`
	Identities   []Identity     `json:"identities"`
	Endpoints    []Endpoint     `json:"endpoints"`
	IPCache      []IPCacheRow   `json:"ipcache"`
	Policy       []PolicyRow    `json:"policy"`
	PolicyRanges []PolicyRow    `json:"policy_ranges"`
	Prefilter    []PrefilterRow `json:"prefilter"`
	Rules        []Rule         `json:"rules"`
}

// IPCacheRow is one ipcache entry.
type IPCacheRow struct {
	Map      string   `json:"map"`
	Prefix   string   `json:"prefix"`
	Identity uint32   `json:"identity"`
	Flags    []string `json:"flags,omitempty"`
	Endpoint uint32   `json:"endpoint,omitempty"` // index in endpoints.json; 0: none
}

// PolicyRow is one policy or policy_ranges entry.
type PolicyRow struct {
	Subject uint32 `json:"subject"`
	Dir     string `json:"dir"`
	Remote  uint32 `json:"remote"` // 0: any
	Proto   uint8  `json:"proto"`  // 0: any
	// Lo..Hi is the port interval (ICMP: type<<8|code); the whole
	// 0..65535 for "any port".
	Lo      uint16 `json:"lo"`
	Hi      uint16 `json:"hi"`
	AnyPort bool   `json:"any_port,omitempty"`
	// Verdict and Rule are the main slot: "allow", "deny", "pass" or
	// "none" (an entry of admin rules only).
	Verdict string `json:"verdict"`
	Rule    uint32 `json:"rule"`
	// Tier is "baseline" when the main slot holds a baseline rule, of
	// rank Rank; "" for the namespace level (untiered rules).
	Tier string `json:"tier,omitempty"`
	Rank uint32 `json:"rank,omitempty"`
	// Admin is the admin slot, nil when empty.
	Admin *AdminSlot `json:"admin,omitempty"`
}

// AdminSlot is the admin tier's part of a policy entry: the matching admin
// rule of lowest rank.
type AdminSlot struct {
	Verdict string `json:"verdict"` // allow, deny or pass
	Rule    uint32 `json:"rule"`
	Rank    uint32 `json:"rank"`
}

// PrefilterRow is one prefilter prefix.
type PrefilterRow struct {
	Prefix string `json:"prefix"`
	Value  uint32 `json:"value"`
}

// Decode decodes every map of the bundle, with rows in a readable order
// (numeric, not the records' byte order).
func (b *Bundle) Decode() *Decoded {
	d := &Decoded{Manifest: b.Manifest, Identities: b.Identities, Endpoints: b.Endpoints, Rules: b.Rules}
	if dg, err := b.RootDigest(); err == nil {
		d.Digest = dg
	}
	if d.Endpoints == nil {
		d.Endpoints = []Endpoint{}
	}
	d.IPCache, d.Policy, d.PolicyRanges, d.Prefilter = []IPCacheRow{}, []PolicyRow{}, []PolicyRow{}, []PrefilterRow{}
	for i := range b.Maps {
		m := &b.Maps[i]
		for j := 0; j < m.Len(); j++ {
			k, v := m.Record(j)
			switch m.Name {
			case MapIPCache4, MapIPCache6:
				a := DecodeHostKey(k)
				iv := DecodeIPCacheValue(v)
				d.IPCache = append(d.IPCache, IPCacheRow{m.Name, a.String(), iv.Identity, ipcacheFlags(iv.Flags), iv.Endpoint})
			case MapIPCache4LPM, MapIPCache6LPM:
				iv := DecodeIPCacheValue(v)
				d.IPCache = append(d.IPCache, IPCacheRow{m.Name, DecodeLPMKey(k).String(), iv.Identity, ipcacheFlags(iv.Flags), iv.Endpoint})
			case MapPolicy:
				pk := DecodePolicyKey(k)
				r := policyRow(pk.Subject, pk.Remote, pk.Proto, pk.Flags, DecodePolicyValue(v))
				r.Lo, r.Hi = pk.Port, pk.Port
				if pk.Flags&bpf.PolicyAnyPort != 0 {
					r.Lo, r.Hi, r.AnyPort = 0, 65535, true
				}
				d.Policy = append(d.Policy, r)
			case MapPolicyRanges:
				rk := DecodePolicyRangeKey(k)
				r := policyRow(binary.BigEndian.Uint32(rk.Subject[:]), binary.BigEndian.Uint32(rk.Remote[:]), rk.Proto, rk.Flags, DecodePolicyValue(v))
				bits := int(rk.Prefixlen) - bpf.PolicyRangeKeyFixedBits
				r.Lo = uint16(rk.Port[0])<<8 | uint16(rk.Port[1])
				r.Hi = r.Lo | uint16((uint32(1)<<(16-bits))-1)
				d.PolicyRanges = append(d.PolicyRanges, r)
			case MapPrefilter4, MapPrefilter6:
				d.Prefilter = append(d.Prefilter, PrefilterRow{DecodeLPMKey(k).String(), le.Uint32(v)})
			}
		}
	}
	sortPolicyRows(d.Policy)
	sortPolicyRows(d.PolicyRanges)
	return d
}

func policyRow(subject, remote uint32, proto, flags uint8, v bpf.PolicyValue) PolicyRow {
	r := PolicyRow{Subject: subject, Remote: remote, Proto: proto, Dir: "ingress", Rule: v.Rule, Verdict: verdictName(v.Verdict)}
	if flags&bpf.PolicyEgress != 0 {
		r.Dir = "egress"
	}
	switch {
	case v.Tier == bpf.TierBaseline:
		r.Tier, r.Rank = "baseline", v.Order
	case v.Tier != 0:
		r.Tier, r.Rank = fmt.Sprintf("tier-%d", v.Tier), v.Order
	case v.Verdict != 0 && v.Order != bpf.OrderUntiered(v.Verdict, v.Rule):
		// not what the compiler writes: show it rather than hide it
		r.Tier, r.Rank = "untiered-order", v.Order
	}
	if v.AdminVerdict != 0 {
		r.Admin = &AdminSlot{Verdict: verdictName(v.AdminVerdict), Rule: v.AdminRule, Rank: v.AdminOrder}
	}
	return r
}

func verdictName(v uint8) string {
	switch v {
	case 0:
		return "none"
	case bpf.VerdictAllow:
		return "allow"
	case bpf.VerdictDeny:
		return "deny"
	case bpf.VerdictPass:
		return "pass"
	}
	return fmt.Sprintf("verdict-%d", v)
}

// tierText is a policy row's tier column: the baseline rank of the main
// slot and the admin slot, "" for an untiered entry.
func tierText(r PolicyRow) string {
	var parts []string
	if r.Tier != "" {
		parts = append(parts, fmt.Sprintf("%s rank %d", r.Tier, r.Rank))
	}
	if a := r.Admin; a != nil {
		parts = append(parts, fmt.Sprintf("admin %s %d rank %d", a.Verdict, a.Rule, a.Rank))
	}
	return strings.Join(parts, "; ")
}

func sortPolicyRows(rows []PolicyRow) {
	slices.SortFunc(rows, func(a, b PolicyRow) int {
		return cmp.Or(cmp.Compare(a.Subject, b.Subject), cmp.Compare(a.Dir, b.Dir), cmp.Compare(a.Remote, b.Remote),
			cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Lo, b.Lo), cmp.Compare(a.Hi, b.Hi))
	})
}

func ipcacheFlags(f uint32) []string {
	var out []string
	for _, x := range []struct {
		bit  uint32
		name string
	}{
		{bpf.IPCacheLocal, "local"},
		{bpf.IPCacheIngressIsolated, "ingress-isolated"},
		{bpf.IPCacheEgressIsolated, "egress-isolated"},
		{bpf.IPCacheIngressRanges, "ingress-ranges"},
		{bpf.IPCacheEgressRanges, "egress-ranges"},
		{bpf.IPCacheRemoteEndpoint, "remote-endpoint"},
		{bpf.IPCacheIngressTieredDeny, "ingress-tiered-deny"},
		{bpf.IPCacheEgressTieredDeny, "egress-tiered-deny"},
	} {
		if f&x.bit != 0 {
			out = append(out, x.name)
			f &^= x.bit
		}
	}
	for _, d := range []struct {
		shift uint32
		dir   string
	}{{bpf.IPCacheIngressHintShift, "ingress"}, {bpf.IPCacheEgressHintShift, "egress"}} {
		h := f >> d.shift & 0xf
		if h == 0 {
			continue
		}
		var names []string
		for _, x := range []struct {
			bit  uint32
			name string
		}{{bpf.HintAnyRemote, "any"}, {bpf.HintWorld, "world"}, {bpf.HintAnyPort, "anyport"}, {bpf.HintAnyProto, "anyproto"}} {
			if h&x.bit != 0 {
				names = append(names, x.name)
			}
		}
		out = append(out, d.dir+"-hints="+strings.Join(names, "+"))
		f &^= 0xf << d.shift
	}
	if f != 0 {
		out = append(out, fmt.Sprintf("0x%x", f))
	}
	return out
}

// protoName names an IP protocol as the policy language does.
func protoName(p uint8) string {
	switch p {
	case 0:
		return "any"
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "icmpv6"
	case 132:
		return "sctp"
	}
	return fmt.Sprintf("proto-%d", p)
}

// portText shows a row's ports: "*", "8080", "8080-8095", or for ICMP
// "type/code", "type/*".
func portText(r PolicyRow) string {
	if r.AnyPort {
		return "*"
	}
	if r.Proto == 1 || r.Proto == 58 {
		t, c := r.Lo>>8, r.Lo&0xff
		switch {
		case r.Lo == r.Hi:
			return fmt.Sprintf("type %d code %d", t, c)
		case c == 0 && r.Hi == r.Lo|0xff:
			return fmt.Sprintf("type %d", t)
		}
		return fmt.Sprintf("type/code 0x%04x-0x%04x", r.Lo, r.Hi)
	}
	if r.Lo == r.Hi {
		return fmt.Sprint(r.Lo)
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// identityName is how the dump names an identity in map rows.
func identityNames(ids []Identity) map[uint32]string {
	names := map[uint32]string{bpf.IdentityAny: "any"}
	for _, id := range ids {
		names[id.ID] = identityText(id)
	}
	return names
}

func identityText(id Identity) string {
	var parts []string
	switch id.Kind {
	case IdentityWorld:
		return "world"
	case IdentityEndpoint:
		ls := make([]string, len(id.Labels))
		for i, l := range id.Labels {
			ls[i] = printable(l)
		}
		parts = append(parts, "{"+strings.Join(ls, ",")+"}")
	}
	if len(id.CIDRs) > 0 {
		parts = append(parts, "cidr "+strings.Join(id.CIDRs, " + "))
	}
	return strings.Join(parts, " in ")
}

// Text is the human-readable dump `polc inspect` prints and golden/ holds.
func (b *Bundle) Text() string {
	d := b.Decode()
	m := &d.Manifest
	var sb strings.Builder
	w := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	section := func(format string, args ...any) {
		w.Flush()
		fmt.Fprintf(&sb, "\n"+format+"\n", args...)
	}
	fmt.Fprintf(&sb, "bundle %s\n", d.Digest)
	fmt.Fprintf(&sb, "format %d, compiler %s, %s\n", m.Format, m.Compiler, m.ByteOrder)
	fmt.Fprintf(&sb, "source digest %s\n", m.SourceDigest)
	for _, s := range m.Sources {
		fmt.Fprintf(&sb, "  %s  sha256 %s\n", s.Path, s.SHA256)
	}
	fmt.Fprintf(&sb, "object %s  %d bytes  sha256 %s\n", m.Object.File, m.Object.Size, m.Object.SHA256)

	section("programs")
	for _, p := range m.Programs {
		hooks := strings.Join(p.Hooks, ", ")
		if hooks == "" {
			hooks = "(tail call)"
		}
		fmt.Fprintf(w, "  %s\t%s\n", p.Name, hooks)
	}
	section("tail calls: map %s, %d slots", m.TailCalls.Map, m.TailCalls.Size)
	for _, s := range m.TailCalls.Slots {
		fmt.Fprintf(w, "  %d\t%s\n", s.Index, s.Program)
	}
	section("constants")
	for _, c := range m.Constants {
		fmt.Fprintf(w, "  %s\t= %d\t(u%d)\n", c.Name, c.Value, c.Size*8)
	}
	section("maps")
	fmt.Fprintf(w, "  name\ttype\tkey\tvalue\tentries\tmax\tsha256\n")
	for _, s := range m.Maps {
		fmt.Fprintf(w, "  %s\t%s\t%s %dB\t%s %dB\t%d\t%d\t%.16s\n", s.Name, s.Type, s.KeyType, s.KeySize, s.ValueType, s.ValueSize, s.Entries, s.MaxEntries, s.SHA256)
	}
	w.Flush()
	for _, s := range m.Maps {
		fmt.Fprintf(&sb, "  %s key {%s} value {%s}\n", s.Name, fieldsText(s.Key), fieldsText(s.Value))
	}

	names := identityNames(d.Identities)
	section("identities (%d)", len(d.Identities))
	for _, id := range d.Identities {
		eps := ""
		if len(id.Endpoints) > 0 {
			eps = "endpoints " + strings.Join(id.Endpoints, ", ")
		}
		if len(id.Remote) > 0 {
			eps = strings.TrimPrefix(eps+"; remote "+strings.Join(id.Remote, ", "), "; ")
		}
		fmt.Fprintf(w, "  %d\t%s\t%s\t%s\n", id.ID, id.Kind, identityText(id), eps)
	}
	section("endpoints (%d)", len(d.Endpoints))
	epNames := map[uint32]string{}
	for _, e := range d.Endpoints {
		epNames[e.Index] = printable(e.Name)
		fmt.Fprintf(w, "  %d\t%s\t%s\n", e.Index, printable(e.Name), strings.Join(e.Addrs, ", "))
	}
	section("ipcache (%d)", len(d.IPCache))
	for _, r := range d.IPCache {
		ep := ""
		if r.Endpoint != 0 {
			ep = fmt.Sprintf("endpoint %d %s", r.Endpoint, epNames[r.Endpoint])
		}
		fmt.Fprintf(w, "  %s\t%s\t%d\t%s\t%s\t%s\n", r.Map, r.Prefix, r.Identity, names[r.Identity], strings.Join(r.Flags, ","), ep)
	}
	// The tiers column appears only in bundles with tiered entries, so
	// that untiered dumps read as before.
	tiered := false
	for _, rows := range [][]PolicyRow{d.Policy, d.PolicyRanges} {
		for _, r := range rows {
			tiered = tiered || tierText(r) != ""
		}
	}
	header := "  subject\t\tdir\tremote\t\tproto\tports\tverdict\trule\n"
	if tiered {
		header = "  subject\t\tdir\tremote\t\tproto\tports\tverdict\trule\ttiers\n"
	}
	policyRows := func(rows []PolicyRow) {
		for _, r := range rows {
			fmt.Fprintf(w, "  %d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d", r.Subject, names[r.Subject], r.Dir, r.Remote, names[r.Remote], protoName(r.Proto), portText(r), r.Verdict, r.Rule)
			if tiered {
				fmt.Fprintf(w, "\t%s", tierText(r))
			}
			fmt.Fprintln(w)
		}
	}
	section("policy (%d)", len(d.Policy))
	fmt.Fprint(w, header)
	policyRows(d.Policy)
	section("policy_ranges (%d)", len(d.PolicyRanges))
	if len(d.PolicyRanges) > 0 {
		fmt.Fprint(w, header)
	}
	policyRows(d.PolicyRanges)
	section("prefilter (%d)", len(d.Prefilter))
	for _, r := range d.Prefilter {
		fmt.Fprintf(w, "  %s\n", r.Prefix)
	}
	section("rules (%d)", len(d.Rules))
	for _, r := range d.Rules {
		if r.Name != "" {
			fmt.Fprintf(w, "  %d\t%s\t\t\n", r.ID, r.Name)
			continue
		}
		tier := ""
		if r.Tier != "" && r.Priority != nil {
			tier = fmt.Sprintf("\t%s priority %d rank %d", r.Tier, *r.Priority, r.Rank)
		}
		fmt.Fprintf(w, "  %d\t%s:%d:%d\t%s\t%s%s\n", r.ID, printable(r.File), r.Line, r.Col, printable(r.Policy), printable(r.Text), tier)
	}
	w.Flush()
	// tabwriter pads empty last cells; golden files are easier to diff
	// without trailing blanks.
	lines := strings.Split(sb.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

func fieldsText(fs []Field) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = fmt.Sprintf("%s %s @%d", f.Name, f.Type, f.Offset)
		if f.Type == "bytes" {
			parts[i] = fmt.Sprintf("%s [%d]byte @%d", f.Name, f.Size, f.Offset)
		}
	}
	return strings.Join(parts, ", ")
}

// printable is s as is when every rune of it prints, else Go-quoted, so
// that a label with control characters cannot rewrite a terminal or forge
// lines of the dump (ir.Printable does the same for the IR).
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return s
	}
	return strconv.Quote(s)
}
