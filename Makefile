# The two jobs of the README. Both install what they need when run as root (Debian 12).
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

BENCH_HUGEPAGES ?= 2400
BENCH_ARGS ?=

.PHONY: bench test deps

deps:
	scripts/install-deps

## The benchmark: BuddyPools beside glibc, jemalloc, mimalloc, tcmalloc, numa_alloc_onnode
## and memkind, in one run; results in bench-results/.
bench: deps
	scripts/reserve-hugepages $(BENCH_HUGEPAGES)
	swift build -c release
	.build/release/buddypools info
	.build/release/buddypools verify
	mkdir -p bench-results
	.build/release/buddypools-bench --json bench-results/latest.json --svg bench-results/latest.svg $(BENCH_ARGS)

## Every test: unit suites with and without hugepages, TSan, NUMA VM guests, examples.
test: deps
	scripts/run-tests
