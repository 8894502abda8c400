# Sluice build. `make` compiles the eBPF object, type-checks the TypeScript and
# writes two single executables: dist/sluice-cni and dist/sluice.
# Node 26 from the pinned `node` package runs every tool; the machine's own Node only runs npm.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
NODE   := node_modules/.bin/node
CLANG  ?= clang
BPF_CFLAGS := -O2 -g -Wall -Werror -target bpf -I/usr/include/$(shell uname -m)-linux-gnu
TS_SOURCES := $(shell find agent cli cni contract datapath install ipam lib policy security tools ui -name '*.ts' 2>/dev/null)

.PHONY: all bpf typecheck test unit demo clean conformance conformance-netpol image e2e e2e-down

all: bpf typecheck dist/sluice-cni dist/sluice

# The eBPF object. test/abi.test.ts builds a copy of its own with this same rule,
# `make -s BPF_OBJ=<tmp>/sluice.bpf.o <tmp>/sluice.bpf.o`, so the flags live here only.
BPF_OBJ := dist/sluice.bpf.o

# The tracing object (TCP health per pod; issue 18): the same flags, its own source and header.
# test/trace-abi.test.ts builds a copy with `make -s TRACE_OBJ=<tmp>/sluice-trace.bpf.o <tmp>/sluice-trace.bpf.o`.
TRACE_OBJ := dist/sluice-trace.bpf.o

# The runtime security sensor (issue 19); test/security-abi.test.ts builds a copy the same way.
SECURITY_OBJ := dist/sluice-security.bpf.o

# The socket load balancer for Services (issue 17); test/service-lb-abi.test.ts builds a copy the same way.
SERVICE_LB_OBJ := dist/sluice-service-lb.bpf.o

bpf: $(BPF_OBJ) $(TRACE_OBJ) $(SECURITY_OBJ) $(SERVICE_LB_OBJ)

# BPF_EXTRA_CFLAGS: for tests that build a variant (test/datapath-version.test.ts: a changed map layout).
$(BPF_OBJ): bpf/datapath.c $(wildcard bpf/*.h)
	@mkdir -p $(@D)
	$(CLANG) $(BPF_CFLAGS) $(BPF_EXTRA_CFLAGS) -c $< -o $@

$(TRACE_OBJ): bpf/trace.c bpf/trace.h
	@mkdir -p $(@D)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(SECURITY_OBJ): bpf/security.c bpf/security.h
	@mkdir -p $(@D)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(SERVICE_LB_OBJ): bpf/service-lb.c bpf/service-lb.h
	@mkdir -p $(@D)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

typecheck: node_modules/.bin/tsc
	tsc -p .

dist/sluice-cni: $(TS_SOURCES) tools/build-sea.ts
	$(NODE) tools/build-sea.ts cni/main.ts $@

dist/sluice: $(TS_SOURCES) tools/build-sea.ts dist/sluice.bpf.o dist/sluice-trace.bpf.o dist/sluice-security.bpf.o security/rules/default.yaml $(SERVICE_LB_OBJ)
	$(NODE) tools/build-sea.ts cli/main.ts $@ --bpf

# Both vitest projects (vitest.config.ts) in one run and one JSON report: `unit` (files in
# parallel), then `kernel` (root; namespaces, BPF, local clusters, dist/ executables; one file at a time).
test: all
	vitest run --reporter=default --reporter=json --outputFile=dist/test-results.json; \
	  status=$$?; $(NODE) tools/test-summary.ts dist/test-results.json && exit $$status

# Only the `unit` project: no root, no kernel state, no build needed; seconds.
unit:
	vitest run --project unit

demo: all
	dist/sluice demo

# NetworkPolicy conformance against a local cluster of its own: every fixed case
# and a short generated run; `make test` runs it too (test/conformance-netpol.test.ts).
# Nightly, a longer generated run: make conformance NETPOL_ARGS='--no-fixed --count 300 --seed 20251124'
conformance: conformance-netpol

conformance-netpol: dist/sluice.bpf.o dist/sluice-cni dist/sluice
	$(NODE) conformance/netpol/main.ts $(NETPOL_ARGS)

# The datapath packet fuzzer (issue 30; conformance/fuzz/README.md): random packets of every header shape
# from every pod under random policies, each delivered one checked against the netpol reference evaluator.
# `make test` runs a short run (test/fuzz-datapath.test.ts); this is the long one, any seed:
# make fuzz-datapath FUZZ_ARGS='--packets 1000000 --seed 7'
FUZZ_ARGS ?= --packets 1000000 --per-round 5000
.PHONY: fuzz-datapath
fuzz-datapath: dist/sluice.bpf.o dist/sluice-cni dist/sluice
	$(NODE) conformance/fuzz/main.ts $(FUZZ_ARGS)

# The chaos test (issue 32; test/chaos/agent-kill.chaos.ts): the agent SIGKILLed at seeded random moments
# during a large policy sync and a burst of pod ADDs and DELs; minutes long, so not in `make test`.
# The issue's run: make chaos CHAOS_KILLS=20 CHAOS_CHURN=100 (CHAOS_SEED=N repeats one; the file lists every knob).
.PHONY: chaos
chaos: dist/sluice.bpf.o dist/sluice-cni dist/sluice
	vitest run --config vitest.chaos.config.ts

# OCI image archive of the agent and the CNI plugin, named as install/30-daemonset.yaml names it;
# no registry and no container engine: `ctr -n k8s.io images import dist/sluice-image.tar` loads it.
# Its manifest digest is written into install/30-daemonset.yaml (REPO:TAG@sha256:...), so what
# kubectl apply -f install/ runs is exactly this image (commit the manifest with a release).
image: dist/sluice-image.tar

dist/sluice-image.tar: dist/sluice dist/sluice-cni tools/image.ts install/30-daemonset.yaml
	$(NODE) tools/image.ts --out $@ --ref-from install/30-daemonset.yaml --pin-into install/30-daemonset.yaml \
	  --add dist/sluice:/usr/bin/sluice --add dist/sluice-cni:/usr/bin/sluice-cni \
	  --lib /lib/$(shell uname -m)-linux-gnu/libbpf.so.1 \
	  --ldd node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node \
	  --ldd node_modules/netlink/prebuilds/linux-x64/node.napi.node \
	  --dir var/cache/sluice --entrypoint /usr/bin/sluice

# A real single-node Kubernetes 1.20 (Debian's source package, built once into /var/cache/sluice-k8s)
# in its own network and mount namespaces; Sluice installed with kubectl apply -f install/ only;
# the upstream NetworkPolicy e2e specs. E2E_KEEP=1 leaves the cluster up (make e2e-down removes it).
e2e: dist/sluice-image.tar
	bash e2e/run.sh

e2e-down:
	bash e2e/cluster-down.sh

clean:
	rm -rf dist

# Benchmarks beside their peers (bench/README.md): the short version, under 10 minutes;
# `make bench BENCH_FLAGS="--full --write-readme"` runs the full sizes and records them in bench/README.md.
.PHONY: bench
bench: all
	$(NODE) bench/run-all.ts $(BENCH_FLAGS)
