package agent

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Status is what the agent enforces and how its last round went.
type Status struct {
	Node string `json:"node"`
	Name string `json:"name"` // the bundle's name (polc status NAME)
	// Synced: the informers have listed the cluster once.
	Synced bool `json:"synced"`
	// Applied: a round compiled and applied the cluster's policy.
	Applied bool `json:"applied"`
	// Adopted: the bundle in force is an earlier run's, kept until the
	// first round succeeds.
	Adopted bool `json:"adopted,omitempty"`
	// BundleDigest is the root digest (sha256:HEX, as polc build prints
	// it and polc status shows it) of the bundle in force, and Generation
	// its generation; empty and 0 before anything was loaded.
	BundleDigest string     `json:"bundle_digest,omitempty"`
	Generation   uint32     `json:"generation,omitempty"`
	AppliedAt    time.Time  `json:"applied_at,omitzero"`
	Attached     []Attached `json:"attached"`
	// Unattached are the local pods in the bundle whose interface the
	// agent did not find (not up yet, or a CNI it cannot follow), and why.
	Unattached []Unattached `json:"unattached,omitempty"`
	// LastError is why the last round failed (empty: it did not). The
	// bundle in force is then the last one that succeeded.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// LastRound is how long the last round took to compile, apply and
	// attach (the debounce not included).
	LastRound time.Duration `json:"last_round_ns"`
	// LastCompile is the part of LastRound spent reading the objects and
	// compiling them into a bundle; the rest is the kernel's (apply,
	// attach).
	LastCompile time.Duration `json:"last_compile_ns"`
	// LastApply is how the last round that changed the bundle put it in
	// force: "load", "full" (new programs) or "map-only" (the same
	// programs, maps rewritten); LastApplyWhy says, for "full", why it
	// could not be map-only.
	LastApply    string `json:"last_apply,omitempty"`
	LastApplyWhy string `json:"last_apply_why,omitempty"`
	Rounds       uint64 `json:"rounds"`
	Errors       uint64 `json:"errors"`
}

// Attached is an interface the agent attached, and the endpoint it serves.
type Attached struct {
	Iface    string `json:"iface"`
	Endpoint string `json:"endpoint"`
}

// Unattached is a local pod left unattached, and why.
type Unattached struct {
	Endpoint string `json:"endpoint"`
	Reason   string `json:"reason"`
}

// Ready reports whether the node enforces the cluster's current policy:
// the informers synced, a round applied it and the last round succeeded.
func (s *Status) Ready() bool { return s.Synced && s.Applied && s.LastError == "" }

// Status returns a copy of the agent's status.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.status
	s.Attached = slices.Clone(s.Attached)
	s.Unattached = slices.Clone(s.Unattached)
	if s.Attached == nil {
		s.Attached = []Attached{}
	}
	return s
}

// Handler serves the agent's health:
//
//	/healthz  200 while the process runs (liveness)
//	/readyz   200 when Ready, else 503 with the reason (readiness)
//	/status   the Status as JSON
//	/metrics  the Status as Prometheus metrics (polc_agent_*)
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics{a})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		s := a.Status()
		if s.Ready() {
			_, _ = w.Write([]byte("ok: enforcing " + s.BundleDigest + "\n"))
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		switch {
		case !s.Synced:
			_, _ = w.Write([]byte("not ready: informers not synced\n"))
		case s.LastError != "":
			_, _ = w.Write([]byte("not ready: the last round failed; enforcing " + orNone(s.BundleDigest) + ":\n" + s.LastError + "\n"))
		default:
			_, _ = w.Write([]byte("not ready: nothing applied yet\n"))
		}
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		s := a.Status()
		_ = enc.Encode(&s)
	})
	return mux
}

func orNone(d string) string {
	if d == "" {
		return "nothing"
	}
	return d
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
