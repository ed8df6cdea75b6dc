package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/dsl/k8s"
	"github.com/spf13/cobra"
)

// inputFlags are the flags every command that reads policy has.
type inputFlags struct {
	k8s         bool     // read Kubernetes/Cilium objects instead of polc files
	importRoots []string // directories imports may reach besides the file's own tree
	dropTunnels bool     // ir.Program.DropTunnels
	audit       bool     // every policy in audit mode
	// placeholders gives Kubernetes objects without an address (manifests)
	// made-up addresses (k8s.Options.Placeholders): for commands that
	// reason about policy, never for those that build a bundle.
	placeholders bool
	stdin        io.Reader     // read for the FILE "-" with --k8s
	namespace    string        // --namespace: of Kubernetes objects that name none
	recursive    bool          // -R: a directory's subdirectories too
	node         string        // --node: the node whose bundle this is (k8s.Options.Node)
	objects      int           // Kubernetes objects read, for check's summary
	services     *k8s.Services // the Kubernetes Services read, for flows and matrices
}

// k8sOptions are the reader options the flags ask for.
func (in *inputFlags) k8sOptions() k8s.Options {
	return k8s.Options{Placeholders: in.placeholders, Namespace: in.namespace, Recursive: in.recursive, Stdin: in.stdin, Objects: &in.objects, Node: in.node, Services: &in.services}
}

// checkInputs is checkInputs for this command's inputs, which with --k8s
// may be "-" and directories; it also takes the command's standard input.
func (in *inputFlags) checkInputs(c *cobra.Command, paths []string) error {
	in.stdin = c.InOrStdin()
	if !in.k8s && (in.namespace != "" || in.recursive) {
		return usageError("--namespace and --recursive need --k8s")
	}
	if !in.k8s && c.Flags().Changed("node") {
		return usageError("--node needs --k8s (in policy files, write remote endpoints as `endpoint NAME remote ...`)")
	}
	if c.Flags().Changed("node") && in.node == "" {
		return usageError("--node needs a node name")
	}
	return checkInputsOf(in.k8s, paths)
}

func addInputFlags(c *cobra.Command, in *inputFlags) {
	c.Flags().BoolVar(&in.k8s, "k8s", false,
		"read Kubernetes objects (NetworkPolicy, CiliumNetworkPolicy, ClusterNetworkPolicy, AdminNetworkPolicy, Pod, workloads such as Deployment, Namespace, Node, Service with EndpointSlices; multi-document YAML or v1 List); FILE may be a directory or - (standard input)")
	c.Flags().StringVarP(&in.namespace, "namespace", "n", "",
		"with --k8s: the namespace of objects that name none (default \"default\")")
	c.Flags().BoolVarP(&in.recursive, "recursive", "R", false,
		"with --k8s: read the subdirectories of a directory FILE too")
	c.Flags().StringVar(&in.node, "node", "",
		"with --k8s: the bundle of node `NAME`: pods whose spec.nodeName is NAME are local endpoints, every other pod a remote one (a peer only)")
	c.Flags().BoolVar(&in.audit, "audit", false,
		"put every policy in audit mode: what they would deny passes and is reported (polc monitor: audit events), nothing is enforced; refused with tiered policies")
	c.Flags().BoolVar(&in.dropTunnels, "drop-tunnels", false,
		"drop tunnel protocols (IP in IP, IPv6 in IP, GRE, EtherIP, L2TPv3, MPLS in IP) at every endpoint, whatever the policy says")
	c.Flags().StringSliceVar(&in.importRoots, "import-root", nil,
		"a directory whose policy files imports may name, besides the directory tree of each file on the command line (repeatable)")
}

// checkInputs checks that every file named on the command line can be read,
// before the command reads or writes anything. One that cannot is a usage
// error, exit 2, as a wrong argument is; whereas a file that an import
// names is the policy's business, a diagnostic at the import (exit 1).
func checkInputs(paths ...string) error {
	return checkInputsOf(false, paths)
}

// checkInputsOf is checkInputs; Kubernetes inputs may also be "-"
// (standard input) and directories.
func checkInputsOf(k8sInputs bool, paths []string) error {
	for _, p := range paths {
		if k8sInputs && p == "-" {
			continue
		}
		f, err := os.Open(p)
		if err == nil {
			var info fs.FileInfo
			info, err = f.Stat()
			f.Close()
			if err == nil && info.IsDir() && !k8sInputs {
				err = errors.New("is a directory")
			}
		}
		if err != nil {
			return inputError(p, err)
		}
	}
	return nil
}

// inputError is the error for a file named on the command line that cannot
// be read: "polc: FILE: REASON" (the OS's reason, without the system call),
// exit 2. Every command that reads policy files says it so.
func inputError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return usageError("%s: %v", path, err)
}

// load compiles the files named on the command line into the IR, from
// polc sources (following imports) or from Kubernetes objects.
func (in *inputFlags) load(paths []string) (*ir.Program, compiler.Sources, dsl.Diagnostics) {
	prog, srcs, diags := in.loadFiles(paths)
	if prog != nil {
		prog.DropTunnels = in.dropTunnels
		if in.audit {
			// audit of tiered policies is not supported (the checker
			// refuses `audit` on them too): --audit would leave them
			// enforcing while promising that nothing is.
			var tiered dsl.Diagnostics
			for _, p := range prog.Policies {
				if p.Tier != dsl.TierNone {
					tiered.Errorf(p.Pos, "--audit: policy %q is in tier %s, and audit of tiered policies is not supported: build without --audit, and write `audit` on the untiered policies to audit", p.Name, p.Tier)
				}
			}
			if len(tiered) > 0 {
				tiered.Sort()
				return nil, srcs, append(diags, tiered...)
			}
			for _, p := range prog.Policies {
				p.Audit = true
			}
			for _, r := range prog.Rules {
				r.Audit = true
			}
		}
	}
	return prog, srcs, diags
}

func (in *inputFlags) loadFiles(paths []string) (*ir.Program, compiler.Sources, dsl.Diagnostics) {
	if !in.k8s {
		return compiler.LoadWith(paths, compiler.LoadOptions{ImportRoots: in.importRoots})
	}
	files, contents, diags := k8s.ReadPaths(paths, in.k8sOptions())
	srcs := compiler.Sources(contents)
	if diags.HasErrors() {
		return nil, srcs, diags
	}
	prog, more := compiler.Compile(files, srcs)
	return prog, srcs, append(diags, more...)
}

// compile checks and loads the files and returns the program, after
// printing any warnings to stderr; with errors it prints them and returns
// quietFailure (an unreadable FILE is a usage error; see checkInputs).
// out is the command's -o flag (nil if it has none): with -o json the
// errors go to stdout as check -o json prints them, so that stdout is
// always JSON.
func (in *inputFlags) compile(c *cobra.Command, out *outputFlag, paths []string) (*ir.Program, error) {
	if err := in.checkInputs(c, paths); err != nil {
		return nil, err
	}
	prog, srcs, diags := in.load(paths)
	return compiled(c, out, prog, srcs, diags)
}

// compiled is compile's second half, for callers that load differently.
func compiled(c *cobra.Command, out *outputFlag, prog *ir.Program, srcs compiler.Sources, diags dsl.Diagnostics) (*ir.Program, error) {
	if out == nil {
		out = &outputFlag{format: "text"}
	}
	if diags.HasErrors() || prog == nil {
		if err := reportDiagnostics(c, out, srcs, diags); err != nil {
			return nil, err
		}
		return nil, quietFailure
	}
	diags.Sort()
	fmt.Fprint(c.ErrOrStderr(), diags.Format(func(f string) []byte { return srcs[f] }))
	return prog, nil
}
