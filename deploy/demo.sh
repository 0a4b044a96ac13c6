#!/usr/bin/env bash
# The tinyfed demo: installs what is missing, builds the agent, and runs a
# fleet of 100 virtual devices on the digits data set against an
# in-process server for 30 rounds, printing one row per round.
#   deploy/demo.sh [extra simulate flags]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${TINYFED_BUILD_DIR:-"$root/build"}

"$root/deploy/setup.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target tinyfed-agent tinyfed-server
exec "$build/device-agent/tinyfed-agent" simulate --dataset digits --devices 100 --rounds 30 \
  --partition dirichlet --alpha 0.5 "$@"
