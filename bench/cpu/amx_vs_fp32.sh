#!/usr/bin/env bash
# bf16 forward on this machine's cores: main's engine (BASE, optional) vs this build's fp32 product path
# vs its AMX path vs its AVX512-BF16 path (FLATATTN_CPU_MATMUL, src/cpu/amx/amx.h), each checked against the fp64 oracle on
# sampled rows by `flatattn run`. Prints one markdown table row per shape.
#   usage: bench/cpu/amx_vs_fp32.sh BUILD/cli/flatattn [BASE/cli/flatattn]
#   ONLY=<grep -E pattern>: only the shapes whose label matches.
set -euo pipefail
NEW=$1
BASE=${2:-}
REPS=${REPS:-5}
one() {  # binary, env value, args... -> "ms gflops kernel pass"
  local bin=$1 path=$2
  shift 2
  FLATATTN_CPU_MATMUL=$path "$bin" run --mode fwd --dtype bf16 --no-naive --json --reps "$REPS" "$@" 2>/dev/null |
    python3 -c "import json,sys; r=json.load(sys.stdin)['results'][0]; print('%.2f %.0f %s %s' % (r['median_ms'], r['gflops'], r['report']['kernel'], r['check'].get('pass')))"
}
echo "| shape | base main ms | fp32 path ms (GFLOP/s) | AMX path ms (GFLOP/s) | AVX512-BF16 path ms (GFLOP/s) | AMX / fp32 | AVX512-BF16 / fp32 | kernels | oracle check |"
echo "|---|---|---|---|---|---|---|---|---|"
while read -r label args; do
  [ -z "$label" ] && continue
  if [ -n "${ONLY:-}" ] && ! grep -qE "$ONLY" <<<"$label"; then continue; fi
  b="-"
  if [ -n "$BASE" ]; then read -r bms _ _ _ <<<"$(one "$BASE" fp32 $args)"; b=$bms; fi
  read -r fms fgf fk fp <<<"$(one "$NEW" fp32 $args)"
  read -r ams agf ak ap <<<"$(one "$NEW" amx $args)"
  read -r vms vgf vk vp <<<"$(one "$NEW" avx512bf16 $args)"
  sp=$(python3 -c "print('%.2fx' % ($fms / $ams))")
  sv=$(python3 -c "print('%.2fx' % ($fms / $vms))")
  echo "| $label | $b | $fms ($fgf) | $ams ($agf) | $vms ($vgf) | $sp | $sv | $fk / $ak / $vk | $fp / $ap / $vp |"
done <<'SHAPES'
B1_N1024_H12_D64_causal -b 1 -n 1024 --hq 12 -d 64 --causal
B1_N1024_H12_D64_full -b 1 -n 1024 --hq 12 -d 64 --no-causal
B2_N1024_H12_D64_causal -b 2 -n 1024 --hq 12 -d 64 --causal
B4_N1024_H12_D64_causal -b 4 -n 1024 --hq 12 -d 64 --causal
B8_N1024_H12_D64_causal -b 8 -n 1024 --hq 12 -d 64 --causal
B8_N1024_H12_D64_full -b 8 -n 1024 --hq 12 -d 64 --no-causal
B1_N4096_H32/8_D128_causal -b 1 -n 4096 --hq 32 --hkv 8 -d 128 --causal
B1_N4096_H32/8_D128_full -b 1 -n 4096 --hq 32 --hkv 8 -d 128 --no-causal
SHAPES
