#!/usr/bin/env bash
# Obtains the pinned llama.cpp source into third_party/llama.cpp (ignored by git). Safe to run twice.
#
# The source of a pinned llama.cpp release ships inside the npm package node-llama-cpp as a git bundle
# (package/llama/gitRelease.bundle). We fetch the package tarball with `npm pack`, check it against the
# registry's published sha512 integrity (pinned below), and clone the bundle.
set -euo pipefail

NODE_LLAMA_CPP_VERSION="3.22.1"
INTEGRITY="sha512-bltIipuWmc123H7tMIgDGKSsSrhmhlQYeVUC48XTjVW7XGJJiJJyCdlTMzQ/LiWoPkGDpcL4FviDpgw7qfTiDw=="
LLAMA_COMMIT="de3ff815ea7d559ee917f063901b8986f038abc6"

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/third_party/llama.cpp"

if [ -d "$dest/.git" ] && [ "$(git -C "$dest" rev-parse HEAD 2>/dev/null)" = "$LLAMA_COMMIT" ]; then
  echo "fetch-llama: llama.cpp $LLAMA_COMMIT already in $dest"
  exit 0
fi

command -v npm >/dev/null || { echo "fetch-llama: npm is needed (apt-get install npm)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" --silent >/dev/null)
tarball="$work/node-llama-cpp-$NODE_LLAMA_CPP_VERSION.tgz"
got="sha512-$(python3 -c 'import base64,hashlib,sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1],"rb").read()).digest()).decode())' "$tarball")"
if [ "$got" != "$INTEGRITY" ]; then
  echo "fetch-llama: integrity mismatch for node-llama-cpp@$NODE_LLAMA_CPP_VERSION: expected $INTEGRITY, got $got" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$work" package/llama/gitRelease.bundle
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
git -c advice.detachedHead=false clone -q "$work/package/llama/gitRelease.bundle" "$dest"
git -C "$dest" -c advice.detachedHead=false checkout -q "$LLAMA_COMMIT"
echo "fetch-llama: llama.cpp $LLAMA_COMMIT in $dest"
