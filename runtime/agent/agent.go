package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/polc-dev/polc/runtime"
)

// DefaultDebounce is how long the agent waits after a change for more
// before it compiles: a rollout changes many pods at once.
const DefaultDebounce = 100 * time.Millisecond

// DefaultResync is Config.Resync's default.
const DefaultResync = 10 * time.Second

// Config is what an Agent needs.
type Config struct {
	// Node is this node's name (spec.nodeName of its pods).
	Node string
	// Name is the name the bundle is loaded under (polc status NAME).
	Name string
	// Host loads, applies, attaches and detaches.
	Host *runtime.Host
	// Client reads Pods, Namespaces and NetworkPolicies.
	Client kubernetes.Interface
	// Dynamic reads CiliumNetworkPolicies and
	// CiliumClusterwideNetworkPolicies; nil when the cluster does not
	// serve them (see CiliumServed).
	Dynamic dynamic.Interface
	// Debounce is the wait after a change (0: DefaultDebounce).
	Debounce time.Duration
	// Resync runs a round this long after the last one even without a
	// change (0: DefaultResync), for what no watch event announces: a
	// pod's interface that was not there yet, an attach that failed.
	Resync time.Duration
	// Iface finds a local pod's host-side interface (nil: RouteIface with
	// no pattern).
	Iface IfaceFinder
	// Compiler is the version bundles record (manifest.json "compiler").
	Compiler string
	// InNetns runs fn in the host's network namespace, where the pods'
	// host-side interfaces are (nil: fn runs on the calling thread, whose
	// namespace is the process's). Tests run the agent in a namespace of
	// their own.
	InNetns func(fn func() error) error
	// Log receives what the agent does (nil: slog.Default()).
	Log *slog.Logger
}

// Agent keeps one node's bundle in step with the cluster. Make one with
// New and run it with Run.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	kick    chan struct{}
	factory informers.SharedInformerFactory
	dynamic dynamicinformer.DynamicSharedInformerFactory

	mu     sync.Mutex
	status Status
	// attached is what this agent has attached: interface → endpoint
	// (only the reconcile loop touches it).
	attached map[string]string
	// unattached is the local pods whose interface was not found, and
	// why (logged when it appears or changes).
	unattached map[string]string
	loaded     bool
}

// New checks cfg and returns an Agent that does nothing until Run.
func New(cfg Config) (*Agent, error) {
	if cfg.Node == "" {
		return nil, errors.New("agent: no node name (--node, or NODE_NAME from the downward API)")
	}
	if err := runtime.ValidName(cfg.Name); err != nil {
		return nil, err
	}
	if cfg.Host == nil || cfg.Client == nil {
		return nil, errors.New("agent: a Host and a Kubernetes client are required")
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Resync <= 0 {
		cfg.Resync = DefaultResync
	}
	if cfg.Iface == nil {
		cfg.Iface = RouteIface{}
	}
	if cfg.InNetns == nil {
		cfg.InNetns = func(fn func() error) error { return fn() }
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	a := &Agent{
		cfg: cfg, log: log, kick: make(chan struct{}, 1), attached: map[string]string{},
		status: Status{Node: cfg.Node, Name: cfg.Name},
	}
	return a, nil
}

// Run watches the cluster and enforces its policy on this node until ctx
// is done. It never unloads nor detaches on the way out: whatever was
// applied last stays pinned and in force (docs/agent.md). A bundle this
// name already runs (an earlier agent's) stays in force until the first
// successful compile replaces it.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.adopt(); err != nil {
		return err
	}
	a.factory = informers.NewSharedInformerFactory(a.cfg.Client, 0)
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.trigger() },
		UpdateFunc: func(any, any) { a.trigger() },
		DeleteFunc: func(any) { a.trigger() },
	}
	var synced []cache.InformerSynced
	for _, inf := range []cache.SharedIndexInformer{
		a.factory.Core().V1().Namespaces().Informer(),
		a.factory.Core().V1().Pods().Informer(),
		a.factory.Networking().V1().NetworkPolicies().Informer(),
	} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
		synced = append(synced, inf.HasSynced)
	}
	if a.cfg.Dynamic != nil {
		a.dynamic = dynamicinformer.NewDynamicSharedInformerFactory(a.cfg.Dynamic, 0)
		for _, gvr := range []schema.GroupVersionResource{CiliumNetworkPolicies, CiliumClusterwideNetworkPolicies} {
			inf := a.dynamic.ForResource(gvr).Informer()
			if _, err := inf.AddEventHandler(handler); err != nil {
				return err
			}
			synced = append(synced, inf.HasSynced)
		}
	}
	a.factory.Start(ctx.Done())
	defer a.factory.Shutdown()
	if a.dynamic != nil {
		a.dynamic.Start(ctx.Done())
		defer a.dynamic.Shutdown()
	}
	a.log.Info("waiting for the informers to sync", "node", a.cfg.Node)
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil // ctx done
	}
	a.mu.Lock()
	a.status.Synced = true
	a.mu.Unlock()
	a.trigger()
	resync := time.NewTimer(a.cfg.Resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			a.log.Info("stopping; the bundle stays pinned and in force", "name", a.cfg.Name)
			return nil
		case <-a.kick:
		case <-resync.C:
		}
		// Debounce: gather what else changes meanwhile into this round.
		t := time.NewTimer(a.cfg.Debounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		select {
		case <-a.kick: // a change during the wait is in this round already
		default:
		}
		a.round()
		resync.Reset(a.cfg.Resync)
	}
}

func (a *Agent) trigger() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// adopt takes over what an earlier run left: the bundle stays in force
// and its tc attachments are remembered, to be kept or detached by the
// first round.
func (a *Agent) adopt() error {
	sts, err := a.cfg.Host.Status(a.cfg.Name)
	if errors.Is(err, runtime.ErrNotLoaded) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("status of %s: %w", a.cfg.Name, err)
	}
	st := sts[0]
	a.loaded = true
	for _, at := range st.Attachments {
		if at.Endpoint != "" {
			a.attached[at.Iface] = at.Endpoint
		}
	}
	a.mu.Lock()
	a.status.BundleDigest = digestPrefix + st.BundleDigest
	a.status.Generation = st.Generation
	a.status.Adopted = true
	a.mu.Unlock()
	a.log.Info("keeping the bundle in force until the first compile", "name", a.cfg.Name, "bundle", st.BundleDigest, "generation", st.Generation, "attachments", len(a.attached))
	return nil
}

// snapshot lists the informers' caches.
func (a *Agent) snapshot() (*snapshot, error) {
	var s snapshot
	var err error
	if s.namespaces, err = a.factory.Core().V1().Namespaces().Lister().List(labels.Everything()); err != nil {
		return nil, err
	}
	if s.pods, err = a.factory.Core().V1().Pods().Lister().List(labels.Everything()); err != nil {
		return nil, err
	}
	if s.netpols, err = a.factory.Networking().V1().NetworkPolicies().Lister().List(labels.Everything()); err != nil {
		return nil, err
	}
	if a.dynamic != nil {
		for _, gvr := range []schema.GroupVersionResource{CiliumNetworkPolicies, CiliumClusterwideNetworkPolicies} {
			objs, err := a.dynamic.ForResource(gvr).Lister().List(labels.Everything())
			if err != nil {
				return nil, err
			}
			for _, o := range objs {
				if u, ok := o.(*unstructured.Unstructured); ok {
					s.cilium = append(s.cilium, u)
				}
			}
		}
	}
	return &s, nil
}

// CiliumServed reports whether the API server serves cilium.io/v2 (the
// Cilium CRDs are installed): without them, informers on their resources
// would never sync.
func CiliumServed(d discovery.DiscoveryInterface) (bool, error) {
	_, err := d.ServerResourcesForGroupVersion(CiliumNetworkPolicies.GroupVersion().String())
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("discover %s: %w", CiliumNetworkPolicies.GroupVersion(), err)
}
