#!/usr/bin/env bash
# Caches the C sources of nanopb's runtime (pb_common.c, pb_encode.c,
# pb_decode.c and headers) from Debian's nanopb source package, for builds
# where Debian's prebuilt library cannot be used (the Cortex-M cross build).
# Downloaded with download_debian_source.sh (the system's apt state is left
# untouched). Idempotent and quiet when the cache is already there.
#
# Prints nothing on success; the sources end up in $dir/nanopb-src.
set -euo pipefail

dir=${TINYFED_DATA_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/tinyfed}
target="$dir/nanopb-src"
[[ -s "$target/pb_decode.c" ]] && exit 0

mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
orig=$("$(dirname "${BASH_SOURCE[0]}")/download_debian_source.sh" nanopb "$work/src")
cd "$work"
mkdir unpacked
tar -xf "$orig" -C unpacked
src=$(dirname "$(find unpacked -name pb_decode.c | head -n 1)")
rm -rf "$target.tmp"
mkdir -p "$target.tmp"
cp "$src"/pb.h "$src"/pb_common.[ch] "$src"/pb_encode.[ch] "$src"/pb_decode.[ch] "$target.tmp"/
rm -rf "$target"
mv "$target.tmp" "$target"
echo "fetch_nanopb_source: cached $target"
