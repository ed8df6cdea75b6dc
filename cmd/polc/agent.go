package main

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/polc-dev/polc/runtime"
	"github.com/polc-dev/polc/runtime/agent"
)

func newAgentCmd() *cobra.Command {
	var hf hostFlags
	var node, kubeconfig, name, listen, ifacePattern, cilium string
	var debounce, resync time.Duration
	c := &cobra.Command{
		Use:   "agent --node NAME",
		Short: "Enforce the cluster's policy on this Kubernetes node, following every change",
		Long: `agent runs on one Kubernetes node (a DaemonSet, deploy/ and docs/agent.md)
and keeps the node's bundle in step with the cluster: it watches Pods,
Namespaces, NetworkPolicies and, when the cluster serves them,
CiliumNetworkPolicies and CiliumClusterwideNetworkPolicies; after each
change (and --debounce more) it compiles them as build --k8s does, loads the
bundle under --name (apply after the first time), attaches the host-side
interface of every pod of --node as IF=NAMESPACE.POD and detaches those of
gone pods. The interface is the one the host's route to the pod's address
leaves by, which must be a veth (or match --iface-pattern).

A policy that does not compile, or an apply the kernel refuses, keeps the
bundle in force; the error is logged and /readyz reports it. The agent
never unloads: on SIGTERM or a crash the last bundle stays pinned and in
force, and the next agent adopts it until its first compile.

It serves on --health-listen: /healthz (alive), /readyz (200 once the
informers synced and the last round applied, else 503 and why), /status
(JSON: the bundle digest in force, generation, attachments, last error)
and /metrics (Prometheus, polc_agent_*). polc status shows the same
bundle. It runs until SIGTERM or SIGINT; it exits 2 when it cannot start
(no node, no cluster, not root, the health address taken).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if node == "" {
				node = os.Getenv("NODE_NAME")
			}
			if node == "" {
				return usageError("agent needs --node NAME (or NODE_NAME, from the downward API's spec.nodeName)")
			}
			if os.Geteuid() != 0 {
				return usageError("%v: polc agent needs root to load and attach BPF programs (run as root)", runtime.ErrPrivilege)
			}
			if cilium != "auto" && cilium != "on" && cilium != "off" {
				return usageError("unknown --cilium %q: want auto, on or off", cilium)
			}
			// Empty: $KUBECONFIG, else the in-cluster service account.
			if kubeconfig == "" {
				kubeconfig = os.Getenv("KUBECONFIG")
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return usageError("kubernetes client: %v", err)
			}
			client, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return usageError("kubernetes client: %v", err)
			}
			var dyn dynamic.Interface
			serve := cilium == "on"
			if cilium == "auto" {
				if serve, err = agent.CiliumServed(client.Discovery()); err != nil {
					return usageError("%v", err)
				}
			}
			if serve {
				if dyn, err = dynamic.NewForConfig(cfg); err != nil {
					return usageError("kubernetes client: %v", err)
				}
			}
			log := slog.New(slog.NewTextHandler(c.ErrOrStderr(), nil))
			a, err := agent.New(agent.Config{
				Node: node, Name: name, Host: hf.host(c), Client: client, Dynamic: dyn,
				Debounce: debounce, Resync: resync, Iface: agent.RouteIface{Pattern: ifacePattern},
				Compiler: version, Log: log,
			})
			if err != nil {
				return usageError("%v", err)
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return usageError("--health-listen %s: %v", listen, err)
			}
			log.Info("serving health", "addr", ln.Addr().String(), "cilium", serve)
			srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
			go func() { _ = srv.Serve(ln) }()
			defer srv.Close()
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := a.Run(ctx); err != nil {
				if errors.Is(err, runtime.ErrPrivilege) || runtime.IsEnvironment(err) {
					return runtimeError(err)
				}
				return failure("agent: %v", err)
			}
			return nil
		},
	}
	c.Flags().StringVar(&node, "node", "", "this node's name (default $NODE_NAME)")
	c.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, else the in-cluster service account)")
	c.Flags().StringVar(&name, "name", "polc", "name to load the bundle under (polc status NAME)")
	c.Flags().StringVar(&listen, "health-listen", ":9465", "`host:port` for /healthz, /readyz, /status and /metrics")
	c.Flags().DurationVar(&debounce, "debounce", agent.DefaultDebounce, "wait this long after a change for more before compiling")
	c.Flags().DurationVar(&resync, "resync", agent.DefaultResync, "run a round this long after the last one even without a change")
	c.Flags().StringVar(&ifacePattern, "iface-pattern", "", "`glob` the interface of the route to a pod must match (e.g. cali*), instead of being a veth")
	c.Flags().StringVar(&cilium, "cilium", "auto", "watch Cilium policies: auto (if the cluster serves cilium.io/v2), on, off")
	addHostFlags(c, &hf)
	return c
}
