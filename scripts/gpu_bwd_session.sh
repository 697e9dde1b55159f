#!/usr/bin/env bash
# One GPU-machine session for the CUDA backward: build (sm_90 SASS only), the backward and error tests,
# bench_bwd (ours: fwd, bwd, fwd+bwd, deterministic bwd) and peers_sdpa_bwd.py (SDPA flash = FA2 and
# cuDNN) in the same run, `flatattn check --device cuda` (forward and backward cases), the backward
# tile tuner, then compute-sanitizer on the backward's small set while time is left. Everything is
# packed into $OUT/session.tgz (plus $OUT/summary.txt); the summary prints last.
#
#   OUT=/tmp/out FLATATTN_COMMIT=abc DEADLINE=400 bash scripts/gpu_bwd_session.sh
# Environment: STAGES (default "build test bench peers check tune memcheck racecheck"), JOBS (default nproc),
# TEST_FILTER (gtest filter of the test stage), DEADLINE (seconds: stages are cut to end before it).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
STAGES=${STAGES:-"build test bench peers check tune memcheck racecheck"}
JOBS=${JOBS:-$(nproc)}
COMMIT=${FLATATTN_COMMIT:-unknown}
DEADLINE=${DEADLINE:-400}
TEST_FILTER=${TEST_FILTER:-"CudaBackward.*:CudaErrors.*"}
START=$(date +%s)
B=build-gpu
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
export PATH=/usr/local/cuda/bin:$PATH FLATATTN_DATA_DIR=$PWD/data
note() { echo "$*" | tee -a "$SUMMARY"; }
has() { [[ " $STAGES " == *" $1 "* ]]; }
stage() {  # stage NAME TIMEOUT_S CMD...: runs with a timeout, logs to $OUT/NAME.log, records status and seconds
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  local left=$(( DEADLINE - (t0 - START) - 10 ))
  if (( left < 15 )); then note "$(printf '%-10s skipped: %ss left of %ss' "$name" "$left" "$DEADLINE")"; return 124; fi
  (( limit > left )) && limit=$left
  timeout --kill-after=5 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  note "$(printf '%-10s rc=%-3s %4ss  %s' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$(tail -n 1 "$OUT/$name.log" | cut -c1-110)")"
  return $rc
}
{
  echo "date $(date -u +%FT%TZ) commit $COMMIT"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nvcc --version | tail -2
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())'
  nproc
} > "$OUT/env.txt" 2>&1
note "device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)  commit $COMMIT"
if has build; then
  cfg=(cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLATATTN_CUDA=ON -DFLATATTN_CUDA_ARCHS=90
       -DFLATATTN_CUDA_PTX75=OFF -DFLATATTN_BUILD_TESTS=ON -DFLATATTN_CUDA_PTXAS_VERBOSE=ON)
  # The CLI needs CLI11, fmt and nlohmann-json; without them on this machine, build without it.
  stage configure 60 "${cfg[@]}" -DFLATATTN_BUILD_CLI=ON || { rm -rf $B; stage configure_nocli 60 "${cfg[@]}" -DFLATATTN_BUILD_CLI=OFF; }
  targets="test_cuda bench_bwd $(has tune && echo tune_bwd) $(grep -q flatattn_cli $B/build.ninja 2>/dev/null && echo flatattn_cli)"
  stage build 240 ninja -C $B -j "$JOBS" $targets
  grep -A2 "Function properties for .*flash_bwd_kernel" "$OUT/build.log" | grep -E "spill|Used" | sort | uniq -c > "$OUT/bwd_regs.txt"
fi
T=$B/tests/cuda/test_cuda
if has test; then
  stage test 150 env FLATATTN_VERBOSE=1 $T --gtest_filter="$TEST_FILTER"
  grep -E "^\[seed\]|FAILED|Failure|PASSED|SKIPPED|tests ran" "$OUT/test.log" | head -40 >> "$SUMMARY"
fi
if has bench; then
  stage bench 90 $B/bench/gpu/bench_bwd --out "$OUT/ours_bwd.json" --commit "$COMMIT"
fi
if has peers; then
  stage peers 120 env PYTHONUNBUFFERED=1 OUT="$OUT" python3 bench/gpu/peers_sdpa_bwd.py
fi
if has check && [[ -x $B/cli/flatattn ]]; then
  stage check 60 $B/cli/flatattn check --device cuda
fi
if has tune; then
  stage tune 90 $B/bench/gpu/tune_bwd
fi
if has memcheck; then
  stage memcheck 60 compute-sanitizer --tool memcheck --error-exitcode 9 $T --gtest_filter='CudaBackward.SanitizerSet'
  grep -E "ERROR SUMMARY" "$OUT/memcheck.log" >> "$SUMMARY"
fi
if has racecheck; then
  stage racecheck 90 compute-sanitizer --tool racecheck --error-exitcode 9 $T --gtest_filter='CudaBackward.SanitizerSet'
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/racecheck.log" >> "$SUMMARY"
fi
note "total $(( $(date +%s) - START ))s"
# Packed outside $OUT first: tar must not read the directory it is writing into (the device returns
# only a few files, so the archive must exist before the loose files go).
tar czf /tmp/flatattn_session.tgz -C "$OUT" --exclude=summary.txt . && mv /tmp/flatattn_session.tgz "$OUT/session.tgz" &&
  find "$OUT" -type f ! -name session.tgz ! -name summary.txt -delete
cat "$SUMMARY"
