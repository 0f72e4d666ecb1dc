#!/usr/bin/env bash
# Installs everything `make fuzz` needs (it does not run scripts/install-deps.sh): clang and libFuzzer 14 (Debian)
# and what the fuzz project builds with. Kept apart so that `make test`, `make run` and CI never install a second
# compiler. Safe to run twice.
set -euo pipefail

# The compiler and libFuzzer, what the parsers link (no LibTorch, no llama.cpp), and python3's numpy and yaml for
# the seeds (fuzz/make-seeds.py).
PACKAGES=(clang libfuzzer-14-dev cmake ninja-build python3 python3-numpy python3-yaml
          libyaml-cpp-dev nlohmann-json3-dev libspdlog-dev libfmt-dev)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-fuzz-deps: clang, libFuzzer and the parsers' libraries present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-fuzz-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
