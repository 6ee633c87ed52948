# The two commands: `make run` and `make test`. Everything else is a convenience.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
LISTEN ?= 127.0.0.1:8080

.PHONY: all deps build debug run test test-asan asan fuzz bench docs clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

debug: deps
	@cmake --preset debug >/dev/null
	@cmake --build --preset debug -j $(JOBS)

run: build
	./build/release/harmar serve --listen $(LISTEN) --data-dir ./data

# Builds Debug, starts PostgreSQL and Redis on free ports, runs every test through CTest, stops them.
test: debug
	@scripts/run-tests.sh debug

asan: deps
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j $(JOBS)

test-asan: asan
	@scripts/run-tests.sh asan

# Runs every libFuzzer target for FUZZ_SECONDS each (clang build in build/fuzz).
FUZZ_SECONDS ?= 60
fuzz: deps
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz -j $(JOBS)
	@scripts/fuzz.sh build/fuzz $(FUZZ_SECONDS)

bench: build
	@for b in bench/*.sh; do echo "== $$b"; $$b || exit 1; done

docs: build
	./build/release/harmar config schema > docs/configuration.md

clean:
	rm -rf build
