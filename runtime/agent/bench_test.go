package agent

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// BenchmarkAgentLatency measures how long a NetworkPolicy change takes
// to be enforced: from the Update call on the (fake) API to the agent
// reporting the new bundle in force, over b.N changes (run with
// -benchtime=50x). It reports the p50 and p99 of that latency, and as the
// baselines of the same run the p50 of the rounds' own time (compile,
// apply, attach; the rest is the debounce and the informer's delivery)
// and of its compile part (the rest of a round is the kernel's).
// The cluster is the three local pods plus remote pods (other nodes) and
// extra policies, to give the compiler some work.
func BenchmarkAgentLatency(b *testing.B) {
	for _, size := range []struct{ remote, policies int }{{0, 0}, {300, 30}} {
		for _, debounce := range []time.Duration{10 * time.Millisecond, DefaultDebounce} {
			b.Run(fmt.Sprintf("remote=%d/policies=%d/debounce=%v", size.remote, size.policies, debounce), func(b *testing.B) {
				benchLatency(b, size.remote, size.policies, debounce)
			})
		}
	}
}

func benchLatency(b *testing.B, remote, policies int, debounce time.Duration) {
	w := newWorld(b, 0, 1, 2)
	ctx := context.Background()
	for i := range remote {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("r%d", i), Namespace: testNS, Labels: map[string]string{"app": fmt.Sprintf("svc%d", i%policies+1)}},
			Spec:       corev1.PodSpec{NodeName: "node-b", Containers: []corev1.Container{{Name: "c"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.202.%d.%d", i/250, i%250+1)},
		}
		if _, err := w.client.CoreV1().Pods(testNS).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range policies {
		np := apiIngress(fmt.Sprintf("svc%d", (i+1)%policies+1))
		np.Name = fmt.Sprintf("svc%d", i+1)
		np.Spec.PodSelector.MatchLabels = map[string]string{"app": np.Name}
		if _, err := w.client.NetworkingV1().NetworkPolicies(testNS).Create(ctx, np, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	netpols := w.client.NetworkingV1().NetworkPolicies(testNS)
	if _, err := netpols.Create(ctx, apiIngress("web"), metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	w.debounce = debounce
	w.start()
	var lat, rounds, compiles []time.Duration
	b.ResetTimer()
	for i := range b.N {
		np := apiIngress("web")
		port := intstr.FromInt32(int32(9000 + i))
		np.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{{Port: &port}}
		before := w.agent.Status().BundleDigest
		t0 := time.Now()
		if _, err := netpols.Update(ctx, np, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		s := w.waitFor("enforce the change", func(s Status) bool { return s.Ready() && s.BundleDigest != before })
		lat = append(lat, time.Since(t0))
		rounds = append(rounds, s.LastRound)
		compiles = append(compiles, s.LastCompile)
	}
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(rounds)
	slices.Sort(compiles)
	pct := func(d []time.Duration, p float64) float64 {
		return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(lat, 0.50), "p50-ms")
	b.ReportMetric(pct(lat, 0.99), "p99-ms")
	b.ReportMetric(pct(rounds, 0.50), "round-p50-ms")
	b.ReportMetric(pct(compiles, 0.50), "compile-p50-ms")
	b.ReportMetric(0, "ns/op")
}
