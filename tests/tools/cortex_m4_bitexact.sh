#!/usr/bin/env bash
# Bit-exactness across architectures: the same tasks and samples trained on
# the host (x86-64) and in the emulated Cortex-M4 (qemu-system-arm, board
# MPS2-AN386, semihosting) must produce identical update bytes. Case 0 is a
# 64x10 head, timed; the other cases are shaped to take the M4 kernels'
# other paths (see tests/client-sdk/fixture_gen.cc).
#
#   cortex_m4_bitexact.sh SOURCE_DIR BUILD_DIR FIXTURE_GEN
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cortex_m4_configure.sh"
root=$(cd "$1" && pwd)
build=$2
gen=$3
fixture="$build/fixture"
mkdir -p "$fixture"

"$gen" "$fixture"
cortex_m4_configure "$root" "$build" -DTINYFED_FIXTURE_DIR="$fixture"
cmake --build "$build" --target tinyfed_bitexact >/dev/null

# -icount shift=0: virtual time advances by one step per instruction, so
# the firmware's SysTick measures instructions (calibrated in the firmware).
output=$(timeout 120 qemu-system-arm -M mps2-an386 -nographic -semihosting -monitor none \
           -serial null -icount shift=0 -kernel "$build/client-sdk/tinyfed_bitexact.elf")
device=$(printf '%s\n' "$output" | grep '^update ' || true)
host=$(cat "$fixture/expected.hex")
if [[ -z "$device" ]]; then
  echo "FAIL: the firmware printed no update: $output"
  exit 1
fi
first=$(printf '%s\n' "$host" | head -n 1 | cut -d' ' -f3)
echo "host updates:      $(printf '%s\n' "$host" | wc -l) (${#first} hex digits in case 0)"
echo "Cortex-M4 updates: $(printf '%s\n' "$device" | wc -l)"
if [[ "$device" != "$host" ]]; then
  echo "FAIL: the updates differ"
  diff <(printf '%s\n' "$host") <(printf '%s\n' "$device") | cut -c1-200
  printf '%s\n' "$output" | grep '^error' || true
  exit 1
fi
echo "ok: identical update bytes on x86-64 and the emulated Cortex-M4 in every case"
read -r cal_ticks cal_insns < <(printf '%s\n' "$output" | sed -n 's/^calibration \([0-9]*\) ticks for \([0-9]*\) instructions$/\1 \2/p')
read -r train_ticks steps < <(printf '%s\n' "$output" | sed -n 's/^training \([0-9]*\) ticks for \([0-9]*\) sample steps$/\1 \2/p')
if [[ -n "${cal_ticks:-}" && "${cal_ticks:-0}" -gt 0 ]]; then
  per_sample=$(( train_ticks * cal_insns / cal_ticks / steps ))
  echo "instructions per training sample (64x10 head, batch 8, incl. batch updates and delta quantization): $per_sample"
  echo "  (training $train_ticks ticks over $steps sample steps; calibration $cal_ticks ticks = $cal_insns instructions)"
fi
printf '%s\n' "$output" | grep '^stack ' | sed 's/^/peak /' || true
