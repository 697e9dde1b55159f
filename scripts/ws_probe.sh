#!/usr/bin/env bash
# One short GPU call that settles the state of the warp-specialized sm90 forward (issue 17, docs/sm90_ws.md):
# builds only what it needs (sm_90, D = 64, 128 and 256, the plain variant; targets test_cuda and bench_fwd; an
# existing build dir is reused), runs the CudaSm90Ws suite under each schedule (1, 3, then 2: ping-pong last,
# its named barriers are out of the kernel watchdog's reach) line-buffered and under a timeout, then, when time
# is left, bench_fwd on the warp-specialized kernel with FLATATTN_SM90_WS_CHECK=1 (every call synchronized and
# its watchdog record read: a shape whose pipeline timed out throws, naming the barrier). Logs land in $OUT; a
# summary (the verdict lines and the last 30 lines of each log) prints last.
#
#   OUT=/tmp/out bash scripts/ws_probe.sh
# Environment: OUT (default ./ws-probe-out), B (build dir, default build-gpu), DEADLINE (seconds for the whole
# script, default 235), JOBS (default nproc), RUN_LIMIT (seconds per schedule, default 60).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/ws-probe-out}
B=${B:-build-gpu}
DEADLINE=${DEADLINE:-235}
JOBS=${JOBS:-$(nproc)}
RUN_LIMIT=${RUN_LIMIT:-60}
START=$(date +%s)
mkdir -p "$OUT"
SUM=$OUT/summary.txt
: > "$SUM"
note() { echo "$*" | tee -a "$SUM"; }
left() { echo $(( DEADLINE - ($(date +%s) - START) )); }
finish() {
  for f in "$OUT"/build.log "$OUT"/test_s*.log "$OUT"/bench_check.log; do
    [[ -f $f ]] || continue
    echo "==== $(basename "$f") (last 30 lines)"
    tail -n 30 "$f" | cut -c1-220
  done
  echo "==== summary"
  cat "$SUM"
  exit 0
}

{
  date -u +%FT%TZ
  git log -1 --oneline 2>/dev/null
  nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader
  nvcc --version | tail -1
  nproc
} > "$OUT/env.log" 2>&1
note "device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)  commit $(git log -1 --format=%h 2>/dev/null)"

# ---- build: sm_90 only, D 64, 128 and 256, plain, no compute_75 PTX, no CLI ------------------------------------
t0=$(date +%s)
cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLATATTN_CUDA=ON -DFLATATTN_CUDA_ARCHS=90 \
  -DFLATATTN_HDIMS="64;128;256" -DFLATATTN_VARIANTS=plain -DFLATATTN_CUDA_PTX75=OFF -DFLATATTN_CUDA_SUBSET= \
  -DFLATATTN_BUILD_TESTS=ON -DFLATATTN_BUILD_CLI=OFF > "$OUT/build.log" 2>&1 || { note "configure FAILED"; finish; }
blimit=$(( $(left) - 70 ))  # keep at least 70 s for the tests
(( blimit < 30 )) && blimit=30
timeout --kill-after=5 "$blimit" ninja -C "$B" -j "$JOBS" test_cuda bench_fwd >> "$OUT/build.log" 2>&1
rc=$?
note "build rc=$rc $(( $(date +%s) - t0 ))s (limit ${blimit}s)"
(( rc == 0 )) || finish
T=$B/tests/cuda/test_cuda
BENCH=$B/bench/gpu/bench_fwd

# ---- the suite under each schedule -----------------------------------------------------------------------
runs=(1 3 2)
for i in "${!runs[@]}"; do
  s=${runs[$i]}
  after=$(( ${#runs[@]} - i - 1 ))
  limit=$(( $(left) - 5 - 15 * after ))  # leave 15 s to each later schedule
  (( limit > RUN_LIMIT )) && limit=$RUN_LIMIT
  if (( limit < 10 )); then note "schedule $s: skipped (${limit}s left)"; continue; fi
  t0=$(date +%s)
  FLATATTN_TEST_WS_SCHEDULE=$s timeout --kill-after=5 "$limit" stdbuf -oL -eL "$T" --gtest_filter='CudaSm90Ws.*' \
    > "$OUT/test_s$s.log" 2>&1
  rc=$?
  note "schedule $s: rc=$rc $(( $(date +%s) - t0 ))s (limit ${limit}s; 124/137 = killed by the timeout, 124 also = HUNG guard)"
  grep -E "^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ test|^\[  FAILED  \] Cuda|\[ws\] (HUNG|SLOW|FAIL|BAD)|timed out|^\[ws\] ok   out|ran the warp" "$OUT/test_s$s.log" \
    | head -12 | cut -c1-220 | sed 's/^/    /' >> "$SUM"
  [[ -s $OUT/test_s$s.log ]] || note "    (empty log)"
  note "    cases: $(grep -c '^\[ws\] ok ' "$OUT/test_s$s.log") ok, $(grep -c '^\[ws\] BAD ' "$OUT/test_s$s.log") bad, $(grep -c '^\[ws\] run ' "$OUT/test_s$s.log") started"
  note "    last line: $(tail -n 1 "$OUT/test_s$s.log" | cut -c1-200)"
done

# ---- bench_fwd on schedule 1 with the watchdog check (few reps: correctness of the pipeline, not timing) ----
limit=$(( $(left) - 3 ))
(( limit > 40 )) && limit=40
if (( limit >= 15 )); then
  t0=$(date +%s)
  FLATATTN_CUDA_SM90_WS=1 FLATATTN_SM90_WS_CHECK=1 timeout --kill-after=5 "$limit" stdbuf -oL -eL "$BENCH" \
    --d 64,128 --reps 3 --out "$OUT/bench_ws1_check.json" > "$OUT/bench_check.log" 2>&1
  rc=$?
  note "bench_fwd FLATATTN_CUDA_SM90_WS=1 FLATATTN_SM90_WS_CHECK=1 --reps 3: rc=$rc $(( $(date +%s) - t0 ))s (0 = no shape timed out)"
  grep -iE "timed out|error" "$OUT/bench_check.log" | head -3 | sed 's/^/    /' >> "$SUM"
else
  note "bench check: skipped (${limit}s left)"
fi
finish
