#!/usr/bin/env bash
# End to end of serving with a real firmware image: a device that is never
# chosen for training receives the promoted version over the bridge and
# classifies with it bit-exactly as the host SDK does.
#
#   1. tinyfed-server with staged rollout (canary 10%, 3 devices to decide)
#      and tinyfed-agent simulate training against it until a version
#      later than 1 is promoted (Admin status: serving_version);
#   2. rounds paused (tinyfed-admin pause), so no device is handed work;
#   3. the serving firmware (client-sdk/examples/serving-device) in
#      qemu-system-arm behind tinyfed-agent bridge: it checks in serving
#      nothing, must be sent the serving version (its id hashes outside the
#      canary, checked here), decodes it, prints its version, the CRC-32 of
#      its decoded model buffer, the class of each fixture sample and its
#      evaluation, checks in again with that evaluation and must get a
#      retry, no model and no work;
#   4. the same version exported from the server (tinyfed-admin export) and
#      run through tinyfed_serving_reference, the host build of the SDK
#      doing the same decode, classification and evaluation on the same
#      samples: every result line must be equal.
# Authentication is on end to end, as in cortex_m4_end_to_end.sh.
#
#   cortex_m4_serving_end_to_end.sh SOURCE_DIR BUILD_DIR FIXTURE_GEN \
#       SERVING_REFERENCE SERVER AGENT ADMIN
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/qemu_device_lib.sh"
root=$(cd "$1" && pwd)
build=$2
gen=$3
reference=$4
server_bin=$5
agent_bin=$6
admin_bin=$7
work="$build/serving-e2e"
rm -rf "$work"
mkdir -p "$work/fixture"

# A field of the JSON document on stdin.
json_field() {
  python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
fail() {
  echo "FAIL: $*"
  exit 1
}

# Firmware holding one device's id, key and samples in flash.
build_board_firmware "$root" "$build" "$gen" "$work/fixture" tinyfed_serving_device
fleet_key="$work/fixture/fleet.key"

# The firmware must be outside the canary, so that the version meant for it
# is the serving one: its bucket by rollout_bucket.h's rule, computed here
# independently of the server.
canary_fraction=0.1
device_id=$(sed -n 's/^#define FIXTURE_DEVICE_ID "\(.*\)"$/\1/p' "$work/fixture/fixture.h")
bucket=$(python3 -c 'import hashlib, sys
print(int.from_bytes(hashlib.sha256(sys.argv[1].encode()).digest()[:8], "big") % 10000)' \
  "$device_id")
if (( bucket < 1000 )); then
  fail "device $device_id is in the canary of $canary_fraction (bucket $bucket): choose another fraction"
fi

server_port=$(free_port)
server="127.0.0.1:$server_port"
# Rounds of 5 updates; a candidate is decided on 3 devices' evaluations,
# which the next round's training updates carry (they evaluate their base
# version, the candidate). Evaluation-only tasks are off so that the
# decision does not hang on how many idle devices happen to check in.
cat > "$work/server.textproto" <<CONFIG
head { feature_count: 64 class_count: 10 feature_scale: 0.047244094488188976 }
plan { epochs: 2 batch_size: 8 learning_rate: 0.1 }
policy { target_updates: 5 min_updates: 5 over_selection: 1.0
         round_deadline_ms: 120000 retry_after_ms: 500 }
rollout { canary_fraction: $canary_fraction min_devices: 3 }
evaluation { tasks_per_round: 0 }
CONFIG
"$server_bin" --config "$work/server.textproto" --db "$work/store.db" \
  --listen "$server" --fleet_key "$fleet_key" > "$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  "$admin_bin" status --server "$server" > /dev/null 2>&1 && break
  sleep 0.1
done

# Training until a version beyond the initial one serves. The first
# committed version is a candidate at once; the next round's updates carry
# its evaluations, and its close decides it.
rounds=6
"$agent_bin" simulate --server "$server" --fleet_key "$fleet_key" \
  --devices 20 --rounds "$rounds" --progress=false > "$work/simulate.log" 2>&1 ||
  { sed 's/^/  /' "$work/simulate.log"; fail "the simulated devices failed"; }
echo "simulated devices:"
sed 's/^/  /' "$work/simulate.log"

"$admin_bin" pause --server "$server" --reason "serving test: no device gets work" \
  --json > "$work/paused.json"
"$admin_bin" status --server "$server" --json > "$work/status-before.json"
serving=$(json_field serving_version < "$work/status-before.json")
candidate=$(json_field candidate_version < "$work/status-before.json")
echo "server: serving version $serving, candidate ${candidate} (0: none), rounds paused"
if (( serving < 2 )); then
  grep -iE "promot|roll" "$work/server.log" | sed 's/^/server: /' || true
  fail "no version beyond 1 was promoted in $rounds rounds (serving version $serving)"
fi

run_firmware_behind_bridge "$build/client-sdk/tinyfed_serving_device.elf" \
  "$server" "$agent_bin" "$work"
status=$firmware_status
(( status == 0 )) || fail "the firmware did not serve (exit $status)"
grep -q "no model again: retry" "$work/firmware.log" ||
  fail "the firmware's check-in with its served model was not answered with a retry"

"$admin_bin" status --server "$server" --json > "$work/status-after.json"
after=$(json_field serving_version < "$work/status-after.json")
(( after == serving )) || fail "the serving version changed from $serving to $after meanwhile"

# The host SDK on the same version's bytes and the same samples.
"$admin_bin" export --server "$server" --version "$serving" --format proto \
  --out "$work/model.pb" > /dev/null
"$reference" "$work/model.pb" "$work/fixture/fixture.h" > "$work/host.txt"
grep '^result ' "$work/firmware.log" | tr -d '\r' > "$work/firmware.txt" || true
echo "host SDK:"
sed 's/^/  /' "$work/host.txt"
[[ $(sed -n 's/^result version //p' "$work/firmware.txt") == "$serving" ]] ||
  fail "the firmware did not receive the serving version $serving"
labels=$(sed -n 's/^result labels //p' "$work/host.txt")
# Equal labels would compare little if the model put every sample in one
# class: make sure the comparison covers more than a constant.
[[ $(fold -w1 <<< "$labels" | sort -u | wc -l) -ge 2 ]] ||
  fail "the model puts every fixture sample in one class; the comparison would show little"
if ! diff -u "$work/host.txt" "$work/firmware.txt"; then
  fail "the firmware's results differ from the host SDK's (- host, + firmware)"
fi
echo "ok: the firmware ($device_id, never given work) serves version $serving, bit-exact with the host SDK"
