package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics exposes the Status as Prometheus metrics, read at each scrape.
type metrics struct{ a *Agent }

var (
	descReady    = prometheus.NewDesc("polc_agent_ready", "1 when the node enforces the cluster's current policy (/readyz).", []string{"node"}, nil)
	descBundle   = prometheus.NewDesc("polc_agent_bundle_info", "The bundle in force (value 1), by root digest and generation.", []string{"node", "digest", "generation"}, nil)
	descRounds   = prometheus.NewDesc("polc_agent_rounds_total", "Rounds run (compile, apply, attach).", []string{"node"}, nil)
	descErrors   = prometheus.NewDesc("polc_agent_round_errors_total", "Rounds that failed, leaving the last bundle in force.", []string{"node"}, nil)
	descRound    = prometheus.NewDesc("polc_agent_last_round_seconds", "How long the last round took (compile, apply, attach).", []string{"node"}, nil)
	descAttached = prometheus.NewDesc("polc_agent_attached_interfaces", "Pod interfaces the agent has attached.", []string{"node"}, nil)
)

func (m metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReady, descBundle, descRounds, descErrors, descRound, descAttached} {
		ch <- d
	}
}

func (m metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.a.Status()
	ready := 0.0
	if s.Ready() {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready, s.Node)
	if s.BundleDigest != "" {
		ch <- prometheus.MustNewConstMetric(descBundle, prometheus.GaugeValue, 1, s.Node, s.BundleDigest, itoa(s.Generation))
	}
	ch <- prometheus.MustNewConstMetric(descRounds, prometheus.CounterValue, float64(s.Rounds), s.Node)
	ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(s.Errors), s.Node)
	ch <- prometheus.MustNewConstMetric(descRound, prometheus.GaugeValue, s.LastRound.Seconds(), s.Node)
	ch <- prometheus.MustNewConstMetric(descAttached, prometheus.GaugeValue, float64(len(s.Attached)), s.Node)
}
