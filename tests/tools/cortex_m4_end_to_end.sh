#!/usr/bin/env bash
# End to end with a real firmware image: tinyfed-server, the reference
# device firmware in qemu-system-arm (MPS2-AN386, UART0 on a loopback TCP
# socket), tinyfed-agent bridge between the two, and simulated devices
# (tinyfed-agent simulate) filling the rest of the round. The round must
# commit, and the firmware's update must be one of its accepted updates.
# Authentication is on end to end: the fixture step writes a test fleet key
# (fixture/fleet.key, mode 0600) and builds the firmware with its device key
# derived from it; the server verifies every request under that fleet key,
# the simulated devices sign with keys derived from the same file, and the
# bridge relays the firmware's signed bytes unchanged.
#
#   cortex_m4_end_to_end.sh SOURCE_DIR BUILD_DIR FIXTURE_GEN SERVER AGENT
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/qemu_device_lib.sh"
root=$(cd "$1" && pwd)
build=$2
gen=$3
server_bin=$4
agent_bin=$5
work="$build/e2e"
rm -rf "$work"
mkdir -p "$work/fixture"

# Firmware holding one device's shard and its device key in flash.
build_board_firmware "$root" "$build" "$gen" "$work/fixture" tinyfed_uart_device
fleet_key="$work/fixture/fleet.key"

# A server whose round closes at 3 updates: the firmware's and two simulated.
server_port=$(free_port)
cat > "$work/server.textproto" <<CONFIG
head { feature_count: 64 class_count: 10 feature_scale: 0.047244094488188976 }
plan { epochs: 2 batch_size: 8 learning_rate: 0.1 }
policy { target_updates: 3 min_updates: 3 over_selection: 1.0
         round_deadline_ms: 120000 retry_after_ms: 500 }
CONFIG
"$server_bin" --config "$work/server.textproto" --db "$work/store.db" \
  --listen "127.0.0.1:$server_port" --fleet_key "$fleet_key" > "$work/server.log" 2>&1 &
pids+=($!)

run_firmware_behind_bridge "$build/client-sdk/tinyfed_uart_device.elf" \
  "127.0.0.1:$server_port" "$agent_bin" "$work"
status=$firmware_status
if [[ $status -ne 0 ]] || ! grep -q "update accepted in round 1" "$work/firmware.log"; then
  echo "FAIL: the firmware's update was not accepted"
  exit 1
fi

"$agent_bin" simulate --server "127.0.0.1:$server_port" --fleet_key "$fleet_key" \
  --devices 20 --rounds 1 --progress=false > "$work/simulate.log" 2>&1
echo "simulated devices:"
sed 's/^/  /' "$work/simulate.log"
row=$(awk '$1 == "1" && NF >= 8 {print}' "$work/simulate.log")
read -r round version participants _ <<< "$row"
if [[ "$version" != "2" || "$participants" != "3" ]]; then
  echo "FAIL: round 1 should commit version 2 with 3 participants, got: $row"
  exit 1
fi
grep "round 1 reached its target" "$work/server.log" | sed 's/^/server: /'
echo "ok: round 1 committed version 2 with 3 updates, the firmware's among them"
