#!/usr/bin/env bash
# Runs a command and passes only when both its exit status and its output
# are the expected ones. CTest's WILL_FAIL accepts any failure (a crash, a
# missing file) and PASS_REGULAR_EXPRESSION ignores the exit status; this
# wrapper replaces both.
#
#   expect_exit.sh [--one-line] STATUS REGEX -- COMMAND [ARG...]
#
# STATUS is a number, or "nonzero" for any failure exit (a death by signal
# does not count). REGEX (grep -E) must match a line of the command's
# stdout and stderr together. --one-line: the output must be exactly one
# line (an error message, as operator tools promise).
set -uo pipefail
one_line=0
if [[ "${1:-}" == "--one-line" ]]; then
  one_line=1
  shift
fi
if [[ $# -lt 4 || "$3" != "--" ]]; then
  echo "usage: expect_exit.sh [--one-line] STATUS REGEX -- COMMAND [ARG...]" >&2
  exit 2
fi
want=$1
regex=$2
shift 3

output=$("$@" 2>&1)
got=$?
printf '%s\n' "$output"
echo "--- exit status $got"

fail=0
if [[ "$want" == "nonzero" ]]; then
  # 126/127: the command could not run; above 128: a signal. Neither is
  # the failure the test expects.
  if [[ $got -eq 0 || $got -ge 126 ]]; then
    echo "FAIL: expected a failure exit status (1..125), got $got"
    fail=1
  fi
elif [[ $got -ne $want ]]; then
  echo "FAIL: expected exit status $want, got $got"
  fail=1
fi
if ! grep -qE -- "$regex" <<<"$output"; then
  echo "FAIL: no line of the output matches: $regex"
  fail=1
fi
if [[ $one_line -eq 1 ]]; then
  lines=$(printf '%s\n' "$output" | wc -l)
  if [[ -z "$output" || $lines -ne 1 ]]; then
    echo "FAIL: expected exactly one line of output, got $lines"
    fail=1
  fi
fi
if [[ $fail -eq 0 ]]; then
  echo "ok: exit status $got and the expected output"
fi
exit $fail
