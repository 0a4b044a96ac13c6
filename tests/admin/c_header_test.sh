#!/usr/bin/env bash
# `tinyfed-admin keys device --format c` gives a header a C99 firmware build
# compiles with warnings as errors, whose bytes are the derivation computed
# independently by python3's hmac module, and whose id survives the
# characters that could break a literal or a comment ('"', '\', '*/', '??/').
#
#   c_header_test.sh ADMIN CC
set -euo pipefail
admin=$1
cc=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$admin" keys new --out "$work/fleet.key" >/dev/null
id='a*/"??/\b~'
"$admin" keys device --fleet "$work/fleet.key" --device "$id" --format c >"$work/device_key.h"
cat >"$work/main.c" <<'C'
#include <stdio.h>
#include "device_key.h"
int main(void) {
  size_t i;
  for (i = 0; i < sizeof tinyfed_device_key; ++i) printf("%02x", tinyfed_device_key[i]);
  printf("\n%s\n", tinyfed_device_id);
  return sizeof tinyfed_device_key == 32 ? 0 : 1;
}
C
"$cc" -std=c99 -pedantic -Wall -Wextra -Werror -trigraphs -I"$work" -o "$work/main" "$work/main.c"
"$work/main" >"$work/out"

want_key=$(python3 -c 'import hmac,hashlib,sys
key = open(sys.argv[1], "rb").read()
print(hmac.new(key, b"tinyfed/v1 device key\0" + sys.argv[2].encode(), hashlib.sha256).hexdigest())' \
  "$work/fleet.key" "$id")
got_key=$(sed -n 1p "$work/out")
got_id=$(sed -n 2p "$work/out")
hex_key=$("$admin" keys device --fleet "$work/fleet.key" --device "$id" --format hex)
if [[ "$got_key" != "$want_key" ]]; then
  echo "FAIL: header key $got_key, python3 hmac gives $want_key"; exit 1
fi
if [[ "$hex_key" != "$want_key" ]]; then
  echo "FAIL: --format hex gives $hex_key, python3 hmac gives $want_key"; exit 1
fi
if [[ "$got_id" != "$id" ]]; then
  echo "FAIL: header id '$got_id', expected '$id'"; exit 1
fi
# The fleet key itself must not be in the header, in any case of hex.
fleet_hex=$(od -An -tx1 -v "$work/fleet.key" | tr -d ' \n')
if tr -d ' ,\n' <"$work/device_key.h" | sed 's/0x//g' | grep -qi "${fleet_hex:0:16}"; then
  echo "FAIL: the header holds fleet key bytes"; exit 1
fi
echo "OK: the header compiles as C99 and holds python3's HMAC for id '$id'"
