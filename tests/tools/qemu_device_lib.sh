# Sourced by the scripts that run a firmware image against a live server
# (cortex_m4_end_to_end.sh, cortex_m4_serving_end_to_end.sh): free ports,
# the processes to end on exit, and the firmware in qemu-system-arm
# (MPS2-AN386, UART0 on a loopback TCP socket) behind tinyfed-agent bridge.
# Sourcing sets an EXIT trap that ends every process in `pids`.
source "$(dirname "${BASH_SOURCE[0]}")/cortex_m4_configure.sh"

# A TCP port on the loopback interface that nothing listens on now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

#   build_board_firmware ROOT BUILD_DIR FIXTURE_GEN FIXTURE_DIR TARGET
# Writes a device's fixture (its id, key and samples, and the test fleet
# key FIXTURE_DIR/fleet.key it is derived from) with FIXTURE_GEN, then
# configures the Cortex-M4 build in BUILD_DIR with it and builds TARGET
# (BUILD_DIR/client-sdk/TARGET.elf).
build_board_firmware() {
  local root=$1 build=$2 gen=$3 fixture=$4 target=$5
  "$gen" "$fixture"
  cortex_m4_configure "$root" "$build" -DTINYFED_FIXTURE_DIR="$fixture"
  cmake --build "$build" --target "$target" >/dev/null
}

#   run_firmware_behind_bridge ELF SERVER AGENT WORK_DIR
# Boots ELF in qemu with its UART on a free port, waits for qemu to listen
# there, bridges it to SERVER (host:port) with AGENT, and waits for the
# firmware to exit (at most 120 s). Its exit status lands in
# firmware_status; its log in WORK_DIR/firmware.log and the bridge's in
# WORK_DIR/bridge.log, both printed.
run_firmware_behind_bridge() {
  local elf=$1 server=$2 agent=$3 work=$4 uart_port qemu_pid
  uart_port=$(free_port)
  timeout 120 qemu-system-arm -M mps2-an386 -nographic -semihosting -monitor none \
    -serial "tcp:127.0.0.1:$uart_port,server=on,wait=on" \
    -kernel "$elf" > "$work/firmware.log" 2>&1 &
  qemu_pid=$!
  pids+=($qemu_pid)
  # qemu holds the firmware until a client connects; the bridge must not
  # try before the socket is there.
  for _ in $(seq 50); do
    grep -q "waiting for connection" "$work/firmware.log" 2>/dev/null && break
    sleep 0.1
  done
  "$agent" bridge --device "tcp:127.0.0.1:$uart_port" --server "$server" \
    > "$work/bridge.log" 2>&1 &
  pids+=($!)
  firmware_status=0
  wait "$qemu_pid" || firmware_status=$?
  echo "firmware (exit $firmware_status):"
  sed 's/^/  /' "$work/firmware.log"
  echo "bridge:"
  sed 's/^/  /' "$work/bridge.log"
}
