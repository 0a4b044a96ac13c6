#!/usr/bin/env bash
# The fleet key file's rules through tinyfed-admin: `keys new` makes a file
# of mode 0600 and never overwrites one; `keys device` refuses a key file
# others can read and one of the wrong size, each with one line naming the
# file, and prints 64 hex digits for a good one.
#
#   file_rules_test.sh ADMIN EXPECT_EXIT
set -uo pipefail
admin=$1
expect=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

bash "$expect" --one-line 0 '^wrote a new fleet key to .*/fleet.key \(mode 0600\)$' \
  -- "$admin" keys new --out "$work/fleet.key" || fail "keys new"
[[ "$(stat -c %a "$work/fleet.key")" == 600 ]] || fail "mode is $(stat -c %a "$work/fleet.key")"
[[ "$(stat -c %s "$work/fleet.key")" == 32 ]] || fail "size is $(stat -c %s "$work/fleet.key")"
before=$(od -An -tx1 -v "$work/fleet.key")
bash "$expect" --one-line nonzero \
  '^tinyfed-admin: .*/fleet.key: already exists; refusing to overwrite a key$' \
  -- "$admin" keys new --out "$work/fleet.key" || fail "second keys new"
[[ "$(od -An -tx1 -v "$work/fleet.key")" == "$before" ]] || fail "the existing key changed"
bash "$expect" --one-line 0 '^[0-9a-f]{64}$' \
  -- "$admin" keys device --fleet "$work/fleet.key" --device dev-0001 || fail "keys device"
chmod 644 "$work/fleet.key"
bash "$expect" --one-line nonzero \
  '^tinyfed-admin: .*/fleet.key: mode 0644 allows more than owner read/write \(0600\); run chmod 600 on it$' \
  -- "$admin" keys device --fleet "$work/fleet.key" --device dev-0001 || fail "mode 0644"
head -c 31 /dev/zero >"$work/short.key"
chmod 600 "$work/short.key"
bash "$expect" --one-line nonzero \
  '^tinyfed-admin: .*/short.key: expected exactly 32 bytes .*found 31$' \
  -- "$admin" keys device --fleet "$work/short.key" --device dev-0001 || fail "short key"
echo "OK"
