#!/usr/bin/env bash
# Caches the UCI hand-written digits (1797 samples, 64 features, label last)
# as CSV for `tinyfed-agent simulate --dataset digits`. The data ships in
# Debian's python3-sklearn package; its .deb is downloaded and unpacked, no
# Python needed. Idempotent and quiet when the cache is already there.
#
# Cache: $TINYFED_DATA_DIR, else $XDG_CACHE_HOME/tinyfed, else ~/.cache/tinyfed.
set -euo pipefail

dir=${TINYFED_DATA_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/tinyfed}
target="$dir/digits.csv"
[[ -s "$target" ]] && exit 0

mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
chmod 755 "$work"
if ! apt-get download -qq python3-sklearn >/dev/null 2>&1; then
  # Package lists may be missing on a fresh machine.
  if [[ $(id -u) -eq 0 ]]; then apt-get update -qq >/dev/null; else sudo apt-get update -qq >/dev/null; fi
  apt-get download -qq python3-sklearn >/dev/null 2>&1
fi
dpkg-deb -x python3-sklearn_*.deb unpacked
gz=$(find unpacked -path '*sklearn/datasets/data/digits.csv.gz' | head -n 1)
if [[ -z "$gz" ]]; then
  echo "fetch_digits: digits.csv.gz not found in python3-sklearn" >&2
  exit 1
fi
gzip -dc "$gz" > "$target.tmp"
lines=$(wc -l < "$target.tmp")
if [[ "$lines" -ne 1797 ]]; then
  echo "fetch_digits: expected 1797 samples, got $lines" >&2
  exit 1
fi
mv "$target.tmp" "$target"
echo "fetch_digits: cached $target"
