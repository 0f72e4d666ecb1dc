#!/usr/bin/env bash
# Builds llm4sbr for NVIDIA GPUs into build-gpu/: the models on a CUDA LibTorch (the one of the machine's
# PyTorch, or TORCH_DIR), llama.cpp with its CUDA backend. See the README, "Building for a GPU".
#
#   scripts/build-gpu.sh [TARGET ...]      # default: everything
#
# Environment: TORCH_DIR (a folder holding TorchConfig.cmake; default: python3's torch), CUDA_ARCH
# (default: native, the GPUs of this machine; 90a for H100/H200), LLAMA_CUDA (default ON; OFF builds
# llama.cpp for the CPU, five times faster to build), PREFIX (packages unpacked by
# scripts/gpu-prefix.sh), BUILD (default build-gpu), JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-gpu}
TORCH_DIR=${TORCH_DIR:-$(python3 -c 'import torch, os; print(os.path.join(torch.utils.cmake_prefix_path, "Torch"))')}
PREFIX_PATH="$TORCH_DIR"
if [ -n "${PREFIX:-}" ]; then
  PREFIX_PATH="$PREFIX/usr;$PREFIX_PATH"
  export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PKG_CONFIG_PATH="$PREFIX/usr/lib/x86_64-linux-gnu/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
fi
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
[ -d third_party/llama.cpp ] || bash scripts/fetch-llama.sh
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLM4SBR_CUDA="${LLAMA_CUDA:-ON}" \
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-native}" -DCMAKE_PREFIX_PATH="$PREFIX_PATH" -DTorch_DIR="$TORCH_DIR"
targets=()
[ $# -eq 0 ] || targets=(--target "$@")
cmake --build "$BUILD" -j "${JOBS:-$(nproc)}" "${targets[@]}"
