#!/usr/bin/env bash
# Caches the C sources of nanopb's runtime (pb_common.c, pb_encode.c,
# pb_decode.c and headers) from Debian's nanopb source package, for builds
# where Debian's prebuilt library cannot be used (the Cortex-M cross build).
# The source index is fetched through a private apt configuration derived
# from the system's own package sources, so the system's apt state is left
# untouched. Idempotent and quiet when the cache is already there.
#
# Prints nothing on success; the sources end up in $dir/nanopb-src.
set -euo pipefail

dir=${TINYFED_DATA_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/tinyfed}
target="$dir/nanopb-src"
[[ -s "$target/pb_decode.c" ]] && exit 0

mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src"

# deb-src twins of the system's Debian entries (deb822 and one-line forms).
sources="$work/sources.list.d"
mkdir -p "$sources"
for f in /etc/apt/sources.list.d/*.sources; do
  [[ -e "$f" ]] || continue
  sed -e 's/^Types:.*/Types: deb-src/' "$f" > "$sources/$(basename "$f")"
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [[ -e "$f" ]] || continue
  sed -n -e 's/^deb \(.*\)/deb-src \1/p' "$f" > "$sources/$(basename "$f")"
done

apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$sources"
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
          -o "Debug::NoLocking=1")
apt-get "${apt_opts[@]}" update -qq >/dev/null 2>&1
cd "$work/src"
apt-get "${apt_opts[@]}" source --download-only -qq nanopb >/dev/null 2>&1
orig=$(ls nanopb_*.orig.tar.* 2>/dev/null | head -n 1)
if [[ -z "$orig" ]]; then
  echo "fetch_nanopb_source: could not download the nanopb source package" >&2
  exit 1
fi
mkdir unpacked
tar -xf "$orig" -C unpacked
src=$(dirname "$(find unpacked -name pb_decode.c | head -n 1)")
rm -rf "$target.tmp"
mkdir -p "$target.tmp"
cp "$src"/pb.h "$src"/pb_common.[ch] "$src"/pb_encode.[ch] "$src"/pb_decode.[ch] "$target.tmp"/
rm -rf "$target"
mv "$target.tmp" "$target"
echo "fetch_nanopb_source: cached $target"
