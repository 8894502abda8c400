# Sluice build. `make` compiles the eBPF object, type-checks the TypeScript and
# writes two single executables: dist/sluice-cni and dist/sluice.
# Node 26 from the pinned `node` package runs every tool; the machine's own Node only runs npm.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
NODE   := node_modules/.bin/node
CLANG  ?= clang
BPF_CFLAGS := -O2 -g -Wall -Werror -target bpf -I/usr/include/$(shell uname -m)-linux-gnu
TS_SOURCES := $(shell find agent cli cni datapath ipam policy tools -name '*.ts' 2>/dev/null)

.PHONY: all bpf typecheck test demo clean

all: bpf typecheck dist/sluice-cni dist/sluice

bpf: dist/sluice.bpf.o

dist/sluice.bpf.o: bpf/datapath.c $(wildcard bpf/*.h)
	@mkdir -p dist
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

typecheck: node_modules/.bin/tsc
	tsc -p .

dist/sluice-cni: $(TS_SOURCES) tools/build-sea.ts
	$(NODE) tools/build-sea.ts cni/main.ts $@

dist/sluice: $(TS_SOURCES) tools/build-sea.ts dist/sluice.bpf.o
	$(NODE) tools/build-sea.ts cli/main.ts $@ --bpf

test: all
	vitest run --reporter=default --reporter=json --outputFile=dist/test-results.json; \
	  status=$$?; $(NODE) tools/test-summary.ts dist/test-results.json && exit $$status

demo: all
	dist/sluice demo

clean:
	rm -rf dist
