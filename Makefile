# polc — build, test and demo targets. Every target installs what it needs.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
BIN := bin/polc
# Debian packages the tests and BPF code generation need.
APT_PKGS := clang-19 llvm-19 libbpf-dev iproute2 bpftool iptables ipset nftables
FUZZTIME ?= 10s
LONG_FUZZTIME ?= 5m
# package:FuzzTarget pairs that `make test` runs briefly and `make fuzz` long.
FUZZ_TARGETS := dsl:FuzzParse dsl:FuzzFastPath dsl:FuzzParseYAML dsl:FuzzYAMLNamesAndLabels compiler:FuzzCompile dsl/k8s:FuzzRead

.PHONY: bench difftest all build test unit vet fmt-check fuzz fuzz-short golden demo deps bpf bpf-check clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/polc

# deps installs the Debian packages that are missing (needs root).
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (install them as root)"; exit 2; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# test is what CI runs: formatting, vet, every test (BPF ones for real as
# root), short fuzzing, and a check that generated BPF code is up to date.
test: deps fmt-check vet unit fuzz-short bpf-check

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -timeout 40m ./...

# A failing target runs once more: Go's fuzzer can end a run with "context
# deadline exceeded" when its deadline falls while it minimizes a new input
# on a loaded machine, while a real failure saves its input under
# testdata/fuzz and fails again at once on the rerun.
fuzz-short:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "fuzz $$fn ($(FUZZTIME))"; \
	  $(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) ./$$pkg || \
	  { echo "fuzz $$fn: failed, running it once more"; \
	    $(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) ./$$pkg; } || exit 1; done

fuzz:
	$(MAKE) fuzz-short FUZZTIME=$(LONG_FUZZTIME)

# golden rewrites every golden file from the current code; review the diff.
golden:
	POLC_UPDATE_GOLDEN=1 $(GO) test -count=1 ./...

# demo runs polc's main job on the bundled example: check it, build the
# bundle, run its tests in the kernel (BPF_PROG_TEST_RUN; needs root),
# explain one verdict, and review a change that opens one port (diff
# exits 1 when reachability changes).
demo: deps build
	./$(BIN) check testdata/quickstart.pol
	./$(BIN) build -o bin/quickstart testdata/quickstart.pol
	./$(BIN) test testdata/quickstart.pol
	./$(BIN) explain testdata/quickstart.pol 'tcp web -> api:8080'
	./$(BIN) diff testdata/quickstart.pol -- testdata/diff/add-rule.pol; test $$? -eq 1

# difftest runs the differential tester (kernel against the reference
# evaluator) longer than make test does: N packets, about 100 per policy;
# SEED=S repeats a run (0: a fresh seed, printed). Needs root.
N ?= 100000
SEED ?= 0
difftest: deps
	$(GO) run ./runtime/harness/difftest/cmd/polc-difftest -n $(N) -seed $(SEED)

# bench compares polc with iptables, ipset and nftables on real traffic
# between namespaces (docs/performance.md "Comparison"), then runs the
# datapath and compile benchmarks; needs root. Knobs: BENCH_N,
# BENCH_CONFIGS, BENCH_RUNS, BENCH_PACKETS.
bench: deps
	@mkdir -p bin
	POLC_BENCH=1 BENCH_OUT=$(CURDIR)/bin/bench-comparison.md $(GO) test -count=1 -timeout 40m -run '^TestBench$$' -v ./runtime/bench/
	$(MAKE) bench-datapath
	$(GO) test -run '^$$' -bench '^BenchmarkApply$$' -benchtime 1x ./runtime/
	$(GO) test -run '^$$' -bench CompileScale -benchtime 1x -count 3 ./compiler/lower/
	$(GO) test -run '^$$' -bench 'ManyLabels' -benchtime 3x ./compiler/ ./dsl/k8s/
	$(GO) test -run '^$$' -bench 'Monitor' -benchtime 1x ./cmd/polc/
	$(GO) test -run '^$$' -bench 'Compare' -benchtime 3x ./compiler/diff/

# bpf regenerates the BPF objects and their Go bindings (bpf2go).
bpf: deps
	$(GO) generate ./bpf/...

# bpf-check fails if the committed BPF objects differ from a fresh build.
bpf-check: bpf
	@if ! git diff --quiet -- bpf; then echo "generated BPF code is stale: run 'make bpf' and commit"; git diff --stat -- bpf; exit 1; fi

clean:
	rm -rf bin

# bench-datapath measures the BPF datapath as bundles ship it (ns/packet via
# BPF_PROG_TEST_RUN, as ratios to an empty program measured in the same run):
# established, fresh, re-created and denied-with-a-reader flows at 10 and
# 1M policy entries, the same with 1 000 admin policies (and paired rounds
# of fresh flows with and without them), then the per-operation breakdown;
# needs root. See docs/performance.md.
.PHONY: bench-datapath
bench-datapath: deps
	$(GO) test -run '^$$' -bench '^BenchmarkDatapath(Parts|Tiers)?$$' -benchtime 2000000x -count 3 -timeout 30m ./bpf/
