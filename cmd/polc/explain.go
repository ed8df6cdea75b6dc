package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/compiler/lower"
	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/runtime/harness"
)

func newExplainCmd() *cobra.Command {
	var (
		out       outputFlag
		in        harnessInputs
		reference bool
	)
	c := &cobra.Command{
		Use:   "explain FILE... FLOW",
		Short: "Explain the verdict on one packet: identities, deciding rule and source line",
		Long: `explain compiles policy files and says what happens to one packet: the
verdict, the identity each side resolves to, the deciding rule with its
source line, and the decision at each hook (the source's egress, the
destination's ingress). The packet is written like a test packet:

  tcp 10.0.1.10:40000 -> 10.0.2.10:8080
  udp web -> api:53                     (endpoint names)
  tcp [fd00::1]:40000 -> [fd00::2]:80   (IPv6 with a port in brackets)
  icmpv6 fd00::1 -> fd00::2             (without a port, no brackets needed)
  icmp 10.0.1.10 -> 10.0.2.10 type 8 code 0
  tcp web -> api:8080 flags ack
  tcp shop.deploy/client -> shop.web-0:80   (Kubernetes: NS.POD, NS.KIND/NAME)
  udp default.foo -> svc/kube-system/kube-dns:53   (a Service: svc/NS/NAME:PORT,
  udp default.foo -> 10.96.0.10:53                  PORT a number or a name, or a cluster IP)

An unknown endpoint name suggests the endpoints of that name in any
namespace, or the nearest name.

A packet to a Kubernetes Service (--k8s) is translated at its source, as
Cilium's socket load balancer does, to each backend at its target port
before any hook sees it (docs/kubernetes.md, "Services"). explain shows
the verdict for every backend and explains the first in name order; a
Service without a backend for the port delivers nothing (verdict deny).

With tiered policies (docs/language.md, "Tiers"), a rule's policy shows
its tier and priority, and a hook where a tier took part gets a "tiers:"
line: the pass rules the packet crossed and the level that decided
("admin pass by rule 18 (guard, priority 10) → namespace level: allow by
rule 23 (api-in)"); in JSON, a point's "passes" and "level".

The reference evaluator always decides; the packet also runs through the
kernel programs (BPF_PROG_TEST_RUN on a fresh host) when they can be loaded,
and explain says so if the two differ (exit status 1). -o json prints one
object whose "verdict" is "allow" or "deny".

On a node's bundle (--k8s --node NAME), a remote endpoint's half of a
packet is its own node's business: the packet meets only the local hook.
A packet between two remote endpoints meets no hook here: explain says
"elsewhere" ("elsewhere": true in JSON), exit status 0.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			files, flow := args[:len(args)-1], args[len(args)-1]
			prog, err := in.load(c, &out, files)
			if err != nil {
				return err
			}
			pkt, sf, err := harness.ParseServiceFlow(prog, in.services, flow)
			if err != nil {
				return usageError("%v", err)
			}
			if sf != nil && len(sf.Packets) == 0 {
				return explainNoBackend(c.OutOrStdout(), out.json(), flow, sf)
			}
			// ParseFlow unmaps an IPv4-mapped IPv6 address ([::ffff:10.0.1.10])
			// after choosing the other side's family from it, which makes a
			// packet of two families that the packet builder panics on. As
			// in test blocks, refuse them.
			if pkt.Src.Is4() != pkt.Dst.Is4() {
				return usageError("flow %q: mixed address families: %s and %s (an IPv4-mapped IPv6 address "+
					"such as [::ffff:10.0.1.10] counts as IPv4: write the IPv4 address)", flow, pkt.Src, pkt.Dst)
			}
			ev := eval.New(prog)
			cs := harness.CaseFromIR(ev, pkt)
			o := harness.Outcome{Reference: ev.Eval(eval.NewConntrack(), cs.Ref)}
			kernelNote := "not run (--reference)"
			var ids [2]uint32
			if !reference {
				kr, kids, note := explainInKernel(prog, cs)
				o.Kernel, ids, kernelNote = kr, kids, note
			}
			ex := explanation{prog: prog, ev: ev, pkt: pkt, out: o, kernelNote: kernelNote, kernelIDs: ids, service: sf}
			if out.json() {
				err = writeHarnessJSON(c.OutOrStdout(), ex.json())
			} else {
				err = ex.text(c.OutOrStdout())
			}
			if err != nil {
				return err
			}
			if o.Diff() != "" {
				return quietFailure
			}
			return nil
		},
	}
	addOutputFlag(c, &out)
	addInputFlags(c, &in.inputFlags) // --k8s; --cases (tests) means nothing here
	c.Flags().BoolVar(&reference, "reference", false, "use the reference evaluator alone (no BPF)")
	return c
}

// explainInKernel runs the case through the kernel when it can. The note
// says why it did not.
func explainInKernel(prog *ir.Program, cs harness.Case) (*harness.KernelResult, [2]uint32, string) {
	var ids [2]uint32
	b, err := lower.Build(prog, bpf.Object(), lower.Options{Compiler: version})
	if err != nil {
		return nil, ids, "not run: build: " + err.Error()
	}
	k, err := harness.Open(b)
	if errors.Is(err, harness.ErrPrivilege) {
		return nil, ids, "not run: cannot load BPF programs (needs root)"
	}
	if err != nil {
		return nil, ids, "not run: " + err.Error()
	}
	defer k.Close()
	kr, err := k.RunRef(cs.Frame, cs.Ref)
	if err != nil {
		return nil, ids, "not run: " + err.Error()
	}
	ids[0], _ = k.Identity(cs.Ref.Src)
	ids[1], _ = k.Identity(cs.Ref.Dst)
	return &kr, ids, ""
}

type explanation struct {
	prog       *ir.Program
	ev         *eval.Evaluator
	pkt        ir.Packet
	out        harness.Outcome
	kernelNote string               // why the kernel did not run
	kernelIDs  [2]uint32            // the kernel's identities of source and destination
	service    *harness.ServiceFlow // the Service the flow was written to, if any
}

// serviceLine describes the Service a flow goes to.
func serviceLine(sf *harness.ServiceFlow) string {
	tr := sf.Translation
	var ips []string
	for _, a := range tr.Service.ClusterIPs {
		ips = append(ips, a.String())
	}
	s := tr.Service.Ref()
	switch {
	case tr.Service.Headless:
		s += " (headless)"
	case len(ips) > 0:
		s += " (" + strings.Join(ips, ", ") + ")"
	}
	if tr.Port.Port != 0 {
		s += fmt.Sprintf(" port %s to targetPort %s", tr.Port, tr.Port.Target.String())
	}
	return s
}

// backendVerdicts evaluates the packet of every backend of a Service flow
// on its own (a fresh connection each).
func backendVerdicts(ev *eval.Evaluator, sf *harness.ServiceFlow) []eval.Result {
	out := make([]eval.Result, len(sf.Packets))
	for i, p := range sf.Packets {
		out[i] = ev.Eval(eval.NewConntrack(), harness.CaseFromIR(ev, p).Ref)
	}
	return out
}

// noBackendNote says what a cluster does with a packet to a Service
// without backend.
const noBackendNote = "nothing is delivered: Cilium drops the packet, kube-proxy rejects it"

// explainNoBackend explains a flow to a Service that has no backend for
// it: no hook sees a packet, and the verdict is deny.
func explainNoBackend(w io.Writer, asJSON bool, flow string, sf *harness.ServiceFlow) error {
	if asJSON {
		return writeHarnessJSON(w, explainJSON{
			Packet: flow, Verdict: "deny", Rule: ruleJSON{Name: "no-backend"}, Points: []pointJSON{},
			Service: &serviceJSON{Name: sf.Translation.Service.Ref(), Description: serviceLine(sf), NoBackend: sf.Translation.NoBackend},
			Kernel:  explainKernel{Note: "not run: no packet to run"},
		})
	}
	fmt.Fprintf(w, "packet:       %s\n", flow)
	fmt.Fprintf(w, "service:      %s\n", serviceLine(sf))
	fmt.Fprintf(w, "verdict:      deny\n")
	fmt.Fprintf(w, "decided by:   no backend: %s\n", sf.Translation.NoBackend)
	fmt.Fprintf(w, "  %s\n", noBackendNote)
	return nil
}

// identityText describes what an address resolves to.
func identityText(r eval.Resolution) string {
	switch r.Kind {
	case eval.ResolvedEndpoint:
		var ls []string
		for _, l := range r.Endpoint.Labels {
			ls = append(ls, l.Key+"="+l.Value)
		}
		kind := "endpoint"
		if r.Endpoint.Remote {
			kind = "remote endpoint" // another node's: a peer here, no hooks
		}
		return fmt.Sprintf("%s %s (%s)", kind, r.Endpoint.Name, strings.Join(ls, ", "))
	case eval.ResolvedCIDR:
		return "cidr " + r.Prefix.String()
	}
	return "world"
}

// pointReason adds why a reserved decision was made.
func pointReason(ev *eval.Evaluator, p eval.PointDecision) string {
	switch p.Rule {
	case ir.RuleDefaultAllow:
		if admin, baseline, _ := ev.TieredRules(p.Subject.Name, p.Dir); len(admin)+len(baseline) > 0 {
			return fmt.Sprintf(" (no untiered policy selects %s for %s, and no rule of a tier decides)", p.Subject.Name, p.Dir)
		}
		return fmt.Sprintf(" (no policy selects %s for %s)", p.Subject.Name, p.Dir)
	case ir.RuleDefaultDeny:
		return fmt.Sprintf(" (policies select %s for %s and no rule allows this)", p.Subject.Name, p.Dir)
	case ir.RuleSpoofedSource:
		return fmt.Sprintf(" (%s's interface may send only from %s's addresses)", p.Subject.Name, p.Subject.Name)
	}
	return ""
}

func (ex *explanation) text(w io.Writer) error {
	r := ex.out.Reference
	if sf := ex.service; sf != nil {
		fmt.Fprintf(w, "service:      %s\n", serviceLine(sf))
		fmt.Fprintf(w, "translated:   at the source, before its egress hook, to each backend (%d):\n", len(sf.Packets))
		for i, res := range backendVerdicts(ex.ev, sf) {
			mark := ""
			if i == 0 {
				mark = " (explained below)"
			}
			fmt.Fprintf(w, "  %s: %s by %s%s\n", sf.Translation.Targets[i], res.Verdict, harness.RuleSource(ex.prog, res.Rule), mark)
		}
	}
	fmt.Fprintf(w, "packet:       %s\n", harness.FormatPacket(ex.pkt))
	fmt.Fprintf(w, "source:       %s is %s\n", ex.pkt.Src, identityText(ex.ev.Resolve(ex.pkt.Src)))
	fmt.Fprintf(w, "destination:  %s is %s\n", ex.pkt.Dst, identityText(ex.ev.Resolve(ex.pkt.Dst)))
	if ex.ev.Elsewhere(ex.pkt.Src, ex.pkt.Dst) {
		fmt.Fprintf(w, "verdict:      elsewhere: no local endpoint sends or receives it, so no hook of this node sees it;\n")
		fmt.Fprintf(w, "              the bundles of the remote endpoints' nodes decide it\n")
		return ex.kernelText(w)
	}
	fmt.Fprintf(w, "verdict:      %s\n", r.Verdict)
	fmt.Fprintf(w, "decided by:   %s\n", ruleDetail(ex.prog, r.Rule))
	if r.Audit != 0 {
		fmt.Fprintf(w, "audit:        would be denied by %s (an audit policy: reported, not enforced)\n", ruleDetail(ex.prog, r.Audit))
	}
	switch {
	case r.Rule == ir.RulePrefilter:
		fmt.Fprintf(w, "  dropped by the XDP prefilter before any hook (the source is outside, in a prefilter prefix)\n")
	case len(r.Points) == 0:
		fmt.Fprintf(w, "  no hook sees it: neither address is a local endpoint's\n")
	}
	for _, p := range r.Points {
		peer := "from"
		if p.Dir == dsl.Egress {
			peer = "to"
		}
		fmt.Fprintf(w, "  %s %s %s %s: %s by %s%s\n", p.Subject.Name, p.Dir, peer, p.Remote, p.Verdict, ruleDetail(ex.prog, p.Rule), pointReason(ex.ev, p))
		if tiersTookPart(ex.prog, p) {
			fmt.Fprintf(w, "    tiers: %s\n", tierChain(ex.prog, p))
		}
		if p.Audit != 0 {
			fmt.Fprintf(w, "    audit: would be denied by %s\n", ruleDetail(ex.prog, p.Audit))
		}
	}
	for _, a := range []netip.Addr{ex.pkt.Src, ex.pkt.Dst} {
		if rs := ex.ev.Resolve(a); rs.Kind == eval.ResolvedEndpoint && rs.Endpoint.Remote {
			fmt.Fprintf(w, "  %s is a remote endpoint: its own node's bundle decides its half\n", rs.Endpoint.Name)
		}
	}
	return ex.kernelText(w)
}

// kernelText says what the kernel decided, and whether it agrees.
func (ex *explanation) kernelText(w io.Writer) error {
	switch k := ex.out.Kernel; {
	case k == nil:
		fmt.Fprintf(w, "kernel:       %s\n", ex.kernelNote)
	case ex.out.Diff() == "":
		fmt.Fprintf(w, "kernel:       %s (%s), agrees with the reference\n", k.Verdict, harness.RuleName(k.Rule))
	default:
		fmt.Fprintf(w, "kernel:       %s (%s) — DIFFERS from the reference: %s\n", k.Verdict, harness.RuleName(k.Rule), ex.out.Diff())
	}
	return nil
}

type (
	explainJSON struct {
		Packet      string        `json:"packet"`
		Verdict     string        `json:"verdict"`
		Rule        ruleJSON      `json:"rule"`
		Audit       *ruleJSON     `json:"audit,omitempty"`
		Source      sideJSON      `json:"source"`
		Destination sideJSON      `json:"destination"`
		Points      []pointJSON   `json:"points"`
		Kernel      explainKernel `json:"kernel"`
		// Elsewhere: no hook of this node sees the packet (it is between
		// remote endpoints); other nodes' bundles decide it.
		Elsewhere bool         `json:"elsewhere,omitempty"`
		Service   *serviceJSON `json:"service,omitempty"`
	}
	// serviceJSON is the Service a flow goes to: packet, verdict and
	// points are then the first backend's.
	serviceJSON struct {
		Name        string        `json:"name"` // svc/NS/NAME
		Description string        `json:"description"`
		Backends    []backendJSON `json:"backends,omitempty"`
		NoBackend   string        `json:"no_backend,omitempty"`
	}
	backendJSON struct {
		Backend string   `json:"backend"` // NS.POD:PORT or ADDRESS:PORT
		Packet  string   `json:"packet"`
		Verdict string   `json:"verdict"`
		Rule    ruleJSON `json:"rule"`
	}
	sideJSON struct {
		Address  string   `json:"address"`
		Identity string   `json:"identity"` // endpoint, cidr or world
		Endpoint string   `json:"endpoint,omitempty"`
		Labels   []string `json:"labels,omitempty"`
		Prefix   string   `json:"prefix,omitempty"`
		Remote   bool     `json:"remote,omitempty"` // a remote endpoint (another node's)
		// KernelIdentity is the identity number the kernel's ipcache gives
		// the address (0 when the kernel did not run).
		KernelIdentity uint32 `json:"kernel_identity,omitempty"`
	}
	explainKernel struct {
		Ran         bool        `json:"ran"`
		Note        string      `json:"note,omitempty"`
		Verdict     string      `json:"verdict,omitempty"`
		Rule        *ruleJSON   `json:"rule,omitempty"`
		Prefiltered bool        `json:"prefiltered,omitempty"`
		Points      []pointJSON `json:"points,omitempty"`
		Agrees      bool        `json:"agrees"`
		Difference  string      `json:"difference,omitempty"`
	}
)

func sideToJSON(a netip.Addr, r eval.Resolution, kid uint32) sideJSON {
	s := sideJSON{Address: a.String(), KernelIdentity: kid}
	switch r.Kind {
	case eval.ResolvedEndpoint:
		s.Identity, s.Endpoint, s.Prefix, s.Remote = "endpoint", r.Endpoint.Name, r.Prefix.String(), r.Endpoint.Remote
		for _, l := range r.Endpoint.Labels {
			s.Labels = append(s.Labels, l.Key+"="+l.Value)
		}
	case eval.ResolvedCIDR:
		s.Identity, s.Prefix = "cidr", r.Prefix.String()
	default:
		s.Identity = "world"
	}
	return s
}

func (ex *explanation) json() explainJSON {
	ref := referenceJSON(ex.prog, ex.out.Reference)
	j := explainJSON{
		Packet:      harness.FormatPacket(ex.pkt),
		Verdict:     ref.Verdict,
		Rule:        ref.Rule,
		Audit:       ref.Audit,
		Source:      sideToJSON(ex.pkt.Src, ex.ev.Resolve(ex.pkt.Src), ex.kernelIDs[0]),
		Destination: sideToJSON(ex.pkt.Dst, ex.ev.Resolve(ex.pkt.Dst), ex.kernelIDs[1]),
		Points:      ref.Points,
		Kernel:      explainKernel{Note: ex.kernelNote},
		Elsewhere:   ex.ev.Elsewhere(ex.pkt.Src, ex.pkt.Dst),
	}
	if sf := ex.service; sf != nil {
		j.Service = &serviceJSON{Name: sf.Translation.Service.Ref(), Description: serviceLine(sf)}
		for i, res := range backendVerdicts(ex.ev, sf) {
			j.Service.Backends = append(j.Service.Backends, backendJSON{Backend: sf.Translation.Targets[i].String(),
				Packet: harness.FormatPacket(sf.Packets[i]), Verdict: res.Verdict.String(), Rule: ruleToJSON(ex.prog, res.Rule)})
		}
	}
	if k := kernelJSON(ex.prog, ex.out.Kernel); k != nil {
		j.Kernel = explainKernel{Ran: true, Verdict: k.Verdict, Rule: &k.Rule, Prefiltered: k.Prefiltered,
			Points: k.Points, Agrees: ex.out.Diff() == "", Difference: ex.out.Diff()}
	}
	return j
}

// tiersTookPart reports whether a tiered policy's rule passed the packet
// on or decided it at point p: then explain shows the chain of levels.
func tiersTookPart(prog *ir.Program, p eval.PointDecision) bool {
	if len(p.Passes) > 0 {
		return true
	}
	r := harness.LookupRule(prog, p.Rule)
	return r != nil && r.Tier != dsl.TierNone
}

// tierChain is the way a point's decision went through the tiers:
// "admin pass by rule 18 (guardrails, priority 10) → namespace level:
// allow by rule 23 (api-in)".
func tierChain(prog *ir.Program, p eval.PointDecision) string {
	var steps []string
	for _, id := range p.Passes {
		if r := harness.LookupRule(prog, id); r != nil {
			steps = append(steps, fmt.Sprintf("%s pass by rule %d (%s, priority %d)", r.Tier, id, r.Policy, r.Priority))
		}
	}
	last := ""
	switch r := harness.LookupRule(prog, p.Rule); {
	case r != nil && r.Tier != dsl.TierNone:
		last = fmt.Sprintf("%s: %s by rule %d (%s, priority %d)", r.Tier, p.Verdict, p.Rule, r.Policy, r.Priority)
	case r != nil:
		last = fmt.Sprintf("namespace level: %s by rule %d (%s)", p.Verdict, p.Rule, r.Policy)
	case p.Rule == ir.RuleDefaultAllow:
		last = "default allow"
	case p.Rule == ir.RuleDefaultDeny:
		last = "namespace level: default-deny (an untiered policy isolates " + p.Subject.Name + " for " + p.Dir.String() + ")"
	default:
		last = harness.RuleName(p.Rule)
	}
	return strings.Join(append(steps, last), " → ")
}
