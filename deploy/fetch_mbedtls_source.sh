#!/usr/bin/env bash
# Caches the part of mbedTLS the device SDK compiles for firmware (SHA-256:
# library/sha256.c, library/platform_util.c for mbedtls_platform_zeroize,
# library/common.h, the public headers and the licence) from Debian's
# mbedtls source package, for builds where Debian's prebuilt libmbedcrypto
# cannot be used (the Cortex-M cross build). The SDK compiles them with its
# own configuration (client-sdk/port/mbedtls_config.h). The source index is
# fetched through a private apt configuration derived from the system's own
# package sources, so the system's apt state is left untouched. Idempotent
# and quiet when the cache is already there.
#
# Prints nothing when the cache is there; the sources end up in
# $dir/mbedtls-src (library/ and include/mbedtls/, as upstream lays them out).
set -euo pipefail

dir=${TINYFED_DATA_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/tinyfed}
target="$dir/mbedtls-src"
[[ -s "$target/library/sha256.c" ]] && exit 0

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
apt-get "${apt_opts[@]}" source --download-only -qq mbedtls >/dev/null 2>&1
orig=$(ls mbedtls_*.orig.tar.* 2>/dev/null | head -n 1)
if [[ -z "$orig" ]]; then
  echo "fetch_mbedtls_source: could not download the mbedtls source package" >&2
  exit 1
fi
# The SDK's configuration and calls are written for the 2.28 branch (the
# *_ret functions, config.h); another major version must not slip in.
case "$orig" in
  mbedtls_2.28.*) ;;
  *) echo "fetch_mbedtls_source: expected mbedtls 2.28, got $orig" >&2; exit 1 ;;
esac
mkdir unpacked
tar -xf "$orig" -C unpacked
src=$(dirname "$(dirname "$(find unpacked -path '*/library/sha256.c' | head -n 1)")")
rm -rf "$target.tmp"
mkdir -p "$target.tmp/library" "$target.tmp/include/mbedtls"
cp "$src"/library/sha256.c "$src"/library/platform_util.c "$src"/library/common.h \
   "$target.tmp/library/"
cp "$src"/include/mbedtls/*.h "$target.tmp/include/mbedtls/"
cp "$src"/LICENSE "$target.tmp/"
rm -rf "$target"
mv "$target.tmp" "$target"
echo "fetch_mbedtls_source: cached $target"
