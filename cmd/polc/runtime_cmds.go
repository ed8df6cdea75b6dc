package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/runtime"
)

// hostFlags are the flags every command that touches the host has.
type hostFlags struct {
	root string
}

func addHostFlags(c *cobra.Command, f *hostFlags) {
	c.Flags().StringVar(&f.root, "root", runtime.DefaultRoot, "pin directory on a bpf filesystem (one subdirectory per loaded bundle)")
}

func (f *hostFlags) host(c *cobra.Command) *runtime.Host {
	h := runtime.NewHost()
	h.Root = f.root
	h.Notices = c.ErrOrStderr()
	return h
}

// existingHost is host for the commands that act on what is already
// pinned (everything but load). When ROOT cannot hold pins, because the
// nearest existing directory on its path is not on a bpf filesystem
// (a typo, or 'ip netns exec', which remounts /sys), they would report
// "not loaded" or "no bundles loaded" without saying why: say so first.
func (f *hostFlags) existingHost(c *cobra.Command) *runtime.Host {
	p := filepath.Clean(f.root)
	for {
		if _, err := os.Stat(p); err == nil {
			break
		}
		parent := filepath.Dir(p)
		if parent == p {
			break
		}
		p = parent
	}
	if ok, err := runtime.IsBPFFS(p); err == nil && !ok {
		fmt.Fprintf(c.ErrOrStderr(), "polc: note: %s is not on a bpf filesystem, so nothing can be loaded there "+
			"(check --root; 'ip netns exec' remounts /sys: use 'nsenter --net=/run/netns/NS' instead)\n", f.root)
	}
	return f.host(c)
}

// checkIfaces refuses interfaces that do not exist in this network
// namespace before anything is attached: a typo is a usage error (2), not
// a kernel refusal (1).
func checkIfaces(names []string) error {
	for _, n := range names {
		if _, err := runtime.InterfaceByName(n); err != nil {
			return usageError("interface %q: %v (see 'ip link'; polc acts in its own network namespace)", n, err)
		}
	}
	return nil
}

// runtimeError maps a runtime error to an exit status: what the host lacks
// and requests that do not fit the host's state are usage errors (2);
// everything else (the kernel refused the bundle) is a failure (1).
func runtimeError(err error) error {
	switch {
	case runtime.IsEnvironment(err):
		return usageError("%v", envHint(err))
	case errors.Is(err, runtime.ErrNotLoaded), errors.Is(err, runtime.ErrAlreadyLoaded), errors.Is(err, runtime.ErrInvalidName),
		errors.Is(err, runtime.ErrBinding), errors.Is(err, runtime.ErrStacked), errors.Is(err, runtime.ErrMissingHook):
		return usageError("%v", err)
	}
	return failure("%v", err)
}

func envHint(err error) string {
	switch {
	case errors.Is(err, runtime.ErrPrivilege):
		return err.Error() + " (run as root)"
	case errors.Is(err, runtime.ErrNoBPFFS):
		return err.Error() + " (mount one: mount -t bpf bpf " + runtime.BPFFSMount + ")"
	}
	return err.Error()
}

// readBundle reads and verifies a bundle before anything touches the kernel.
// A path that cannot be read is an input error, as a policy file's is
// ("polc: PATH: REASON", exit 2); one that holds no bundle says what a
// bundle is (exit 2); a corrupt bundle is a failure (exit 1).
func readBundle(path string) (*bundle.Bundle, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, inputError(path, err)
	}
	// Only a regular file is opened here: opening a FIFO would block.
	if st.Mode().IsRegular() {
		if err := notATar(path); err != nil {
			return nil, err
		}
	}
	b, err := bundle.Read(path)
	if err != nil {
		if errors.Is(err, bundle.ErrCorrupt) {
			return nil, failure("%v", err)
		}
		return nil, usageError("%v", err)
	}
	return b, nil
}

// notATar refuses a regular file that is not a tar archive at all (a
// policy file passed by mistake, say) as a usage error, rather than
// calling it a corrupt bundle: bundles are directories (build -o) or tar
// files (build --tar), and every tar header has "ustar" at offset 257. A
// file that cannot be opened is an input error.
func notATar(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return inputError(path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil
	}
	var hdr [262]byte
	if n, _ := io.ReadFull(f, hdr[:]); n == len(hdr) && string(hdr[257:262]) == "ustar" {
		return nil
	}
	return usageError("%s is not a bundle: a bundle is a directory (polc build -o DIR) or a tar file (polc build --tar FILE)", path)
}

// digestFlag is --digest of load and apply: the root digest the bundle
// must have (build and inspect print it), so that a host loads exactly
// what CI built.
type digestFlag string

func (f *digestFlag) add(c *cobra.Command) {
	c.Flags().StringVar((*string)(f), "digest", "", "refuse the bundle unless its root digest is this one (sha256:HEX, as build and inspect print it)")
}

// verify fails (exit 1) when the flag is set and the bundle's root digest
// is another: the bundle was edited, or is not the one meant.
func (f digestFlag) verify(b *bundle.Bundle) error {
	if f == "" {
		return nil
	}
	want := strings.ToLower(strings.TrimSpace(string(f)))
	if !strings.HasPrefix(want, bundle.DigestPrefix) {
		want = bundle.DigestPrefix + want
	}
	if len(want) != len(bundle.DigestPrefix)+64 {
		return usageError("--digest %q: want sha256: and 64 hex digits, as polc build and polc inspect print it", string(f))
	}
	got, err := b.RootDigest()
	if err != nil {
		return failure("bundle digest: %v", err)
	}
	if got != want {
		return failure("%v: the bundle is %s, --digest wants %s (it was edited, or is another bundle); nothing loaded", runtime.ErrDigest, got, want)
	}
	return nil
}

func newLoadCmd() *cobra.Command {
	var hf hostFlags
	var out outputFlag
	var digest digestFlag
	var name string
	var conntrack uint32
	c := &cobra.Command{
		Use:   "load BUNDLE --name NAME",
		Short: "Load a bundle into the kernel and pin it (without attaching)",
		Long: `load verifies a bundle (format version, every digest), then creates its
maps, fills them, loads its programs, fills the tail-call array and pins
everything under ROOT/NAME/ (docs/runtime.md). Nothing is attached: use
attach. Loading the bundle already loaded under NAME does nothing; a
different one is refused (use apply). An interrupted load leaves nothing
behind once polc runs again. --digest sha256:HEX refuses (exit 1) a bundle
whose root digest is another, so a host loads exactly what CI built.
--conntrack-entries sizes the connection-tracking table of each endpoint
attached (every endpoint has its own, so one that opens flows faster
than its table holds forgets its own oldest flows, never another's); apply
keeps the tables and their size (resizing them means unload and load).`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			if name == "" {
				return usageError("load needs --name")
			}
			if conntrack != 0 && (conntrack < runtime.ConntrackMinEntries || conntrack > runtime.ConntrackMaxEntries) {
				return usageError("--conntrack-entries %d: each endpoint's table holds %d to %d flows", conntrack, runtime.ConntrackMinEntries, runtime.ConntrackMaxEntries)
			}
			b, err := readBundle(args[0])
			if err != nil {
				return err
			}
			if err := digest.verify(b); err != nil {
				return err
			}
			h := hf.host(c)
			h.ConntrackEntries = conntrack
			res, err := h.Load(name, b)
			if err != nil {
				return runtimeError(err)
			}
			return printLoadResult(c.OutOrStdout(), &out, "loaded", res)
		},
	}
	c.Flags().StringVar(&name, "name", "", "name to load the bundle under")
	c.Flags().Uint32Var(&conntrack, "conntrack-entries", 0, fmt.Sprintf(
		"flows each endpoint's conntrack table holds, kept across apply (default %d)", runtime.ConntrackPerEndpoint))
	digest.add(c)
	addHostFlags(c, &hf)
	addOutputFlag(c, &out)
	return c
}

func printLoadResult(w io.Writer, out *outputFlag, verb string, res *runtime.LoadResult) error {
	if out.json() {
		o := map[string]any{
			"name": res.State.Name, "generation": res.State.Generation,
			"bundle_digest": res.State.BundleDigest, "changed": res.Changed,
		}
		if res.Path != "" {
			o["path"] = res.Path
		}
		if res.Why != "" {
			o["full_because"] = res.Why
		}
		if res.Deltas != nil {
			o["maps"] = res.Deltas
		}
		return writeJSON(w, o)
	}
	if !res.Changed {
		fmt.Fprintf(w, "%s: bundle %.12s already in force (generation %d)\n", res.State.Name, res.State.BundleDigest, res.State.Generation)
		return nil
	}
	how := ""
	switch res.Path {
	case runtime.PathMapOnly:
		how = " (map-only)"
	case runtime.PathFull:
		if res.Why != "" {
			how = " (full: " + res.Why + ")"
		}
	}
	fmt.Fprintf(w, "%s: %s bundle %.12s, generation %d%s\n", res.State.Name, verb, res.State.BundleDigest, res.State.Generation, how)
	for _, d := range res.Deltas {
		if d.Added+d.Changed+d.Removed > 0 {
			fmt.Fprintf(w, "  %s\t+%d ~%d -%d\n", d.Map, d.Added, d.Changed, d.Removed)
		}
	}
	return nil
}

func newApplyCmd() *cobra.Command {
	var hf hostFlags
	var out outputFlag
	var digest digestFlag
	var full bool
	c := &cobra.Command{
		Use:   "apply NAME BUNDLE",
		Short: "Replace a loaded bundle atomically, keeping conntrack",
		Long: `apply replaces the bundle loaded under NAME with BUNDLE: it stages the new
programs and maps (reusing the conntrack map), switches every attachment
to the new programs with atomic link updates, then commits. Every packet
sees the old policy or the new one, never a mix; established flows the new
policy no longer allows stop at their next packet. A failure or a kill at
any point leaves the old bundle in force (docs/runtime.md). --digest
sha256:HEX refuses (exit 1) a bundle whose root digest is another.

When BUNDLE has the loaded programs, constants and map layout (only the
ipcache and policy contents differ, as when pods come and go), apply loads
nothing: it writes the changed entries into standby copies of the maps and
switches every packet to them with one map update (map-only; the output
says so and counts the entries added, changed and removed per map).
--full loads new programs all the same.`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			b, err := readBundle(args[1])
			if err != nil {
				return err
			}
			if err := digest.verify(b); err != nil {
				return err
			}
			h := hf.existingHost(c)
			h.FullApply = full
			res, err := h.Apply(args[0], b)
			if err != nil {
				return runtimeError(err)
			}
			err = printLoadResult(c.OutOrStdout(), &out, "applied", res)
			h.Wait() // a map-only apply's standby copy
			return err
		},
	}
	digest.add(c)
	c.Flags().BoolVar(&full, "full", false, "load new programs even where the programs are the same (no map-only apply)")
	addHostFlags(c, &hf)
	addOutputFlag(c, &out)
	return c
}

// attachFlags select interfaces for attach and detach.
type attachFlags struct {
	tc, xdp []string
}

func (f *attachFlags) add(c *cobra.Command, ifaceHelp string) {
	c.Flags().StringSliceVar(&f.tc, "iface", nil, ifaceHelp)
	c.Flags().StringSliceVar(&f.xdp, "xdp", nil, "uplink interface: the XDP prefilter (repeatable)")
}

// ifaceNames are the interfaces the flags name, endpoint bindings left out.
func (f *attachFlags) ifaceNames() []string {
	var names []string
	for _, s := range ifaceSelections(*f) {
		names = append(names, s.iface)
	}
	return names
}

func newAttachCmd() *cobra.Command {
	var hf hostFlags
	var af attachFlags
	var out outputFlag
	var mode string
	c := &cobra.Command{
		Use:   "attach NAME (--iface IF=ENDPOINT | --xdp IF)...",
		Short: "Attach a loaded bundle to interfaces",
		Long: `attach attaches the programs of the bundle loaded under NAME: with --iface,
to both tc hooks of an endpoint's host-side veth (tcx links where the
kernel has them, else a netlink clsact filter, and polc says so); with
--xdp, the prefilter to an uplink. Links are pinned, so enforcement
outlives polc. Attaching what is already attached does nothing.

--iface binds the interface to the endpoint of the bundle it serves,
IF=ENDPOINT (e.g. --iface veth-web=web). From then on the endpoint can
send only from its own addresses (anything else is dropped as
spoofed-source) and receives only what is addressed to it
(wrong-destination); on that interface only ARP and IPv6 neighbour
discovery pass unpoliced, every other non-IP or VLAN-tagged frame is
dropped (docs/datapath.md). apply keeps the bindings: the new bundle must
have every bound endpoint.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			if len(af.tc)+len(af.xdp) == 0 {
				return usageError("attach needs --iface IF=ENDPOINT or --xdp IF")
			}
			if err := af.checkBindings(); err != nil {
				return err
			}
			if err := checkIfaces(af.ifaceNames()); err != nil {
				return err
			}
			h := hf.existingHost(c)
			switch runtime.TCMode(mode) {
			case runtime.TCAuto, runtime.TCForceX, runtime.TCNetlink:
				h.TCMode = runtime.TCMode(mode)
			default:
				return usageError("unknown --tc-mode %q: want tcx or netlink", mode)
			}
			var reqs []runtime.AttachRequest
			for _, sel := range ifaceSelections(af) {
				reqs = append(reqs, runtime.AttachRequest{Iface: sel.iface, AttachOptions: sel.what})
			}
			made, err := h.AttachAll(args[0], reqs)
			if err != nil {
				return runtimeError(err)
			}
			return printAttachments(c.OutOrStdout(), &out, "attached", made)
		},
	}
	af.add(c, "endpoint interface (host side of its veth) and the endpoint it serves, IF=ENDPOINT: both tc hooks (repeatable)")
	c.Flags().StringVar(&mode, "tc-mode", "", "force tcx or netlink for tc hooks (default: tcx where the kernel has it)")
	addHostFlags(c, &hf)
	addOutputFlag(c, &out)
	return c
}

type ifaceSelection struct {
	iface string
	what  runtime.AttachOptions
}

// ifaceSelections turns the flags into what to attach or detach: --iface
// IF=ENDPOINT (the interface name ends at the first '='), --xdp IF.
func ifaceSelections(af attachFlags) []ifaceSelection {
	var sels []ifaceSelection
	for _, i := range af.tc {
		iface, ep, _ := strings.Cut(i, "=")
		sels = append(sels, ifaceSelection{iface, runtime.AttachOptions{TC: true, Endpoint: ep}})
	}
	for _, i := range af.xdp {
		sels = append(sels, ifaceSelection{i, runtime.AttachOptions{XDP: true}})
	}
	return sels
}

// checkBindings refuses, before anything is attached, an --iface without
// its endpoint and an --xdp with one.
func (f *attachFlags) checkBindings() error {
	for _, i := range f.tc {
		iface, ep, ok := strings.Cut(i, "=")
		if !ok || ep == "" || iface == "" {
			if iface == "" {
				iface = "IF"
			}
			return usageError("--iface %s: name the endpoint the interface serves, --iface %s=ENDPOINT (polc inspect BUNDLE lists the endpoints)", i, iface)
		}
	}
	for _, i := range f.xdp {
		if strings.Contains(i, "=") {
			return usageError("--xdp %s: the prefilter runs on an uplink, which serves no endpoint: --xdp IF", i)
		}
	}
	return nil
}

func printAttachments(w io.Writer, out *outputFlag, verb string, as []runtime.Attachment) error {
	if out.json() {
		if as == nil {
			as = []runtime.Attachment{}
		}
		return writeJSON(w, map[string]any{verb: as})
	}
	if len(as) == 0 {
		fmt.Fprintf(w, "nothing %s (already so)\n", verb)
	}
	for _, a := range as {
		fmt.Fprintf(w, "%s %s on %s%s (%s)\n", verb, a.Hook, a.Iface, endpointText(a), a.Mode)
	}
	return nil
}

// endpointText is " as endpoint E" for a bound attachment.
func endpointText(a runtime.Attachment) string {
	if a.Endpoint == "" {
		return ""
	}
	return " as endpoint " + a.Endpoint
}

// endpointOf is the status column of an attachment's binding.
func endpointOf(a runtime.Attachment) string {
	switch {
	case a.Endpoint != "":
		return "endpoint " + a.Endpoint
	case a.Hook == bundle.HookUplinkXDP:
		return "uplink"
	}
	return "unbound"
}

func newDetachCmd() *cobra.Command {
	var hf hostFlags
	var af attachFlags
	var out outputFlag
	c := &cobra.Command{
		Use:   "detach NAME (--iface IF[=ENDPOINT] | --xdp IF)...",
		Short: "Detach a loaded bundle from interfaces",
		Long: `detach removes what attach attached to the interfaces given, then the
interface's binding to its endpoint; the bundle stays loaded. Detaching
what is not attached does nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			if len(af.tc)+len(af.xdp) == 0 {
				return usageError("detach needs --iface or --xdp")
			}
			h := hf.existingHost(c)
			var removed []runtime.Attachment
			for _, sel := range ifaceSelections(af) {
				r, err := h.Detach(args[0], sel.iface, sel.what)
				removed = append(removed, r...)
				if err != nil {
					return runtimeError(err)
				}
			}
			return printAttachments(c.OutOrStdout(), &out, "detached", removed)
		},
	}
	af.add(c, "endpoint interface: both tc hooks (repeatable; IF=ENDPOINT is accepted too)")
	addHostFlags(c, &hf)
	addOutputFlag(c, &out)
	return c
}

func newUnloadCmd() *cobra.Command {
	var hf hostFlags
	var out outputFlag
	c := &cobra.Command{
		Use:   "unload NAME",
		Short: "Detach and remove everything a loaded bundle pinned",
		Long: `unload detaches every attachment of the bundle loaded under NAME and removes
its pins. Unloading a name that is not loaded does nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			ok, err := hf.existingHost(c).Unload(args[0])
			if err != nil {
				return runtimeError(err)
			}
			if out.json() {
				return writeJSON(c.OutOrStdout(), map[string]any{"name": args[0], "unloaded": ok})
			}
			if ok {
				fmt.Fprintf(c.OutOrStdout(), "%s: unloaded\n", args[0])
			} else {
				fmt.Fprintf(c.OutOrStdout(), "%s: not loaded\n", args[0])
			}
			return nil
		},
	}
	addHostFlags(c, &hf)
	addOutputFlag(c, &out)
	return c
}

func newStatusCmd() *cobra.Command {
	var hf hostFlags
	var out outputFlag
	var rules bool
	c := &cobra.Command{
		Use:   "status [NAME]",
		Short: "List loaded bundles, generations, attachments, map fill and counters",
		Long: `status lists the bundles loaded under ROOT (or the one named): generation,
bundle digest, attachments and the endpoints they serve, map fill levels,
each endpoint's conntrack table, and the packets counted.

--rules NAME lists every rule of the bundle with the packets and bytes it
decided, the most first, each as file:line (policy) and its text; reserved
reasons (default-deny, spoofed-source, ...) are rules too. Counts survive
apply for rules that stay the same (same policy, same text); new or
changed rules start at 0.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			if rules {
				if name == "" {
					return usageError("status --rules needs the NAME of a loaded bundle")
				}
				rcs, err := hf.existingHost(c).RuleCounts(name)
				if err != nil {
					return runtimeError(err)
				}
				if out.json() {
					return writeJSON(c.OutOrStdout(), rcs)
				}
				printRuleCounts(c.OutOrStdout(), rcs)
				return nil
			}
			sts, err := hf.existingHost(c).Status(name)
			if err != nil {
				return runtimeError(err)
			}
			if out.json() {
				if sts == nil {
					sts = []runtime.Status{}
				}
				return writeJSON(c.OutOrStdout(), sts)
			}
			printStatus(c.OutOrStdout(), sts)
			return nil
		},
	}
	c.Flags().BoolVar(&rules, "rules", false, "list the bundle's rules with their packet and byte counts")
	addHostFlags(c, &hf)
	addOutputFlag(c, &out)
	return c
}

func printRuleCounts(w io.Writer, rcs []runtime.RuleCount) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PACKETS\tBYTES\tRULE\tPOLICY\tTEXT")
	for _, r := range rcs {
		where, text := ruleWhere(&r.Rule), r.Text
		if r.Name != "" {
			text = "(" + r.Name + ")"
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", r.Packets, r.Bytes, where, orDash(r.Policy), text)
	}
	tw.Flush()
}

// ruleWhere names a rule: file:line, or its reserved name.
func ruleWhere(r *bundle.Rule) string {
	if r.Name != "" {
		return r.Name
	}
	return fmt.Sprintf("%s:%d", r.File, r.Line)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printStatus(w io.Writer, sts []runtime.Status) {
	if len(sts) == 0 {
		fmt.Fprintln(w, "no bundles loaded")
		return
	}
	for i, s := range sts {
		if i > 0 {
			fmt.Fprintln(w)
		}
		applied := ""
		if s.ApplyPath != "" {
			applied = " (" + s.ApplyPath + ")"
		}
		if s.FullBecause != "" {
			applied = " (" + s.ApplyPath + ": " + s.FullBecause + ")"
		}
		fmt.Fprintf(w, "%s: generation %d%s, bundle %.12s, updated %s\n", s.Name, s.Generation, applied, s.BundleDigest, s.Updated.Format("2006-01-02 15:04:05Z"))
		if s.Counters != nil {
			fmt.Fprintf(w, "  counters: %d packets, %d bytes\n", s.Counters.Packets, s.Counters.Bytes)
		}
		if s.EventsLost != nil && *s.EventsLost > 0 {
			fmt.Fprintf(w, "  events lost: %d (the ring buffer was full)\n", *s.EventsLost)
		}
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		if len(s.Attachments) == 0 {
			fmt.Fprintln(tw, "  attachments: none")
		}
		for _, a := range s.Attachments {
			state := "live"
			if !a.Live {
				state = "interface gone"
			}
			fmt.Fprintf(tw, "  attached\t%s\t%s\t%s\t%s\t%s\n", a.Iface, endpointOf(a.Attachment), a.Hook, a.Mode, state)
		}
		for _, m := range s.Maps {
			fill := "-"
			if m.Entries >= 0 {
				fill = fmt.Sprintf("%d/%d", m.Entries, m.MaxEntries)
			}
			extra := ""
			if m.Shared {
				extra = "kept across apply"
			}
			fmt.Fprintf(tw, "  map\t%s\t%s\t%s\t%s\n", m.Name, strings.ToLower(m.Type), fill, extra)
		}
		for _, c := range s.Conntrack {
			fmt.Fprintf(tw, "  conntrack\t%s\tlru_hash\t%d/%d\tkept across apply\n", c.Endpoint, c.Entries, c.MaxEntries)
		}
		tw.Flush()
	}
}
