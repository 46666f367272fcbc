# jifen: the commands a developer types.  CMake + Ninja do the building (CMakeLists.txt);
# this file only names the common steps.  `make help` lists them.

BUILD_DIR := build
ASAN_DIR  := build-asan
TSAN_DIR  := build-tsan
FUZZ_DIR  := build-fuzz
COV_DIR   := build-cov
MUT_DIR   := build-mut
CTEST_JOBS ?= 2

# Sources clang-format owns: everything C in the repository outside build trees.
FORMAT_DIRS := include src tests bench

.DEFAULT_GOAL := build

.PHONY: help deps build test asan tsan coverage mutation run clean format fuzz fuzz-smoke

help: ## List the targets.
	@echo "jifen make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  \1\t/' | expand -t 15

deps: ## Install missing Debian packages (scripts/install-deps.sh).
	@scripts/install-deps.sh

build: deps ## Configure (RelWithDebInfo) and build into build/; the command is build/jifen.
	cmake -G Ninja -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	ninja -C $(BUILD_DIR)

# The benchmark's smoke run (seconds) comes first so that it cannot rot and
# ctest's summary stays the last thing printed.
test: build ## Build, run the benchmark smoke run, every test (unit, model, API, fuzz corpus) with ctest, then a short libFuzzer run.
	python3 bench/run.py --smoke
	python3 bench/batchsim.py --smoke
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j$(CTEST_JOBS)
	$(MAKE) --no-print-directory fuzz-smoke

# Sanitizers slow the model test about tenfold, so its run here is shorter (MODEL_OPS);
# `make test` runs the full 100,000 operations.
asan: deps ## Build with ASan+UBSan (Debug) into build-asan/ and run every test there.
	cmake -G Ninja -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DJIFEN_SANITIZE=ON
	ninja -C $(ASAN_DIR)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 MODEL_OPS=$${MODEL_OPS:-20000} \
		ctest --test-dir $(ASAN_DIR) --output-on-failure -j$(CTEST_JOBS)

# ThreadSanitizer: every test but the allocation-failure loops (single requests one at a time,
# about 4 minutes under TSan; `make asan` runs them) and the libFuzzer runs.  A race found in
# a server the API tests start makes it exit 66, which fails that test; halt_on_error stops a
# unit or model test at its first race.
tsan: deps ## Build with ThreadSanitizer into build-tsan/ and run every test but unit_faults there.
	cmake -G Ninja -S . -B $(TSAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DJIFEN_TSAN=ON
	ninja -C $(TSAN_DIR)
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 $${TSAN_OPTIONS:-}" \
		MODEL_OPS=$${MODEL_OPS:-20000} \
		ctest --test-dir $(TSAN_DIR) --output-on-failure -j$(CTEST_JOBS) -E '^unit_faults$$'

# Coverage (docs/TESTING.md, Coverage): gcov counts from a Debug -O0 build in build-cov/,
# reported by gcovr, which is installed here only.  Counters from earlier runs are deleted
# first, so the figures are this run's; COVERAGE_TESTS=regex runs only the ctest tests it
# matches (`make coverage COVERAGE_TESTS=unit_faults`: the fault loops alone).  The API tests
# run build-cov/jifen (ctest passes JIFEN_BIN), whose counts are written when it exits on
# SIGTERM; a server killed with SIGKILL or stopped by abort() loses its counts.  The report
# comes even when a test failed, and the target then fails after it.
COVERAGE_TESTS ?=
coverage: deps ## Build with gcov into build-cov/, run the tests (COVERAGE_TESTS=regex: some), report lines and branches (HTML in build-cov/coverage/).
	@scripts/install-deps.sh gcovr
	cmake -G Ninja -S . -B $(COV_DIR) -DCMAKE_BUILD_TYPE=Debug -DJIFEN_COVERAGE=ON
	ninja -C $(COV_DIR)
	find $(COV_DIR) -name '*.gcda' -delete
	rm -rf $(COV_DIR)/coverage
	status=0; \
	ctest --test-dir $(COV_DIR) --output-on-failure -j$(CTEST_JOBS) \
		$(if $(COVERAGE_TESTS),-R '$(COVERAGE_TESTS)') || status=$$?; \
	scripts/coverage_report.py $(COV_DIR) && exit $$status

# Mutation testing of `jifen verify` (docs/TESTING.md): each check of src/core/verify.c deleted
# or weakened in turn must make unit_verify, or else another unit test or the model test, fail
# (scripts/mutate_verify.py).  The mutants are built from a scratch copy of the tree in
# build-mut/, never in the working tree.  Not part of `make test`: it builds and tests well over
# a hundred mutants.  MUTATION_ARGS=--quick makes only the deletions and runs only unit_verify;
# --list prints the mutants; --only REGEX picks some.
MUTATION_ARGS ?=
mutation: deps ## Mutation testing of jifen verify's checks in build-mut/ (MUTATION_ARGS=--quick: deletions only).
	python3 scripts/mutate_verify.py $(MUTATION_ARGS)

run: build ## Build and start the demo server (data in ./data); prints the URL and an admin key.
	scripts/demo.sh

clean: ## Remove the build trees (keeps ./data, the demo database).
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR) $(FUZZ_DIR) $(COV_DIR) $(MUT_DIR)

format: ## Reformat every C source and header with clang-format (.clang-format).
	find $(FORMAT_DIRS) -type f \( -name '*.c' -o -name '*.h' \) -print0 2>/dev/null \
		| xargs -0 -r clang-format -i

# Long write soak against SQLite's WAL-reset race (tests/api/test_wal_restart.py):
# SOAK_SECONDS of batches and single earns at the smallest WAL restart threshold, then
# balances, /metrics and `jifen verify`.  `make test` runs the short versions.
SOAK_SECONDS ?= 600
.PHONY: soak
soak: build ## Write soak: WAL restarts beside the checkpointer for SOAK_SECONDS (default 600).
	SOAK_SECONDS=$(SOAK_SECONDS) JIFEN_VERIFY_TIMEOUT_S=3600 \
		python3 tests/api/test_wal_restart.py -v WalSoakTests

# Long power-loss run (tests/api/test_power_loss.py): POWERCUT_CYCLES cycles of writes,
# kill -9 and three power cuts each, rebuilt from the writes and syncs the server made.
# `make test` runs 3 cycles.
POWERCUT_CYCLES ?= 100
.PHONY: power-loss
power-loss: build ## Power cuts: POWERCUT_CYCLES cycles (default 100) of writes, kill -9, 3 cuts each.
	POWERCUT_CYCLES=$(POWERCUT_CYCLES) JIFEN_BIN=$(BUILD_DIR)/jifen \
		JIFEN_POWERCUT_LIB=$(BUILD_DIR)/tests/api/libpowercut.so \
		python3 tests/api/test_power_loss.py -v PowerLossTest.test_power_cut_loses_no_acknowledged_write

# Benchmarks (bench/README.md).  `bench` is long and installs PostgreSQL and
# Redis; `bench-smoke` takes seconds, installs nothing and skips what is absent.
.PHONY: bench bench-smoke bench-memory bench-batchsim bench-instructions
bench: build ## Side-by-side benchmark vs PostgreSQL/SQLite/Redis (long; not in CI).
	python3 bench/run.py $(BENCH_ARGS)

bench-smoke: build ## Seconds-long benchmark run on tiny sizes (keeps the harness alive).
	python3 bench/run.py --smoke $(BENCH_ARGS)

bench-instructions: build ## The writer's instructions per earn, per batch operation and per order earn (W8), the HTTP threads' per earn and per order earn (callgrind, about three minutes).
	@command -v valgrind >/dev/null || ./scripts/install-deps.sh valgrind
	$(MAKE) -s -C bench
	python3 bench/instructions.py $(BENCH_ARGS)

bench-memory: build ## RSS with 1M members / 10M transactions, restart time (about 20 min).
	python3 bench/memory.py $(BENCH_ARGS)

bench-batchsim: build ## An earn's writes by commit grouping, statements and rows (about 15 min).
	python3 bench/batchsim.py $(BENCH_ARGS)

# Fuzzing (tests/fuzz/README.md): the harnesses linked with clang's libFuzzer, ASan and UBSan
# in build-fuzz/, each run for FUZZ_SECONDS from the committed corpus.  ctest replays that
# corpus in every build; `make test` ends with `fuzz-smoke`, a short run of each.
FUZZ_SECONDS ?= 600
fuzz: deps ## libFuzzer: every harness for FUZZ_SECONDS (default 600) each; crashes in build-fuzz/fuzz-crashes.
	cmake -G Ninja -S . -B $(FUZZ_DIR) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
		-DCMAKE_C_FLAGS_DEBUG="-g -O1" -DJIFEN_FUZZ=ON
	ninja -C $(FUZZ_DIR) fuzz
	tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SECONDS)

fuzz-smoke: ## libFuzzer for 10 s per harness from the committed seeds (part of `make test`).
	FUZZ_FRESH=1 $(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10
