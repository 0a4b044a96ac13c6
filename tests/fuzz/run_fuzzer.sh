#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time, starting from its seeds, and
# passes only when it ran them all, executed mutations and found nothing.
#
#   run_fuzzer.sh FUZZER SEED_DIR CORPUS_DIR SECONDS
#
# CORPUS_DIR is emptied first and receives the inputs that found new
# coverage in this run (so each run starts from the same seeds); a crashing
# input is kept beside it as CORPUS_DIR-crash-<sha1> (or -leak-, -timeout-,
# -oom-), with the command that reproduces it, until the next run.
set -uo pipefail
if [[ $# -ne 4 ]]; then
  echo "usage: run_fuzzer.sh FUZZER SEED_DIR CORPUS_DIR SECONDS" >&2
  exit 2
fi
fuzzer=$1 seeds=$2 corpus=$3 seconds=$4

# libFuzzer skips empty files (it always runs the empty input anyway).
seed_count=$(find "$seeds" -type f -size +0 2>/dev/null | wc -l)
if [[ "$seed_count" -eq 0 ]]; then
  echo "FAIL: no seeds in $seeds: the fuzz.build fixture did not write them"
  exit 1
fi
rm -rf "$corpus" "$corpus"-*
mkdir -p "$corpus"
# The fuzzer's own temporary files (server_round's store) go to a directory
# of this run, removed even when a finding aborts the fuzzer before its
# clean-up.
scratch=$(mktemp -d "${TMPDIR:-/tmp}/tinyfed-fuzz-run-XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export TMPDIR=$scratch

# -timeout: one input taking over 10 s is a hang, a finding. -rss_limit_mb:
# the default, stated. -print_final_stats: the executions, for the check below.
output=$("$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
           -print_final_stats=1 -artifact_prefix="$corpus-" "$corpus" "$seeds" 2>&1)
status=$?
printf '%s\n' "$output" | grep -E "INFO: seed corpus|INITED|DONE|Done [0-9]+ runs|stat::|==ERROR|SUMMARY|runtime error|Test unit written" | head -40
if [[ $status -ne 0 ]]; then
  printf '%s\n' "$output" | tail -60
  echo "FAIL: $(basename "$fuzzer") exited with status $status (a finding, above)"
  for artifact in "$corpus"-*; do
    [[ -f "$artifact" ]] && echo "reproduce: $fuzzer $artifact"
  done
  exit 1
fi
# A run that read no seed, or stopped before mutating, proves nothing.
read_seeds=$(printf '%s\n' "$output" | sed -n 's/.*INFO: seed corpus: files: \([0-9]*\).*/\1/p' | head -1)
if [[ -z "$read_seeds" || "$read_seeds" -ne "$seed_count" ]]; then
  echo "FAIL: the fuzzer read ${read_seeds:-no} seed files, expected $seed_count"
  exit 1
fi
runs=$(printf '%s\n' "$output" | sed -n 's/^stat::number_of_executed_units: *\([0-9]*\)$/\1/p' | tail -1)
if [[ -z "$runs" || "$runs" -le "$seed_count" ]]; then
  echo "FAIL: ${runs:-no} executions for $seed_count seeds: nothing was mutated"
  exit 1
fi
echo "PASS: $runs executions in ${seconds}s from $seed_count seeds, no finding"
