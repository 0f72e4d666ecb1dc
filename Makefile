# The two commands a user needs: `make run` (the main job) and `make test` (the whole suite).
# Both install what is missing (scripts/install-deps.sh) and build first.
BUILD ?= build
JOBS ?= $(shell nproc)
CONFIG ?= configs/beauty.yaml
OUT ?= runs/beauty
ARGS ?=

.PHONY: all deps configure build run test bench clean

all: build

deps:
	bash scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: configure
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/bin/llm4sbr run --config $(CONFIG) --out $(OUT) $(ARGS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

bench: build
	$(BUILD)/bin/backbone_bench --model srgnn

clean:
	rm -rf $(BUILD)
