# Shorthands for the README's two commands (the scripts need no make).
BENCH_ARGS ?=

.PHONY: bench test

bench:
	scripts/run-bench $(BENCH_ARGS)

test:
	scripts/run-tests
