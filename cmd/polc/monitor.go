package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/spf13/cobra"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/runtime"
)

func newMonitorCmd() *cobra.Command {
	var hf hostFlags
	var out outputFlag
	var f monitorFilter
	var allow bool
	var count int
	var duration time.Duration
	c := &cobra.Command{
		Use:   "monitor [NAME]",
		Short: "Stream the verdicts of a loaded bundle: drops, and allows on request",
		Long: `monitor prints the datapath's events of the bundle loaded under NAME (the
only one loaded when NAME is left out), one line each: time, verdict,
the endpoint whose hook decided and the direction, protocol, addresses and
ports, the remote (an endpoint, a CIDR identity or the world) and the
deciding rule as file:line (policy), or a reserved reason (default-deny,
spoofed-source, ...).

Every drop is an event, and so is every packet an audit policy would
deny but that passes (verdict "audit": the audit rule that would deny it,
and the rule that passed it). Allowed packets are events while a monitor runs
with --allow: it asks the datapath for them a few seconds ahead and keeps
renewing, so they stop within 3 s after monitor ends, however it ends
(kill -9 too). A bundle built to report allows always does so.

Events the ring buffer had no room for are counted by the datapath;
monitor prints how many it missed ("lost N events"), never silently.
Events are consumed: two monitors of one bundle split them.

Filters: --verdict drop|allow|audit, --endpoint NAME (the hook's
endpoint), --rule ID, FILE:LINE or a reserved name (default-deny), which
matches the deciding rule or the audit rule. -o json prints
JSON Lines: one object per event, and {"lost": N} when events were missed.
--count N stops after N events printed, --duration D after D; otherwise
monitor runs until interrupted.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			if err := f.validate(); err != nil {
				return err
			}
			if count < 0 || duration < 0 {
				return usageError("--count and --duration must not be negative")
			}
			h := hf.existingHost(c)
			name, err := monitoredName(h, args)
			if err != nil {
				return err
			}
			m, err := h.Monitor(name)
			if err != nil {
				return runtimeError(err)
			}
			defer m.Close()
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			w := bufio.NewWriterSize(c.OutOrStdout(), 64<<10)
			defer w.Flush()
			what := "drops"
			if allow {
				what = "drops and allows"
			}
			// ask before saying so: what follows the message is reported
			if allow {
				if err := m.RequestAllowEvents(); err != nil {
					return runtimeError(err)
				}
			}
			gen, _ := h.Generation(name)
			fmt.Fprintf(c.ErrOrStderr(), "monitoring %s (generation %d): %s; interrupt to stop\n", name, gen, what)
			run := monitorRun{m: m, w: w, json: out.json(), filter: f, allow: allow, count: count}
			if duration > 0 {
				run.end = time.Now().Add(duration)
			}
			return run.loop(ctx.Done())
		},
	}
	c.Flags().StringVar(&f.verdict, "verdict", "", "only events of this verdict: drop, allow or audit")
	c.Flags().StringVar(&f.endpoint, "endpoint", "", "only events at this endpoint's hooks")
	c.Flags().StringVar(&f.rule, "rule", "", "only events of this rule: its id, FILE:LINE, or a reserved name such as default-deny")
	c.Flags().BoolVar(&allow, "allow", false, "report allowed packets too, while monitor runs")
	c.Flags().IntVar(&count, "count", 0, "stop after this many events (0: no limit)")
	c.Flags().DurationVar(&duration, "duration", 0, "stop after this long (0: until interrupted)")
	addHostFlags(c, &hf)
	addOutputFlag(c, &out)
	return c
}

// monitoredName is the bundle to monitor: the one named, or the only one
// loaded.
func monitoredName(h *runtime.Host, args []string) (string, error) {
	if len(args) == 1 {
		return args[0], nil
	}
	sts, err := h.Status("")
	if err != nil {
		return "", runtimeError(err)
	}
	switch len(sts) {
	case 0:
		return "", usageError("no bundles loaded under %s", h.Root)
	case 1:
		return sts[0].Name, nil
	}
	var names []string
	for _, s := range sts {
		names = append(names, s.Name)
	}
	return "", usageError("%d bundles are loaded (%s): name the one to monitor", len(sts), strings.Join(names, ", "))
}

type monitorFilter struct {
	verdict, endpoint, rule string
}

func (f *monitorFilter) validate() error {
	switch f.verdict {
	case "", "drop", "allow", "audit":
		return nil
	}
	return usageError("--verdict %q: want drop, allow or audit", f.verdict)
}

// matches applies the filter to an event as named.
func (f *monitorFilter) matches(ev *monitorEvent) bool {
	if f.verdict != "" && ev.Verdict != f.verdict {
		return false
	}
	if f.endpoint != "" && ev.Endpoint != f.endpoint {
		return false
	}
	if f.rule == "" {
		return true
	}
	return f.ruleIs(&ev.Rule) || (ev.Audit != nil && f.ruleIs(ev.Audit))
}

func (f *monitorFilter) ruleIs(r *bundle.Rule) bool {
	switch {
	case f.rule == strconv.FormatUint(uint64(r.ID), 10):
		return true
	case r.Name != "":
		return f.rule == r.Name
	case r.File != "":
		where := fmt.Sprintf("%s:%d", r.File, r.Line)
		return where == f.rule || strings.HasSuffix(where, "/"+f.rule)
	}
	return false
}

// monitorEvent is an event as monitor prints it (-o json: one per line).
type monitorEvent struct {
	Time       time.Time   `json:"time"`
	Generation uint32      `json:"generation"`
	Verdict    string      `json:"verdict"` // allow or drop
	Direction  string      `json:"direction"`
	Endpoint   string      `json:"endpoint,omitempty"` // whose hook decided
	Proto      string      `json:"proto"`
	Src        string      `json:"src"`
	Dst        string      `json:"dst"`
	SPort      *uint16     `json:"sport,omitempty"`
	DPort      *uint16     `json:"dport,omitempty"`
	ICMPType   *uint8      `json:"icmp_type,omitempty"`
	ICMPCode   *uint8      `json:"icmp_code,omitempty"`
	Remote     string      `json:"remote,omitempty"` // an endpoint, "cidr ...", or "world"
	Rule       bundle.Rule `json:"rule"`
	// Audit, with verdict "audit", is the audit policy's rule that would
	// have denied the packet, which passed by Rule.
	Audit *bundle.Rule `json:"audit,omitempty"`
	Len   uint32       `json:"len"`
}

type monitorRun struct {
	m      *runtime.Monitor
	w      *bufio.Writer
	json   bool
	filter monitorFilter
	allow  bool
	count  int
	end    time.Time
	seen   int
	lost   uint64
}

// loop reads and prints events until done closes, the count or the
// duration is reached, renewing the allow request and reporting lost
// events every second.
func (r *monitorRun) loop(done <-chan struct{}) error {
	var err error
	if r.lost, err = r.m.Lost(); err != nil {
		return failure("read the lost-event count: %v", err)
	}
	if r.allow {
		if err := r.m.RequestAllowEvents(); err != nil {
			return runtimeError(err)
		}
	}
	second := time.Now().Add(time.Second)
	for {
		select {
		case <-done:
			return r.finish()
		default:
		}
		now := time.Now()
		if !r.end.IsZero() && !now.Before(r.end) {
			return r.finish()
		}
		if !now.Before(second) {
			second = now.Add(time.Second)
			if r.allow {
				if err := r.m.RequestAllowEvents(); err != nil {
					return runtimeError(err)
				}
			}
			if err := r.reportLost(); err != nil {
				return err
			}
		}
		deadline := now.Add(200 * time.Millisecond)
		if !r.end.IsZero() && r.end.Before(deadline) {
			deadline = r.end
		}
		e, err := r.m.Next(deadline)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if err := r.w.Flush(); err != nil {
				return err
			}
			continue
		case errors.Is(err, ringbuf.ErrClosed):
			return r.finish()
		case err != nil:
			return failure("read events: %v", err)
		}
		ev := r.name(&e, now)
		if !r.filter.matches(&ev) {
			continue
		}
		if err := r.print(&ev); err != nil {
			return err
		}
		r.seen++
		if r.count > 0 && r.seen >= r.count {
			return r.finish()
		}
	}
}

func (r *monitorRun) finish() error {
	if err := r.reportLost(); err != nil {
		return err
	}
	return r.w.Flush()
}

func (r *monitorRun) reportLost() error {
	n, err := r.m.Lost()
	if err != nil {
		return failure("read the lost-event count: %v", err)
	}
	if n <= r.lost {
		return nil
	}
	missed := n - r.lost
	r.lost = n
	if r.json {
		return writeJSONLine(r.w, map[string]any{"time": time.Now(), "lost": missed})
	}
	_, err = fmt.Fprintf(r.w, "%s lost %d events: the ring buffer was full (the rule counters still have them)\n", time.Now().Format("15:04:05.000000"), missed)
	return err
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// name turns an event into what monitor prints, named by its
// generation's catalog.
func (r *monitorRun) name(e *bpf.Event, now time.Time) monitorEvent {
	ev := monitorEvent{Time: now, Generation: e.Generation, Verdict: "drop", Direction: "ingress", Len: e.Len}
	switch e.Verdict {
	case bpf.VerdictAllow:
		ev.Verdict = "allow"
	case bpf.VerdictAudit:
		ev.Verdict = "audit"
		ev.Audit = &bundle.Rule{ID: e.Audit, Name: ir.ReservedName(ir.RuleID(e.Audit))}
	}
	if e.Family != bpf.FamilyIPv4 && e.Family != bpf.FamilyIPv6 {
		// decided before the IP header: ARP, other ethertypes, VLAN tags
		ev.Proto, ev.Src, ev.Dst = "non-ip", "-", "-"
		if e.Dir == bpf.DirEgress {
			ev.Direction = "egress"
		}
		ev.Rule = bundle.Rule{ID: e.Rule, Name: ir.ReservedName(ir.RuleID(e.Rule))}
		return ev
	}
	src, dst := eventAddr(e.Saddr, e.Family), eventAddr(e.Daddr, e.Family)
	ev.Src, ev.Dst = src.String(), dst.String()
	local, remote := dst, src
	if e.Dir == bpf.DirEgress {
		ev.Direction = "egress"
		local, remote = src, dst
	}
	proto := ir.Proto(e.Proto)
	ev.Proto = proto.String()
	switch {
	case proto.HasPorts():
		ev.SPort, ev.DPort = &e.Sport, &e.Dport
	case (proto == ir.ProtoICMP && e.Family == bpf.FamilyIPv4) || (proto == ir.ProtoICMPv6 && e.Family == bpf.FamilyIPv6):
		t, c := uint8(e.Dport>>8), uint8(e.Dport)
		ev.ICMPType, ev.ICMPCode = &t, &c
	}
	ev.Rule = bundle.Rule{ID: e.Rule, Name: ir.ReservedName(ir.RuleID(e.Rule))}
	cat := r.m.Catalog(e.Generation)
	if cat == nil {
		return ev
	}
	if rule := cat.Rule(e.Rule); rule != nil {
		ev.Rule = *rule
	}
	if ev.Audit != nil {
		if rule := cat.Rule(e.Audit); rule != nil {
			ev.Audit = rule
		}
	}
	ev.Endpoint = cat.Owner(local)
	if n := cat.Owner(remote); n != "" {
		ev.Remote = n
	} else if id := cat.Identity(e.Remote); id != nil && e.Remote != 0 {
		switch id.Kind {
		case bundle.IdentityCIDR:
			ev.Remote = "cidr " + strings.Join(id.CIDRs, ", ")
		default:
			ev.Remote = id.Kind
		}
	}
	return ev
}

func eventAddr(a [16]byte, family uint8) netip.Addr {
	if family == bpf.FamilyIPv4 {
		return netip.AddrFrom4([4]byte(a[:4]))
	}
	return netip.AddrFrom16(a)
}

func (r *monitorRun) print(ev *monitorEvent) error {
	if r.json {
		return writeJSONLine(r.w, ev)
	}
	src, dst := ev.Src, ev.Dst
	if ev.SPort != nil {
		src, dst = netip.AddrPortFrom(netip.MustParseAddr(ev.Src), *ev.SPort).String(), netip.AddrPortFrom(netip.MustParseAddr(ev.Dst), *ev.DPort).String()
	}
	l4 := ev.Proto
	if ev.ICMPType != nil {
		l4 = fmt.Sprintf("%s type %d code %d", ev.Proto, *ev.ICMPType, *ev.ICMPCode)
	}
	peer := ""
	if ev.Remote != "" {
		peer = "  from " + ev.Remote
		if ev.Direction == "egress" {
			peer = "  to " + ev.Remote
		}
	}
	rule := ruleText(&ev.Rule)
	if ev.Audit != nil {
		rule = "would be denied by " + ruleText(ev.Audit) + "; passed by " + rule
	}
	_, err := fmt.Fprintf(r.w, "%s %-5s %s %s  %s %s → %s%s  %s\n", ev.Time.Format("15:04:05.000000"), ev.Verdict,
		orDash(ev.Endpoint), ev.Direction, l4, src, dst, peer, rule)
	return err
}

// ruleText names a rule in monitor's lines: file:line (policy), a
// reserved name, or its id.
func ruleText(r *bundle.Rule) string {
	switch {
	case r.Name == "" && r.File == "":
		return "rule " + strconv.FormatUint(uint64(r.ID), 10)
	case r.Policy != "":
		return ruleWhere(r) + " (" + r.Policy + ")"
	}
	return ruleWhere(r)
}
