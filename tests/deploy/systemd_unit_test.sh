#!/usr/bin/env bash
# Checks deploy/tinyfed-server.service three ways:
#   1. `systemd-analyze verify` accepts it without a single warning (verify
#      exits 0 on unknown keys and keys in the wrong section, so any output
#      is a failure here);
#   2. systemd's own reading of it (`systemd-analyze security --offline`)
#      has every hardening setting the unit promises in effect;
#   3. its ExecStart command line, with %S pointed at a scratch directory
#      and the example config, starts the server under UMask=0077: the
#      store and the fleet key are created in the state directory, the key
#      0600, and SIGTERM stops it with status 0.
#
#   systemd_unit_test.sh UNIT SERVER_BINARY EXAMPLE_CONFIG WORK_DIR
#
# verify needs ExecStart's binary to exist, so it runs on a copy whose
# ExecStart names the built binary.
set -euo pipefail
if [[ $# -ne 4 ]]; then
  echo "usage: systemd_unit_test.sh UNIT SERVER_BINARY EXAMPLE_CONFIG WORK_DIR" >&2
  exit 2
fi
unit=$1
server=$2
example_config=$3
work=$4
installed_binary=/usr/local/bin/tinyfed-server

fail() {
  echo "FAIL: $*"
  exit 1
}

command -v systemd-analyze >/dev/null ||
  fail "systemd-analyze not found (Debian: systemd; deploy/setup.sh installs it)"

rm -rf "$work"
mkdir -p "$work/units"
copy="$work/units/tinyfed-server.service"
exec_lines=$(grep -c "^ExecStart=$installed_binary " "$unit" || true)
[[ "$exec_lines" == 1 ]] ||
  fail "$unit: expected one ExecStart= line running $installed_binary, found $exec_lines"
sed "s#^ExecStart=$installed_binary #ExecStart=$server #" "$unit" >"$copy"

# 1. verify: status 0 and nothing said.
set +e
verify_output=$(systemd-analyze verify --man=no "$copy" 2>&1)
verify_status=$?
set -e
if [[ $verify_status -ne 0 || -n "$verify_output" ]]; then
  printf '%s\n' "$verify_output"
  fail "systemd-analyze verify: status $verify_status, and it must say nothing"
fi
echo "verify: clean"

# 2. The hardening promised, as systemd reads it. Names are the json_field
# of each check (systemd 252); a name this systemd does not know fails too,
# so a renamed check is looked at rather than skipped.
required=(
  UserOrDynamicUser NoNewPrivileges ProtectSystem ProtectHome PrivateTmp PrivateDevices
  ProtectKernelTunables ProtectKernelModules ProtectKernelLogs ProtectControlGroups
  ProtectClock ProtectHostname ProtectProc PrivateUsers RestrictSUIDSGID RestrictRealtime
  LockPersonality MemoryDenyWriteExecute RemoveIPC SystemCallArchitectures UMask
  RestrictAddressFamilies_AF_PACKET RestrictAddressFamilies_AF_NETLINK
  RestrictAddressFamilies_OTHER
  RestrictNamespaces_user RestrictNamespaces_net RestrictNamespaces_mnt
  SystemCallFilter_privileged SystemCallFilter_mount SystemCallFilter_module
  SystemCallFilter_raw_io SystemCallFilter_reboot SystemCallFilter_swap
  SystemCallFilter_debug SystemCallFilter_clock SystemCallFilter_obsolete
  CapabilityBoundingSet_CAP_SYS_ADMIN CapabilityBoundingSet_CAP_NET_ADMIN
  CapabilityBoundingSet_CAP_SET_UID_GID_PCAP CapabilityBoundingSet_CAP_SYS_PTRACE
  CapabilityBoundingSet_CAP_CHOWN_FSETID_SETFCAP AmbientCapabilities
)
systemd-analyze security --offline=true --json=short "$copy" >"$work/security.json" ||
  fail "systemd-analyze security --offline failed"
python3 - "$work/security.json" "${required[@]}" <<'EOF'
import json
import sys

checks = {c["json_field"]: c for c in json.load(open(sys.argv[1]))}
bad = []
for name in sys.argv[2:]:
    if name not in checks:
        bad.append(f"{name}: no such check in this systemd")
    elif not checks[name]["set"]:
        bad.append(f"{name}: not in effect ({checks[name]['description']})")
if bad:
    print("FAIL: hardening the unit promises is missing:\n  " + "\n  ".join(bad))
    sys.exit(1)
print(f"security: {len(sys.argv) - 2} hardening checks in effect")
EOF

# 3. The command line itself, run as systemd would run it (minus the
# sandbox): %S -> a scratch /var/lib, the config -> the example, and an
# ephemeral port so the test never collides with a running server.
exec_line=$(grep "^ExecStart=$installed_binary " "$unit")
state_root="$work/var-lib"
state_dir_name=$(sed -n 's/^StateDirectory=//p' "$unit")
[[ -n "$state_dir_name" ]] || fail "$unit: no StateDirectory="
mkdir -p "$state_root/$state_dir_name"
read -r -a argv <<<"${exec_line#ExecStart=}"
argv[0]=$server
for i in "${!argv[@]}"; do
  argv[i]=${argv[i]//%S/$state_root}
  [[ "${argv[i]}" == /etc/tinyfed/server.textproto ]] && argv[i]=$example_config
done
umask_value=$(sed -n 's/^UMask=//p' "$unit")
[[ -n "$umask_value" ]] || fail "$unit: no UMask="
log="$work/server.log"
(
  umask "$umask_value"
  cd "$work"
  exec "${argv[@]}" --listen 127.0.0.1:0 >"$log" 2>&1
) &
pid=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$log" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "listening on" "$log"; then
  kill "$pid" 2>/dev/null || true
  cat "$log"
  fail "the server did not start with the unit's command line: ${argv[*]}"
fi
key="$state_root/$state_dir_name/tinyfed.db.fleet.key"
store="$state_root/$state_dir_name/tinyfed.db"
kill -TERM "$pid"
set +e
wait "$pid"
status=$?
set -e
cat "$log"
[[ $status -eq 0 ]] || fail "SIGTERM: exit status $status, expected 0"
[[ -f "$store" ]] || fail "no store at $store: --db is not in the state directory"
[[ -f "$key" ]] || fail "no fleet key at $key"
for f in "$store" "$key"; do
  mode=$(stat -c %a "$f")
  [[ "$mode" == 600 ]] || fail "$f: mode $mode, expected 600 under UMask=$umask_value"
done
echo "PASS"
