#!/usr/bin/env bash
# Nsight Compute A/B of the sm90 forward kernel: a baseline source tree (BASE, e.g. `git archive` of an
# older commit carried under .xfer/) against this checkout, both built with only the plain bf16 D = 128
# instances, same shape (N = 8192, B = 2, non-causal, bench_fwd's third launch). Prints the sections
# where the two differ most (duration, issue stalls, instructions, registers) and keeps the text pages.
#   BASE=.xfer/base OUT=/tmp/out bash bench/gpu/profile_fwd_ab.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT}
BASE=${BASE:?set BASE}
D=${D:-128}
mkdir -p "$OUT"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
build() {  # build SRC DIR NAME
  cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLATATTN_CUDA=ON -DFLATATTN_CUDA_ARCHS=90 \
    -DFLATATTN_HDIMS=$D -DFLATATTN_DTYPES=bf16 -DFLATATTN_VARIANTS=plain -DFLATATTN_CUDA_PTX75=OFF \
    -DFLATATTN_BUILD_TESTS=OFF -DFLATATTN_BUILD_CLI=OFF -DFLATATTN_CUDA_PTXAS_VERBOSE=ON > "$OUT/build_$3.log" 2>&1 &&
    ninja -C "$2" bench_fwd >> "$OUT/build_$3.log" 2>&1
  echo "build $3 rc=$?"
}
build "$BASE" /tmp/pf-base base & build . /tmp/pf-new new; wait
SEC=(--section SpeedOfLight --section WarpStateStats --section InstructionStats --section SchedulerStats
     --section LaunchStats --section Occupancy --section MemoryWorkloadAnalysis --section SourceCounters)
for v in base new; do
  timeout 120 "$NCU" --clock-control none -k regex:flash_fwd_kernel --launch-skip 2 --launch-count 1 "${SEC[@]}" \
    -f -o "$OUT/$v" /tmp/pf-$v/bench/gpu/bench_fwd --d $D --n 8192 --reps 1 --out /tmp/pf_$v.json > "$OUT/$v.run.log" 2>&1
  "$NCU" -i "$OUT/$v.ncu-rep" --page details --print-details all > "$OUT/$v.details.txt" 2>&1
  "$NCU" -i "$OUT/$v.ncu-rep" --page raw > "$OUT/$v.raw.txt" 2>&1
  "$NCU" -i "$OUT/$v.ncu-rep" --page source --csv --print-source sass > "$OUT/$v.sass.csv" 2>&1
  rm -f "$OUT/$v.ncu-rep"
done
# Timing, alternating, 3 rounds.
for r in 1 2 3; do for v in base new; do
  /tmp/pf-$v/bench/gpu/bench_fwd --d $D --n 2048,8192,16384 --out "$OUT/fwd_${v}_$r.json" > /dev/null 2>&1
done; done
python3 - "$OUT" <<'PY'
import sys, re, json, glob, os, statistics
out = sys.argv[1]
def metrics(v):
    m = {}
    for line in open(os.path.join(out, v + ".raw.txt"), errors="replace"):
        p = line.split()
        if len(p) >= 3 and "__" in p[0]:
            try: m[p[0]] = float(p[-1].replace(",", ""))
            except ValueError: pass
    return m
b, n = metrics("base"), metrics("new")
rows = []
for k in b:
    if k in n and (b[k] or n[k]):
        rel = (n[k] - b[k]) / max(abs(b[k]), 1e-9)
        rows.append((abs(rel), k, b[k], n[k], rel))
rows.sort(reverse=True)
keys = ("gpu__time_duration", "smsp__average_warp", "smsp__inst_executed.sum", "launch__registers", "stall", "issue_active", "l1tex__data_bank")
print("metric base new rel (largest relative differences among stall/time/instruction metrics)")
for _, k, x, y, r in rows:
    if any(s in k for s in keys) and max(abs(x), abs(y)) > 0:
        print(f"{k} {x:g} {y:g} {r:+.3f}")
res = {}
for p in glob.glob(os.path.join(out, "fwd_*_*.json")):
    v = os.path.basename(p).split("_")[1]
    d = json.load(open(p))
    for rr in next(x for x in d.values() if isinstance(x, list)):
        res.setdefault((rr["N"], bool(rr["causal"])), {}).setdefault(v, []).append(rr.get("flash_tflops", -1))
for k in sorted(res):
    m = {v: statistics.median(x) for v, x in res[k].items()}
    print("tflops", k, {v: round(x, 1) for v, x in m.items()}, f"new/base={m.get('new', 0) / m.get('base', 1):.3f}")
PY
# The device returns at most 8 files: one archive.
tar -C "$OUT" -czf /tmp/pf.tgz . && find "$OUT" -mindepth 1 -delete && mv /tmp/pf.tgz "$OUT/profile_fwd_ab.tgz"
