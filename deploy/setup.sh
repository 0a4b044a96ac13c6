#!/usr/bin/env bash
# Installs the Debian packages tinyfed builds and tests with. Idempotent and
# quiet when everything is present; needs root (or sudo) only when something
# is missing.
#
#   deploy/setup.sh            everything (server, agent, SDK, tests)
#   deploy/setup.sh --sdk      only what the C99 SDK build needs
set -euo pipefail

sdk_packages=(
  build-essential cmake ninja-build
  protobuf-compiler nanopb libnanopb-dev libmbedtls-dev
)
full_packages=(
  "${sdk_packages[@]}"
  libprotobuf-dev libgrpc++-dev protobuf-compiler-grpc
  libabsl-dev libeigen3-dev libspdlog-dev libsqlite3-dev
  libssl-dev openssl
  libcpp-httplib-dev python3-prometheus-client systemd chromium
  libgtest-dev libgmock-dev libbenchmark-dev python3-grpcio
  gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
  clang-14 libclang-rt-14-dev
)

packages=("${full_packages[@]}")
if [[ "${1:-}" == "--sdk" ]]; then
  packages=("${sdk_packages[@]}")
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "setup: installing ${missing[*]}"
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup: done"
fi

# The digits data set for `tinyfed-agent simulate`, and nanopb's runtime
# sources for the Cortex-M build (neither is needed by a host SDK build).
if [[ "${1:-}" != "--sdk" ]]; then
  "$here/fetch_digits.sh"
  "$here/fetch_nanopb_source.sh"
fi
