package k8s_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/compiler/lower"
	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/dsl/k8s"
	"github.com/polc-dev/polc/golden"
	"github.com/polc-dev/polc/runtime/harness"
)

// The two nodes a scenario whose pods name no node is split over.
var splitNodes = []string{"n1", "n2"}

// split is one scenario compiled whole (every pod local) and once per
// node (k8s.Options.Node). A scenario whose pods all carry spec.nodeName
// (one with Node objects, where host and remote-node depend on it) keeps
// its placement; otherwise the pods are assigned to splitNodes
// alternately in endpoint name order by writing their spec.nodeName (a
// workload's pod template's) into the input files.
type split struct {
	whole *ir.Program
	names []string            // the nodes, by nodes
	nodes []*ir.Program       // by names
	node  map[string]string   // endpoint name → its node
	local map[string][]string // node → its endpoints, sorted
}

func splitScenario(t *testing.T, path string) *split {
	t.Helper()
	placed := map[string]string{}
	// The whole program reads the files encoded again as the nodes' do, so
	// that rules sit at the same positions in all of them.
	whole := compileScenarioWith(t, path, k8s.Options{Placeholders: true}, func(p string, src []byte) []byte {
		return readNodes(t, p, src, placed)
	})
	s := &split{whole: whole, node: map[string]string{}, local: map[string][]string{}}
	keep := true
	for _, e := range s.whole.Endpoints {
		keep = keep && placed[e.Name] != ""
	}
	for i, e := range s.whole.Endpoints {
		n := splitNodes[i%len(splitNodes)]
		if keep {
			n = placed[e.Name]
		}
		s.node[e.Name] = n
		if len(s.local[n]) == 0 {
			s.names = append(s.names, n)
		}
		s.local[n] = append(s.local[n], e.Name)
	}
	slices.Sort(s.names)
	for _, n := range s.names {
		p := compileScenarioWith(t, path, k8s.Options{Placeholders: true, Node: n}, func(p string, src []byte) []byte {
			return assignNodes(t, p, src, s.node)
		})
		if len(p.Endpoints) != len(s.whole.Endpoints) {
			t.Fatalf("node %s: %d endpoints, the whole cluster has %d", n, len(p.Endpoints), len(s.whole.Endpoints))
		}
		for i, e := range p.Endpoints {
			w := s.whole.Endpoints[i]
			if e.Name != w.Name || !slices.Equal(e.Addrs, w.Addrs) || e.Remote != (s.node[e.Name] != n) {
				t.Fatalf("node %s: endpoint %s %v remote %v, whole %s %v on %s", n, e.Name, e.Addrs, e.Remote, w.Name, w.Addrs, s.node[w.Name])
			}
		}
		s.nodes = append(s.nodes, p)
	}
	return s
}

// assignNodes writes spec.nodeName into every Pod and workload of a
// Kubernetes file that has none: node[endpoint name]. Other files (and
// objects) are left as they are.
func assignNodes(t *testing.T, path string, src []byte, node map[string]string) []byte {
	t.Helper()
	return editObjects(t, path, src, func(o *yaml.Node) {
		if ep, spec := podSpec(o); spec != nil && scalar(spec, "nodeName") == "" && node[ep] != "" {
			spec.Content = append(spec.Content,
				&yaml.Node{Kind: yaml.ScalarNode, Value: "nodeName"}, &yaml.Node{Kind: yaml.ScalarNode, Value: node[ep]})
		}
	})
}

// readNodes records the spec.nodeName of every Pod and workload of a
// Kubernetes file that has one, by endpoint name, and returns the file
// encoded again.
func readNodes(t *testing.T, path string, src []byte, node map[string]string) []byte {
	t.Helper()
	return editObjects(t, path, src, func(o *yaml.Node) {
		if ep, spec := podSpec(o); spec != nil {
			if n := scalar(spec, "nodeName"); n != "" {
				node[ep] = n
			}
		}
	})
}

// editObjects calls edit on every object of a Kubernetes file (the items
// of a List) and returns the file encoded again.
func editObjects(t *testing.T, path string, src []byte, edit func(o *yaml.Node)) []byte {
	t.Helper()
	if !strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml") {
		return src
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		root := doc.Content[0]
		objs := []*yaml.Node{root}
		if scalar(root, "kind") == "List" {
			objs = mapping(root, "items").Content
		}
		for _, o := range objs {
			edit(o)
		}
		if err := enc.Encode(&doc); err != nil {
			t.Fatal(err)
		}
	}
	enc.Close()
	return out.Bytes()
}

// The short names of workload kinds in endpoint names (NS.deploy/NAME).
var workloadShort = map[string]string{
	"Deployment": "deploy", "ReplicaSet": "rs", "StatefulSet": "sts", "DaemonSet": "ds",
	"Job": "job", "CronJob": "cronjob",
}

// podSpec returns the endpoint name and the pod spec of a Pod or
// workload object (nil for other kinds).
func podSpec(o *yaml.Node) (string, *yaml.Node) {
	meta := mapping(o, "metadata")
	ns, name := scalar(meta, "namespace"), scalar(meta, "name")
	if ns == "" {
		ns = "default"
	}
	var spec *yaml.Node
	ep := k8s.EndpointName(ns, name)
	switch kind := scalar(o, "kind"); kind {
	case "Pod":
		spec = mapping(o, "spec")
	case "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob":
		tmpl := mapping(o, "spec")
		if kind == "CronJob" {
			tmpl = mapping(mapping(tmpl, "jobTemplate"), "spec")
		}
		spec = mapping(mapping(tmpl, "template"), "spec")
		ep = k8s.EndpointName(ns, workloadShort[kind]+"/"+name)
	}
	return ep, spec
}

// mapping returns the mapping under key of n, created when missing.
func mapping(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	m := &yaml.Node{Kind: yaml.MappingNode}
	n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, m)
	return m
}

func scalar(n *yaml.Node, key string) string {
	if n == nil || n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1].Value
		}
	}
	return ""
}

// hookDecision is one hook's decision on a packet: the endpoint the hook
// belongs to, its direction, verdict and rule.
type hookDecision struct {
	endpoint string
	dir      dsl.Direction
	verdict  dsl.Verdict
	rule     string // ruleAt's
}

func (h hookDecision) String() string {
	return fmt.Sprintf("%s %s %s (%s)", h.endpoint, h.dir, h.verdict, h.rule)
}

// ruleAt names a rule by its source position, reserved ones by name: the
// single bundle numbers its rules apart from a node's (rules naming host
// or remote-node are split per node there, and not in a node's bundle).
func ruleAt(p *ir.Program, id ir.RuleID) string {
	if r := harness.LookupRule(p, id); r != nil {
		return r.Pos.String()
	}
	return harness.RuleName(id)
}

// nodeStep is what one node's bundle did with one step: the hooks that saw
// it, in order. None: not this node's business.
type nodeStep []hookDecision

// compareSplit checks one test step: wholeHooks is what the single bundle
// decided at each hook, byNode what each node's bundle decided at its
// hooks. Every hook must run on the node of its endpoint only, the hooks
// of all nodes together must be the single bundle's with the same
// decisions, and the packet's verdict (it passes when every hook passes
// it) must be want.
func (s *split) compareSplit(want dsl.Verdict, wholeHooks nodeStep, byNode []nodeStep) []string {
	var problems []string
	var all nodeStep
	verdict := dsl.VerdictAllow
	for i, hs := range byNode {
		for _, h := range hs {
			if s.node[h.endpoint] != s.names[i] {
				problems = append(problems, fmt.Sprintf("node %s runs a hook of %s, which is on %s", s.names[i], h.endpoint, s.node[h.endpoint]))
			}
			if h.verdict == dsl.VerdictDeny {
				verdict = dsl.VerdictDeny
			}
			all = append(all, h)
		}
	}
	if verdict != want {
		problems = append(problems, fmt.Sprintf("split verdict %s, single bundle %s", verdict, want))
	}
	order := func(a, b hookDecision) int { return strings.Compare(a.String(), b.String()) }
	all, wholeSorted := slices.Clone(all), slices.Clone(wholeHooks)
	slices.SortFunc(all, order)
	slices.SortFunc(wholeSorted, order)
	if !slices.Equal(all, wholeSorted) {
		problems = append(problems, fmt.Sprintf("hooks of the nodes %v, of the single bundle %v", byNode, wholeHooks))
	}
	return problems
}

func refHooks(prog *ir.Program, r eval.Result) nodeStep {
	var out nodeStep
	for _, p := range r.Points {
		out = append(out, hookDecision{p.Subject.Name, p.Dir, p.Verdict, ruleAt(prog, p.Rule)})
	}
	return out
}

// evalSplit runs every test of the scenario through the evaluator of the
// single program and of each node's, each with its own connection state,
// and compares every step.
func (s *split) evalSplit() []string {
	var problems []string
	whole := eval.New(s.whole)
	nodes := make([]*eval.Evaluator, len(s.nodes))
	for i, p := range s.nodes {
		nodes[i] = eval.New(p)
	}
	for ti, test := range s.whole.Tests {
		ct := eval.NewConntrack()
		cts := make([]*eval.Conntrack, len(nodes))
		for i := range cts {
			cts[i] = eval.NewConntrack()
		}
		for si, st := range test.Steps {
			w := whole.Eval(ct, harness.CaseFromIR(whole, st.Packet).Ref)
			byNode := make([]nodeStep, len(nodes))
			for i, ev := range nodes {
				// the node program's own test: the same packet
				pkt := s.nodes[i].Tests[ti].Steps[si].Packet
				byNode[i] = refHooks(s.nodes[i], ev.Eval(cts[i], harness.CaseFromIR(ev, pkt).Ref))
			}
			for _, p := range s.compareSplit(w.Verdict, refHooks(s.whole, w), byNode) {
				problems = append(problems, fmt.Sprintf("%s: %s: step %d: %s", st.Pos, test.Name, si+1, p))
			}
		}
	}
	return problems
}

// TestScenariosSplit is the split equivalence: every testdata/k8s
// scenario, its pods split over two nodes, gives in the evaluator at every
// cell (and reply) of its matrix the single bundle's decision at each
// hook, each hook running on its endpoint's node only, so the verdict
// (egress at the sender's node and ingress at the receiver's) is the
// single bundle's.
func TestScenariosSplit(t *testing.T) {
	for _, path := range scenarioPaths(t) {
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) {
			s := splitScenario(t, path)
			report(t, s.evalSplit())
		})
	}
}

// TestScenariosSplitCatchesMistakes: the split check fails when a node
// bundle is built wrongly: with every endpoint local (hooks on a node for
// pods that are not there) or without the remote endpoints (other nodes'
// pods would be world, so selectors would miss them).
func TestScenariosSplitCatchesMistakes(t *testing.T) {
	mistakes := map[string]func(p *ir.Program){
		"remote endpoints made local": func(p *ir.Program) {
			for _, e := range p.Endpoints {
				e.Remote = false
			}
		},
		"remote endpoints dropped": func(p *ir.Program) {
			p.Endpoints = slices.DeleteFunc(p.Endpoints, func(e *ir.Endpoint) bool { return e.Remote })
		},
	}
	for name, mistake := range mistakes {
		caught := 0
		for _, path := range scenarioPaths(t) {
			s := splitScenario(t, path)
			for _, p := range s.nodes {
				mistake(p)
			}
			if len(s.evalSplit()) > 0 {
				caught++
			}
		}
		if caught == 0 {
			t.Errorf("%s: no scenario's split check fails", name)
		}
		t.Logf("%s: caught in %d scenarios", name, caught)
	}
}

// TestScenariosSplitKernel is TestScenariosSplit in the kernel: each
// node's bundle is loaded and every step runs through its programs
// (BPF_PROG_TEST_RUN via the harness, which also compares each node's
// kernel with its evaluator); the hooks of both nodes together must
// decide as the single bundle's evaluator does. The bundles of a node
// list exactly that node's pods in endpoints.json.
func TestScenariosSplitKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("BPF tests need root, and CI=true forbids skipping them")
		}
		t.Skip("BPF tests need root (set CI=true to make this a failure)")
	}
	for _, path := range scenarioPaths(t) {
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) {
			s := splitScenario(t, path)
			var results [][]harness.TestResult
			for i, p := range s.nodes {
				b, err := lower.Build(p, bpf.Object(), lower.Options{Compiler: "test"})
				if err != nil {
					t.Fatalf("lower: %v", err)
				}
				var names []string
				for _, e := range b.Endpoints {
					names = append(names, e.Name)
				}
				if !slices.Equal(names, s.local[s.names[i]]) {
					t.Errorf("node %s: endpoints.json %v, want %v", s.names[i], names, s.local[s.names[i]])
				}
				k, err := harness.Open(b)
				if err != nil {
					t.Fatalf("load: %v", err)
				}
				res, err := harness.RunTests(p, eval.New(p), harness.RunOptions{Kernel: k})
				k.Close()
				if err != nil {
					t.Fatal(err)
				}
				results = append(results, res)
			}
			whole := eval.New(s.whole)
			var problems []string
			steps := 0
			for ti, test := range s.whole.Tests {
				ct := eval.NewConntrack()
				for si, st := range test.Steps {
					w := whole.Eval(ct, harness.CaseFromIR(whole, st.Packet).Ref)
					byNode := make([]nodeStep, len(s.nodes))
					for i, res := range results {
						sr := res[ti].Steps[si]
						for _, p := range sr.Problems {
							problems = append(problems, fmt.Sprintf("%s: %s: step %d: node %s: %s", st.Pos, test.Name, si+1, s.names[i], p))
						}
						nev := eval.New(s.nodes[i])
						for _, kp := range sr.Kernel.Points {
							r := nev.Resolve(kp.Subject)
							if r.Kind != eval.ResolvedEndpoint {
								problems = append(problems, fmt.Sprintf("node %s: a hook of %s, no endpoint", s.names[i], kp.Subject))
								continue
							}
							byNode[i] = append(byNode[i], hookDecision{r.Endpoint.Name, kp.Dir, kp.Verdict, ruleAt(s.nodes[i], kp.Rule)})
						}
					}
					steps++
					for _, p := range s.compareSplit(w.Verdict, refHooks(s.whole, w), byNode) {
						problems = append(problems, fmt.Sprintf("%s: %s: step %d: kernel: %s", st.Pos, test.Name, si+1, p))
					}
				}
			}
			report(t, problems)
			t.Logf("%d steps checked through both nodes' kernel programs", steps)
		})
	}
}

func scenarioPaths(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob("../../testdata/k8s/*/reach.txt")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no scenarios found: %v", err)
	}
	return paths
}

func report(t *testing.T, problems []string) {
	t.Helper()
	for i, p := range problems {
		if i == 20 {
			t.Errorf("... %d problems in all", len(problems))
			break
		}
		t.Error(p)
	}
}

// TestSplitGolden pins the bundles of the starwars scenario split over two
// nodes (golden/k8s/split/starwars-NODE.txt, `polc inspect`'s dump), and
// checks that a node bundle is deterministic: compiled again, it has the
// same digest, and it differs from the other node's. The bundles carry a
// fixed stand-in for the BPF object (as golden/bundle's do), so that the
// goldens change with the policy's encoding, not with every rebuild of
// the datapath.
func TestSplitGolden(t *testing.T) {
	object := []byte("polc golden test object\n")
	path := "../../testdata/k8s/starwars/reach.txt"
	s := splitScenario(t, path)
	again := splitScenario(t, path)
	digests := map[string]string{}
	for i, p := range s.nodes {
		b, err := lower.Build(p, object, lower.Options{Compiler: "golden"})
		if err != nil {
			t.Fatal(err)
		}
		b2, err := lower.Build(again.nodes[i], object, lower.Options{Compiler: "golden"})
		if err != nil {
			t.Fatal(err)
		}
		d, err := b.RootDigest()
		if err != nil {
			t.Fatal(err)
		}
		d2, err := b2.RootDigest()
		if err != nil {
			t.Fatal(err)
		}
		if d != d2 {
			t.Errorf("node %s: digests %q and %q of the same input", s.names[i], d, d2)
		}
		if other, ok := digests[d]; ok {
			t.Errorf("nodes %s and %s have the same bundle", other, s.names[i])
		}
		digests[d] = s.names[i]
		golden.Check(t, "k8s/split/starwars-"+s.names[i]+".txt", []byte(b.Text()))
	}
}
