#!/usr/bin/env bash
# Where dropout's time goes on Hopper (issue 15): builds only the plain and dropout bf16 instances (sm90, D = 64
# and 128), times bench_bwd --dropout 0.1 (B * N = 16k, H = 16), then takes Nsight Compute profiles of the forward
# and the backward main kernel with and without dropout (same shape, N = 4096, non-causal): issue-slot use, stall
# reasons, the instruction mix per pipe, and the SASS hot spots of the dropout kernels. Reports land in $OUT.
#   OUT=/tmp/out [D_LIST="64 128"] [N=4096] [BUILD=dir: reuse a build that has bench_bwd] [TIMING=0] [TIMING_N=list]
#   [PEERS=0] [PROF="fwd bwd": which kernels ncu profiles] bash bench/gpu/profile_dropout.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT}
D_LIST=${D_LIST:-"64 128"}
N=${N:-4096}
BUILD=${BUILD:-/tmp/pd-build}
mkdir -p "$OUT"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
t0=$(date +%s)
[[ -x $BUILD/bench/gpu/bench_bwd ]] || cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLATATTN_CUDA=ON -DFLATATTN_CUDA_ARCHS=90 \
  -DFLATATTN_HDIMS="64;128" -DFLATATTN_DTYPES=bf16 -DFLATATTN_VARIANTS="plain;dropout" -DFLATATTN_CUDA_PTX75=OFF \
  -DFLATATTN_BUILD_TESTS=OFF -DFLATATTN_BUILD_CLI=OFF -DFLATATTN_CUDA_PTXAS_VERBOSE=ON > "$OUT/build.log" 2>&1 &&
  ninja -C "$BUILD" bench_bwd >> "$OUT/build.log" 2>&1
echo "build rc=$? $(( $(date +%s) - t0 )) s"
grep -E "registers|spill" "$OUT/build.log" | grep -iE "dropout|ws_fwd|bwd" | sort | uniq | head -40 > "$OUT/ptxas.txt"
# Timing first (no profiler): fwd, bwd, fwd+bwd with and without dropout, same run.
if [[ ${TIMING:-1} == 1 ]]; then
  "$BUILD/bench/gpu/bench_bwd" --d 64,128 --n ${TIMING_N:-1024,2048,4096,8192} --dropout 0.1 --out "$OUT/timing.json" \
    > "$OUT/timing.txt" 2>&1
  cat "$OUT/timing.txt"
fi
# SDPA's FlashAttention-2 and cuDNN backends with the same dropout, same grid, same run (PEERS=0: skip).
if [[ ${PEERS:-1} == 1 ]]; then
  PEERS_DROPOUT=0.1 PEERS_N=${TIMING_N:-1024,2048,4096,8192} OUT=$OUT timeout 240 python3 bench/gpu/peers_sdpa_bwd.py \
    > "$OUT/peers.txt" 2>&1
  tail -3 "$OUT/peers.txt"
fi
SEC=(--section SpeedOfLight --section WarpStateStats --section InstructionStats --section SchedulerStats
     --section ComputeWorkloadAnalysis --section LaunchStats --section Occupancy)
# prof NAME MANGLED_REGEX SKIP SRC(0|1) CMD...: one launch of the kernel whose mangled name matches.
prof() {
  local name=$1 re=$2 skip=$3 src=$4; shift 4
  local extra=()
  [[ $src == 1 ]] && extra=(--section SourceCounters --import-source no)
  timeout 150 "$NCU" --clock-control none --kernel-name-base mangled -k "regex:$re" --launch-skip "$skip" \
    --launch-count 1 "${SEC[@]}" "${extra[@]}" -f -o "$OUT/$name" "$@" > "$OUT/$name.run.log" 2>&1
  "$NCU" -i "$OUT/$name.ncu-rep" --page details --print-details all > "$OUT/$name.details.txt" 2>&1
  "$NCU" -i "$OUT/$name.ncu-rep" --page raw > "$OUT/$name.raw.txt" 2>&1
  [[ $src == 1 ]] && "$NCU" -i "$OUT/$name.ncu-rep" --page source --csv --print-source sass > "$OUT/$name.sass.csv" 2>&1
  rm -f "$OUT/$name.ncu-rep"
  echo "== $name"
  grep -E "^\s+(Duration|Executed Ipc A|Issue Slots Busy|Issued Warp Per|No Eligible|Registers Per|Achieved Occ|Compute \(SM\) Thr)" \
    "$OUT/$name.details.txt" | head -12
}
for d in $D_LIST; do
  run=("$BUILD/bench/gpu/bench_bwd" --d "$d" --n "$N" --reps 1 --dropout 0.1 --out /tmp/pd_$d.json)
  if [[ " ${PROF:-fwd bwd} " == *" fwd "* ]]; then
    prof fwd_plain_d$d 'ws_fwd.*6NoProb' 2 0 "${run[@]}"
    prof fwd_drop_d$d 'ws_fwd.*11DropoutProb' 2 1 "${run[@]}"
  fi
  if [[ " ${PROF:-fwd bwd} " == *" bwd "* ]]; then
    prof bwd_plain_d$d 'flash_bwd_kernel.*6NoProb' 2 0 "${run[@]}"
    prof bwd_drop_d$d 'flash_bwd_kernel.*11DropoutProb' 2 1 "${run[@]}"
  fi
done
# The pipes and stall reasons side by side (raw metric names, plain vs dropout).
python3 - "$OUT" $D_LIST <<'PY'
import os, sys
out, ds = sys.argv[1], sys.argv[2:]
def raw(name):
    m = {}
    try:
        for line in open(os.path.join(out, name + ".raw.txt"), errors="replace"):
            p = line.split()
            if len(p) >= 2 and "__" in p[0]:
                try: m[p[0]] = float(p[-1].replace(",", ""))
                except ValueError: pass
    except FileNotFoundError: pass
    return m
keys = ("gpu__time_duration.sum", "smsp__inst_executed.sum", "smsp__issue_active.avg.pct_of_peak_sustained_active",
        "sm__inst_executed_pipe_", "smsp__average_warps_issue_stalled_", "smsp__pcsamp_warps_issue_stalled_")
for d in ds:
    for kind in ("fwd", "bwd"):
        a, b = raw(f"{kind}_plain_d{d}"), raw(f"{kind}_drop_d{d}")
        print(f"== {kind} D={d}: plain vs dropout")
        for k in sorted(set(a) | set(b)):
            if k.startswith(keys) or k in keys:
                x, y = a.get(k, 0), b.get(k, 0)
                if x or y:
                    if abs(y - x) > 0.02 * max(abs(x), abs(y)) or k in keys[:3]:
                        print(f"  {k:90s} {x:14.4g} {y:14.4g}")
PY
ls -la "$OUT" | head -60
