#!/usr/bin/env bash
# Installs every Debian package llm4sbr needs. Safe to run twice: it only installs what is missing.
#
# Why libopenblas0-pthread: Debian's LibTorch links the system libblas.so.3, which on a fresh machine is
# the reference BLAS (about 4 GFLOP/s for the scoring matmul here). OpenBLAS registers itself as the
# libblas.so.3 alternative and is 30-60x faster on the same cores.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git python3 python3-numpy unzip
  libtorch-dev libgloo-dev libopenblas0-pthread libopenblas-pthread-dev
  libfaiss-dev
  libcli11-dev libyaml-cpp-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libcurl4-openssl-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  gnuplot-nox
  chromium chromium-driver  # headless browser for the test of serve's page (tests/serve/web_page_test.cpp)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all Debian packages present"
fi

# Make sure libblas.so.3 resolves to OpenBLAS (the package sets a higher alternative priority, but an
# admin may have pinned the reference BLAS by hand).
arch_dir=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
openblas="/usr/lib/${arch_dir}/openblas-pthread/libblas.so.3"
if [ -e "$openblas" ]; then
  current=$(readlink -f "/usr/lib/${arch_dir}/libblas.so.3" || true)
  if [ "$current" != "$(readlink -f "$openblas")" ]; then
    $SUDO update-alternatives --set "libblas.so.3-${arch_dir}" "$openblas"
  fi
  echo "install-deps: libblas.so.3 -> $(readlink -f "/usr/lib/${arch_dir}/libblas.so.3")"
fi

# The pinned llama.cpp source (third_party/llama.cpp) comes from the npm registry; Debian's npm only
# where the machine has no npm of its own (it would replace a Node.js installed another way).
command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm
bash "$(dirname "$0")/fetch-llama.sh"
