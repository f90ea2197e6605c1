# SPDX-License-Identifier: Apache-2.0
# make build   install npm dependencies, compile BPF objects, the addon and the TypeScript
# make run     build, profile the whole host for a few seconds, write a pprof file and a flame graph
# make test    build and run every test (as root, on the real kernel)
SHELL := /bin/bash
.DEFAULT_GOAL := build

CLANG ?= clang
LLVM_STRIP ?= $(firstword $(shell command -v llvm-strip llvm-strip-16 llvm-strip-15 llvm-strip-14 2>/dev/null))
# node-gyp needs the Node headers; Debian/NodeSource ship them under /usr/include/node, which spares a
# download from nodejs.org (unreachable on machines that only reach package registries).
NODEDIR ?= $(if $(wildcard /usr/include/node/node_api.h),/usr,)
NODE_GYP_FLAGS := $(if $(NODEDIR),--nodedir=$(NODEDIR),)
ARCH := x86
BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_OBJS := $(BPF_SRCS:.c=.o)
BPF_HDRS := $(wildcard bpf/*.h) bpf/vmlinux/$(ARCH)/vmlinux.h
ADDON := addon/build/Release/ebpfprof_native.node
ADDON_SRCS := $(wildcard addon/src/*.cc addon/src/*.h) addon/binding.gyp
TS_SRCS := $(shell find src cli viewer test bench -name '*.ts' 2>/dev/null) tsconfig.json
TS_STAMP := dist/.tsc-stamp
OUT := out

.PHONY: build run test deps bpf addon ts clean check-bpf

build: deps bpf addon ts

node_modules/.package-lock.json: package-lock.json package.json
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.package-lock.json

bpf: $(BPF_OBJS)

# Compiled objects are committed so that an install without clang still works; with clang they are
# rebuilt (deterministically: no DWARF, no build paths) and CI fails if they differ from the commit.
bpf/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS)
	@if command -v $(CLANG) >/dev/null 2>&1; then \
	  echo "  BPF     $@"; \
	  $(CLANG) -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Ibpf -fdebug-prefix-map=$(CURDIR)=. -c $< -o $@ && \
	  $(LLVM_STRIP) -g $@; \
	else \
	  echo "  BPF     $@: clang not found, using the committed object"; touch $@; \
	fi

check-bpf: bpf
	@git diff --exit-code --stat -- $(BPF_OBJS) || { echo "BPF objects differ from the committed ones: rebuild with 'make bpf' and commit them"; exit 1; }

addon: $(ADDON)

$(ADDON): $(ADDON_SRCS) node_modules/.package-lock.json
	npx node-gyp rebuild -C addon $(NODE_GYP_FLAGS)

ts: $(TS_STAMP)

$(TS_STAMP): $(TS_SRCS) node_modules/.package-lock.json
	npx tsc -p tsconfig.json
	@touch $@

run: build
	@mkdir -p $(OUT)
	bin/ebpfprof record --all --duration 5s --freq 99 --output $(OUT)/host.pb.gz
	bin/ebpfprof view $(OUT)/host.pb.gz --output $(OUT)/host.html

test: build
	npx tap $(TAP_FLAGS) $(if $(TESTS),$(TESTS),"dist/test/**/*.test.js")

clean:
	rm -rf dist addon/build $(OUT) .tap
