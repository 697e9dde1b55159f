#!/usr/bin/env bash
# Nsight Compute on the decode step at B = 1 (issue 18's weakest rows), for builds that already exist (e.g. the
# build-ab-* directories scripts/ab_session.sh leaves): per build, ncu's kernel times of the decode and combine
# kernels (cold caches, one run of bench_decode's B = 1 shapes); for the last build also the full sections of one
# warmed decode launch at B = 1, Hq/Hkv 32/8, context 8k, page 16 (details page as text: stall reasons, memory).
#   OUT=/tmp/out BUILDS="build-ab-base build-ab-new" bash bench/gpu/profile_decode.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT}
BUILDS=${BUILDS:?set BUILDS to build directories holding bench/gpu/bench_decode}
mkdir -p "$OUT"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
ARGS=(--batch 1 --ctx 8192 --heads 32/8,32/32 --qlen 1 --page 16 --force 1 --no-cluster 1 --long 0 --reps 3)
last=
for b in $BUILDS; do
  n=$(basename "$b")
  timeout 90 "$NCU" --clock-control none -k 'regex:decode' --csv --metrics \
    gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed \
    "$b/bench/gpu/bench_decode" --out "/tmp/pd_$n.json" "${ARGS[@]}" > "$OUT/ncu_times_$n.csv" 2>&1
  echo "ncu times $n: rc=$?"
  last=$b
done
n=$(basename "$last")
timeout 120 "$NCU" --clock-control none -k 'regex:decode_kernel' --launch-skip 10 --launch-count 1 --set full \
  -f -o "/tmp/pd_full_$n" "$last/bench/gpu/bench_decode" --out /tmp/pd_full.json --batch 1 --ctx 8192 --heads 32/8 \
  --qlen 1 --page 16 --no-cluster 1 --long 0 --reps 3 > "/tmp/pd_full_$n.log" 2>&1
echo "ncu full $n: rc=$?"
"$NCU" -i "/tmp/pd_full_$n.ncu-rep" --page details --print-details all > "$OUT/ncu_full_$n.txt" 2>&1
