#!/usr/bin/env bash
# Caches the part of mbedTLS the device SDK compiles for firmware (SHA-256:
# library/sha256.c, library/platform_util.c for mbedtls_platform_zeroize,
# library/common.h, the public headers and the licence) from Debian's
# mbedtls source package, for builds where Debian's prebuilt libmbedcrypto
# cannot be used (the Cortex-M cross build). The SDK compiles them with its
# own configuration (client-sdk/port/mbedtls_config.h). Downloaded with
# download_debian_source.sh (the system's apt state is left untouched).
# Idempotent and quiet when the cache is already there.
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
orig=$("$(dirname "${BASH_SOURCE[0]}")/download_debian_source.sh" mbedtls "$work/src")
cd "$work"
# The SDK's configuration and calls are written for the 2.28 branch (the
# *_ret functions, config.h); another major version must not slip in.
case "$(basename "$orig")" in
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
