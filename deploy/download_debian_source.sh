#!/usr/bin/env bash
# Downloads the upstream tarball (*.orig.tar.*) of a Debian source package
# into a directory and prints its path: what fetch_nanopb_source.sh and
# fetch_mbedtls_source.sh build their caches from. The source index is
# fetched through a private apt configuration derived from the system's own
# package sources (their deb-src twins), so the system's apt state is left
# untouched and no deb-src line needs to be configured.
#   deploy/download_debian_source.sh PACKAGE DIR
# Exits 1 with one line on stderr when the package cannot be downloaded.
set -euo pipefail

package=$1
out=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$out"

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
cd "$out"
apt-get "${apt_opts[@]}" source --download-only -qq "$package" >/dev/null 2>&1 || true
orig=$(ls "${package}"_*.orig.tar.* 2>/dev/null | head -n 1 || true)
if [[ -z "$orig" ]]; then
  echo "download_debian_source: could not download the $package source package" >&2
  exit 1
fi
echo "$out/$orig"
