# The two commands a user needs: `make run` (the main job) and `make test` (the whole suite).
# Both install what is missing (scripts/install-deps.sh) and build first.
BUILD ?= build
JOBS ?= $(shell nproc)
CONFIG ?= configs/beauty.yaml
OUT ?= runs/beauty
ARGS ?=
SERVE_ARGS ?=

SANITIZE ?= address,undefined
SANITIZE_BUILD ?= build-sanitize
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?=
BENCH_BATCHES ?= 200

.PHONY: all deps configure build run serve test bench check-sanitize fuzz clean

all: build

deps:
	bash scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: configure
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/bin/llm4sbr run --config $(CONFIG) --out $(OUT) $(ARGS)

# Serves the LLM4SBR row of `make run`'s output on http://127.0.0.1:8080 (README, "Serving").
serve: build
	$(BUILD)/bin/llm4sbr serve --run $(OUT) $(SERVE_ARGS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

# The unit and integration tests with AddressSanitizer (leaks included) and UndefinedBehaviorSanitizer on the
# project's own code (not llama.cpp, not LibTorch); any report fails the test it happens in.
check-sanitize: deps
	cmake -S . -B $(SANITIZE_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLM4SBR_SANITIZE=$(SANITIZE) \
	  -DLLM4SBR_BUILD_BENCH=OFF
	cmake --build $(SANITIZE_BUILD) -j $(JOBS)
	cd $(SANITIZE_BUILD) && \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_init_order=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/sanitizers/lsan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=$(CURDIR)/scripts/sanitizers/ubsan.supp \
	  ctest --output-on-failure -j $(JOBS) --timeout 3600

# Every libFuzzer target of fuzz/ for FUZZ_SECONDS each (FUZZ_RUNS executions each when set), on seeds made
# from $$LLM4SBR_DATA_DIR (clang and libFuzzer come from scripts/install-fuzz-deps.sh, so that `make test`
# never needs them).
fuzz:
	bash scripts/install-fuzz-deps.sh
	CC=clang CXX=clang++ cmake -S fuzz -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_targets
	FUZZ_RUNS=$(FUZZ_RUNS) bash fuzz/run-all.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# Every backbone's epoch against the scoring GEMMs' floor, plain and with the head (BENCH_BATCHES=0: whole epochs).
bench: build
	$(BUILD)/bin/epoch_bench --batches $(BENCH_BATCHES)

clean:
	rm -rf $(BUILD) $(SANITIZE_BUILD) $(FUZZ_BUILD)
