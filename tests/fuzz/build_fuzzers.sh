#!/usr/bin/env bash
# Configures and builds the fuzz targets with clang (see CMakeLists.txt in
# this folder for why they are a build of their own), then writes their seed
# corpora into BUILD_DIR/seeds/<target>/. The CTest fixture fuzz.build.
#
#   build_fuzzers.sh ROOT BUILD_DIR CC CXX GENERATOR [COMPILER_LAUNCHER]
set -euo pipefail
if [[ $# -lt 5 ]]; then
  echo "usage: build_fuzzers.sh ROOT BUILD_DIR CC CXX GENERATOR [COMPILER_LAUNCHER]" >&2
  exit 2
fi
root=$1 build=$2 cc=$3 cxx=$4 generator=$5 launcher=${6:-}

# nanopb's runtime from its Debian sources, as the Cortex-M build takes it,
# so that pb_decode.c is instrumented too: coverage inside the decoder is
# what guides the SDK's fuzzers through the wire format.
"$root/deploy/fetch_nanopb_source.sh"
nanopb_src=${TINYFED_DATA_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/tinyfed}/nanopb-src

# Every object of this tree is instrumented for coverage (fuzzer-no-link)
# and checked by ASan and UBSan; a UBSan report aborts, so libFuzzer keeps
# the input. -O1 as libFuzzer's documentation advises; no NDEBUG, so
# assertions stay on.
sanitize="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all"
flags="-O1 -g -fno-omit-frame-pointer $sanitize"
launch=()
if [[ -n "$launcher" ]]; then
  launch=(-DCMAKE_C_COMPILER_LAUNCHER="$launcher" -DCMAKE_CXX_COMPILER_LAUNCHER="$launcher")
fi
cmake -S "$root/tests/fuzz" -B "$build" -G "$generator" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE= \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
  -DTINYFED_NANOPB_SOURCE_DIR="$nanopb_src" "${launch[@]}" >/dev/null
cmake --build "$build"

rm -rf "$build/seeds"
# The seed writer is built with ASan; leaks at exit are not its concern.
ASAN_OPTIONS=detect_leaks=0 "$build/fuzz_seed_corpus" "$build/seeds" "$root"
