#!/usr/bin/env bash
# One whole GPU-machine session for the CUDA backend: build, GPU tests, the compute_75 PTX path through
# the driver's JIT, compute-sanitizer, the benchmark against PyTorch SDPA's backends (same run), tile
# candidates, and the merged result table. Everything lands under $OUT (at most 8 files); a short
# summary prints last.
#
#   STAGES="build test jit san bench peers tune" OUT=/tmp/out FLATATTN_COMMIT=abc bash scripts/gpu_session.sh
# Environment: STAGES (default: all), ARCHS (FLATATTN_CUDA_ARCHS, default 80;86;89;90: the full build,
# timed), JOBS (default nproc), BENCH_N (bench_fwd --n list), FLATATTN_COMMIT (recorded with results).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
STAGES=${STAGES:-"build test jit san bench peers tune"}
ARCHS=${ARCHS:-"80;86;89;90"}
JOBS=${JOBS:-$(nproc)}
COMMIT=${FLATATTN_COMMIT:-unknown}
DEADLINE=${DEADLINE:-540}  # seconds: stages are cut to end before it, so the results are always packed
START=$(date +%s)
B=build-gpu
LOG=$OUT/logs
mkdir -p "$LOG"
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
has() { [[ " $STAGES " == *" $1 "* ]]; }
stage() {  # stage NAME TIMEOUT_S CMD...: runs with a timeout, logs, records status and seconds
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  local left=$(( DEADLINE - (t0 - START) - 15 ))
  if (( left < 20 )); then note "$(printf '%-10s skipped: %ss left of the %ss deadline' "$name" "$left" "$DEADLINE")"; return 124; fi
  (( limit > left )) && limit=$left
  timeout --kill-after=10 "$limit" "$@" > "$LOG/$name.log" 2>&1
  local rc=$?
  note "$(printf '%-10s rc=%-3s %4ss  %s' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$(tail -n 1 "$LOG/$name.log" | cut -c1-110)")"
  return $rc
}

{
  echo "date $(date -u +%FT%TZ) commit $COMMIT"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  nvcc --version | tail -2
  cmake --version | head -1
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())'
  nproc
} > "$LOG/env.log" 2>&1
note "device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)  commit $COMMIT"

if has build; then
  stage configure 120 cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLATATTN_CUDA=ON \
    -DFLATATTN_CUDA_ARCHS="$ARCHS" -DFLATATTN_BUILD_TESTS=ON -DFLATATTN_CUDA_PTXAS_VERBOSE=ON
  # The library with every instance first (the timed "full GPU build"), then the test and bench binaries.
  stage build_lib 420 bash -c "time ninja -C $B -j $JOBS flatattn_core"
  note "full build ($(grep -c 'Compiling entry' "$LOG/build_lib.log") kernels, ARCHS=$ARCHS + compute_75 PTX, $JOBS jobs): $(grep real "$LOG/build_lib.log" | tail -1)"
  stage build_bins 300 ninja -C $B -j $JOBS test_cuda bench_fwd $(has tune && echo tune_fwd)
fi
T=$B/tests/cuda/test_cuda
if has test; then
  stage test 240 env FLATATTN_EXPECT_PATH=sm80 $T --gtest_brief=1
  grep -E "^\[seed\]|FAILED|Failure|PASSED|SKIPPED" "$LOG/test.log" | head -20 >> "$SUMMARY"
fi
if has jit; then
  # Only compute_75 PTX can serve under CUDA_FORCE_PTX_JIT (the sm80/sm86 families are SASS only): the driver
  # JIT-compiles it and the m16n8k8 / synchronous-load path runs on this GPU. bf16 must be refused.
  stage jit 240 env CUDA_FORCE_PTX_JIT=1 FLATATTN_EXPECT_PATH=sm75 $T --gtest_brief=1 \
    --gtest_filter='CudaForward.*:CudaErrors.*:-CudaForward.LongCausalAgainstOracle'
  grep -E "^\[path\]|FAILED|Failure|PASSED|SKIPPED" "$LOG/jit.log" | head -12 >> "$SUMMARY"
fi
if has san; then
  stage memcheck 200 compute-sanitizer --tool memcheck --error-exitcode 9 $T --gtest_filter='CudaForward.SanitizerSet'
  grep -E "ERROR SUMMARY" "$LOG/memcheck.log" >> "$SUMMARY"
  stage racecheck 240 compute-sanitizer --tool racecheck --error-exitcode 9 $T --gtest_filter='CudaForward.SanitizerSet'
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$LOG/racecheck.log" >> "$SUMMARY"
fi
if has bench; then
  stage bench 180 $B/bench/gpu/bench_fwd --out "$OUT/ours.json" --commit "$COMMIT" ${BENCH_N:+--n $BENCH_N}
  cp "$LOG/bench.log" "$OUT/ours_table.txt" 2>/dev/null
fi
if has peers; then
  stage peers 240 env PYTHONUNBUFFERED=1 PEERS_MATH=0 PEERS_N=${PEERS_N:-128,256,512,1024,2048,4096,8192,16384} \
    python3 bench/gpu/peers_sdpa.py fwd
fi
if has tune; then
  stage tune 150 $B/bench/gpu/tune_fwd --out "$OUT/tune.json"
fi
if [[ -f $OUT/ours.json && -f $OUT/peers_sdpa.json ]]; then
  stage merge 60 python3 bench/gpu/merge.py "$OUT/ours.json" "$OUT/peers_sdpa.json" --prefix "$OUT/gpu-fwd-h100"
  tail -n 3 "$OUT/gpu-fwd-h100.md" >> "$SUMMARY"
fi
tar -C "$OUT" -czf "$OUT/logs.tar.gz" logs && rm -rf "$LOG"
rm -f "$OUT/ours_table.txt"
echo "================ summary ================"
cat "$SUMMARY"
