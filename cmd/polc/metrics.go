package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/polc-dev/polc/runtime"
)

func newMetricsCmd() *cobra.Command {
	var hf hostFlags
	var listen string
	c := &cobra.Command{
		Use:   "metrics --listen ADDR [NAME...]",
		Short: "Serve the loaded bundles' counters as Prometheus metrics",
		Long: `metrics serves, at http://ADDR/metrics in the Prometheus text format, the
counters of the bundles loaded under ROOT (or only those named), read
from the kernel at every scrape:

  polc_rule_packets_total, polc_rule_bytes_total   per rule: bundle, id, the
      rule's file, line and policy (or its reserved name), verdict
  polc_drops_total          packets dropped, per bundle and reason (a
      reserved reason such as default-deny or spoofed-source, or "rule"
      for deny rules)
  polc_events_lost_total    events the ring buffer had no room for
  polc_map_entries, polc_map_max_entries   fill of each map (hash-like
      maps), per bundle and map
  polc_conntrack_entries, polc_conntrack_max_entries   each endpoint's
      conntrack table
  polc_generation           the generation each bundle runs

Rule counts survive apply for rules that stay the same (see status
--rules). ADDR is host:port; port 0 picks a free one. The address it
serves on is printed on standard error. It runs until interrupted.`,
		RunE: func(c *cobra.Command, args []string) error {
			if listen == "" {
				return usageError("metrics needs --listen ADDR (host:port)")
			}
			h := hf.existingHost(c)
			reg := prometheus.NewRegistry()
			reg.MustRegister(&hostCollector{h: h, names: args})
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return usageError("--listen %s: %v", listen, err)
			}
			mux := http.NewServeMux()
			mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(c.ErrOrStderr(), "serving metrics on http://%s/metrics\n", ln.Addr())
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(shut)
			}()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return failure("serve metrics: %v", err)
			}
			return nil
		},
	}
	c.Flags().StringVar(&listen, "listen", "", "`host:port` to serve /metrics on")
	addHostFlags(c, &hf)
	return c
}

// hostCollector reads the bundles' counters at every scrape.
type hostCollector struct {
	h     *runtime.Host
	names []string // "" all
}

var (
	descRulePackets = prometheus.NewDesc("polc_rule_packets_total", "Packets decided by a rule (or reserved reason).",
		[]string{"bundle", "id", "name", "file", "line", "policy", "verdict"}, nil)
	descRuleBytes = prometheus.NewDesc("polc_rule_bytes_total", "Bytes of the packets decided by a rule (or reserved reason).",
		[]string{"bundle", "id", "name", "file", "line", "policy", "verdict"}, nil)
	descDrops      = prometheus.NewDesc("polc_drops_total", "Packets dropped, by reason (\"rule\": deny rules).", []string{"bundle", "reason"}, nil)
	descLost       = prometheus.NewDesc("polc_events_lost_total", "Events the ring buffer had no room for.", []string{"bundle"}, nil)
	descMapEntries = prometheus.NewDesc("polc_map_entries", "Entries in a hash-like map.", []string{"bundle", "map"}, nil)
	descMapMax     = prometheus.NewDesc("polc_map_max_entries", "Size of a map.", []string{"bundle", "map"}, nil)
	descCTEntries  = prometheus.NewDesc("polc_conntrack_entries", "Flows in an endpoint's conntrack table.", []string{"bundle", "endpoint"}, nil)
	descCTMax      = prometheus.NewDesc("polc_conntrack_max_entries", "Size of an endpoint's conntrack table.", []string{"bundle", "endpoint"}, nil)
	descGeneration = prometheus.NewDesc("polc_generation", "The generation a bundle runs (1 after load, one more per apply).", []string{"bundle"}, nil)
)

func (hc *hostCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRulePackets, descRuleBytes, descDrops, descLost, descMapEntries, descMapMax, descCTEntries, descCTMax, descGeneration} {
		ch <- d
	}
}

func (hc *hostCollector) Collect(ch chan<- prometheus.Metric) {
	var sts []runtime.Status
	if len(hc.names) == 0 {
		all, err := hc.h.Status("")
		if err != nil {
			ch <- prometheus.NewInvalidMetric(descGeneration, err)
			return
		}
		sts = all
	} else {
		for _, n := range hc.names {
			one, err := hc.h.Status(n)
			if err != nil {
				ch <- prometheus.NewInvalidMetric(descGeneration, err)
				continue
			}
			sts = append(sts, one...)
		}
	}
	for _, s := range sts {
		ch <- prometheus.MustNewConstMetric(descGeneration, prometheus.GaugeValue, float64(s.Generation), s.Name)
		for _, m := range s.Maps {
			if m.Entries >= 0 {
				ch <- prometheus.MustNewConstMetric(descMapEntries, prometheus.GaugeValue, float64(m.Entries), s.Name, m.Name)
			}
			ch <- prometheus.MustNewConstMetric(descMapMax, prometheus.GaugeValue, float64(m.MaxEntries), s.Name, m.Name)
		}
		for _, t := range s.Conntrack {
			ch <- prometheus.MustNewConstMetric(descCTEntries, prometheus.GaugeValue, float64(t.Entries), s.Name, t.Endpoint)
			ch <- prometheus.MustNewConstMetric(descCTMax, prometheus.GaugeValue, float64(t.MaxEntries), s.Name, t.Endpoint)
		}
		if s.EventsLost != nil {
			ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(*s.EventsLost), s.Name)
		}
		rcs, err := hc.h.RuleCounts(s.Name)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(descRulePackets, err)
			continue
		}
		drops := map[string]uint64{}
		for _, r := range rcs {
			line := ""
			if r.Line > 0 {
				line = strconv.Itoa(r.Line)
			}
			labels := []string{s.Name, strconv.FormatUint(uint64(r.ID), 10), r.Name, r.File, line, r.Policy, r.Verdict}
			ch <- prometheus.MustNewConstMetric(descRulePackets, prometheus.CounterValue, float64(r.Packets), labels...)
			ch <- prometheus.MustNewConstMetric(descRuleBytes, prometheus.CounterValue, float64(r.Bytes), labels...)
			if r.Verdict == "deny" {
				reason := r.Name
				if reason == "" {
					reason = "rule"
				}
				drops[reason] += r.Packets
			}
		}
		for reason, n := range drops {
			ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(n), s.Name, reason)
		}
	}
}
