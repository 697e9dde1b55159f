#!/usr/bin/env bash
# The CPU measurement of record (issue 2): `flatattn bench` (Flash vs FLAT vs naive over N, SGEMM
# ceiling measured in the same run, measured peak memory) on this machine, causal and not.
#   bash bench/cpu_bench.sh [extra `flatattn bench` flags]
# Writes bench/results/cpu-<date>-{causal,dense}.{json,csv,txt} and cpu-<date>-machine.txt; the
# cpu-<date>.md summary is written from them (numbers, machine, commit, who wins where).
# Environment: BIN (default build/cli/flatattn), MAX_LOAD (default 0.3) and WAIT_S (default 900): wait
# up to WAIT_S seconds for the 1-minute load average to fall below MAX_LOAD, then measure anyway and
# record the load (the JSON has it too).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/cli/flatattn}
MAX_LOAD=${MAX_LOAD:-0.3}
WAIT_S=${WAIT_S:-900}
[[ -x $BIN ]] || { echo "build $BIN first: cmake --build build --target flatattn_cli" >&2; exit 2; }

quiet() { awk -v max="$MAX_LOAD" '{ exit !($1 < max) }' /proc/loadavg; }
waited=0
until quiet || ((waited >= WAIT_S)); do
  echo "waiting for a quiet machine: load $(cut -d' ' -f1-3 /proc/loadavg) (MAX_LOAD=$MAX_LOAD)" >&2
  sleep 30
  waited=$((waited + 30))
done

date=$(date -u +%Y-%m-%d)
out=bench/results/cpu-$date
mkdir -p bench/results
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- src include cli || echo ' (with local changes)')"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|L1d|L2|L3|Hypervisor)'
  echo "isa: $(grep -o -w -E 'avx2|avx512f|avx512_bf16|amx_bf16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  grep MemTotal /proc/meminfo
} | tee "$out-machine.txt"

for mask in causal dense; do
  flag=--causal
  [[ $mask == dense ]] && flag=--no-causal
  "$BIN" bench $flag --json "$out-$mask.json" --csv "$out-$mask.csv" "$@" | tee "$out-$mask.txt"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out-machine.txt"
