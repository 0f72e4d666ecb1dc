#!/usr/bin/env bash
# Unpacks the Debian 12 packages llm4sbr needs into a folder, for a machine that lacks them and where apt
# cannot install them: typically a CUDA machine (Ubuntu 24.04 with PyTorch) without FAISS, cpp-httplib,
# libcurl headers or a CBLAS. Their glibc is older, so they run there. The packages' absolute paths are
# rewritten to the folder; the machine's own libcurl.so.4 is used when it has one (Debian's needs LDAP and
# SSH libraries of Debian's versions).
#
#   scripts/gpu-prefix.sh download DEBS_DIR     # on a Debian 12 machine with apt: fetch the .deb files
#   scripts/gpu-prefix.sh unpack DEBS_DIR PREFIX  # on the target: unpack into PREFIX
#
# Then build with CMAKE_PREFIX_PATH=PREFIX/usr and run with LD_LIBRARY_PATH=PREFIX/usr/lib/x86_64-linux-gnu
# (scripts/build-gpu.sh does both).
set -euo pipefail

PACKAGES=(libfaiss-dev libopenblas0-pthread libgfortran5 libquadmath0 libcurl4-openssl-dev libcurl4
          libcpp-httplib-dev libcpp-httplib0.11 libgtest-dev)

case "${1:-}" in
  download)
    mkdir -p "$2"
    (cd "$2" && apt-get download "${PACKAGES[@]}")
    ;;
  unpack)
    debs=$2
    prefix=$(mkdir -p "$3" && cd "$3" && pwd)
    lib="$prefix/usr/lib/x86_64-linux-gnu"
    for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$prefix"; done
    # BLAS and LAPACK for FAISS: OpenBLAS under the names the link and the loader look for.
    for name in blas lapack; do
      ln -sf "openblas-pthread/lib$name.so.3" "$lib/lib$name.so"
      ln -sf "openblas-pthread/lib$name.so.3" "$lib/lib$name.so.3"
    done
    ln -sf openblas-pthread/libopenblas.so.0 "$lib/libopenblas.so.0"
    sed -i "s|/usr/lib/x86_64-linux-gnu/|$lib/|g" "$lib/cmake/faiss/faiss-targets.cmake"
    # Requires.private names the packages' own -dev dependencies (openssl, zlib, brotli), which the machine
    # may lack; linking the shared libraries does not need them.
    for pc in "$lib"/pkgconfig/*.pc; do sed -i -e "s|=/usr|=$prefix/usr|" -e '/^Requires.private/d' "$pc"; done
    system_curl=$(ldconfig -p | awk '/libcurl\.so\.4 .*x86-64/ {print $NF; exit}')
    if [ -n "$system_curl" ]; then
      rm -f "$lib"/libcurl.so.4*
      ln -sf "$system_curl" "$lib/libcurl.so"
      echo "gpu-prefix: linking the machine's own $system_curl"
    fi
    echo "gpu-prefix: unpacked $(ls "$debs"/*.deb | wc -l) packages into $prefix"
    ;;
  *)
    sed -n 2,13p "$0"
    exit 2
    ;;
esac
