#!/usr/bin/env bash
# The one GPU-machine session script: build, GPU tests (forward and backward), the compute_75 PTX path
# through the driver's JIT, compute-sanitizer, the `flatattn` command on the GPU, the forward and backward
# benchmarks against PyTorch SDPA's backends (same run), tile candidates, the merged result tables, and the
# Python package's GPU session (python/gpu_session.sh). Everything lands under $OUT; a summary prints last.
#
#   STAGES="build test jit san cli bench peers bwdbench bwdpeers tune profile python" OUT=/tmp/out FLATATTN_COMMIT=abc \
#     bash scripts/gpu_session.sh
# Optional stages `host`: bench/gpu/host_overhead (host time of one call); `fuzz`: `flatattn check --fuzz` on the
# GPU (FUZZ_CASES, default 10000; FUZZ_LIMIT seconds, default 420); `anydbench`: bench_bwd at odd head dims
# (ANYD_D, default 59,64,111,112,128,199,200; ANYD_N, default 1024,4096) for the cost of staging; `features`:
# bench/gpu/bench_features (ALiBi and sinks against the same calls without them, one run; FEATURES_D, FEATURES_N
# lists); `decode`: forward_kvcache's decode bandwidth (bench/gpu/bench_decode, against the copy bandwidth of
# the same run; DECODE_ARGS adds options) and SDPA's backends on the same shapes (bench/gpu/peers_decode.py);
# `decodemodel`: bench_decode with FLATATTN_DECODE_SPLITS=rule and =model alternating, two rounds (the split planner's
# A/B); `decodeprof`: bench_decode at B = 1 with forced split counts, then under ncu (kernel durations, DRAM bytes; decode_ncu.csv);
# `decodepdl`: bench_decode with FLATATTN_CUDA_PDL=0 and 1 (programmatic dependent launch off / on), alternating, two
# rounds (decode_pdl<0|1>_r<round>.json).
# lists); `biasbench`: bench/gpu/bench_bias (the additive bias, dense and broadcast with dbias, against none and
# the copy-bandwidth budget, one run; BIAS_D, BIAS_N lists) and peers_sdpa_bias.py (SDPA efficient / cuDNN with the
# same float mask).
# lists); `sparse`: bench/gpu/bench_sparse (our block-sparse forward vs our dense) and bench/gpu/peers_flex.py
# (FlexAttention and SDPA on block-sparse masks, issue 16; FLEX_N list); `sparsewsp`: bench_sparse with the sparse kernel
# on one CTA per tile and persistent (FLATATTN_CUDA_SM90_WS_PERSISTENT=0 / 1), alternating, two rounds (SPARSE_D,
# SPARSE_N, SPARSE_DENSITY, SPARSE_BWD); `clisparse`: `flatattn run/bench` with --density / --global on the GPU.
# Optional stages on Hopper with the sm90
# family built: test80 (the forward and backward tests with
# FLATATTN_CUDA_SM90=0, i.e. on the sm80 family), bench80 (bench_fwd likewise, for the sm90 vs sm80 comparison) and tune90 (the sm90
# tile candidates of bench/gpu/tune_sm90.cu; TUNE_N = its --n list). There, bwdbench also times the
# backward with FLATATTN_CUDA_SM90=0 (the sm80 family's kernel; ours_bwd_sm80.json), and merge_bwd adds the
# sm90 / sm80 columns. `testws` and `benchws` (Hopper, sm90 built): the warp-specialized sm90 forward
# (docs/sm90_ws.md): its suite under each schedule (FLATATTN_TEST_WS_SCHEDULE 1, 2, 3) and bench_fwd under
# FLATATTN_CUDA_SM90_WS=1 and 2 (ours_ws1.json, ours_ws2.json; run `bench` in the same session for the baseline);
# WS_SCHEDULES (default "1 3 2") and WS_BENCH (default "1 2"; 0 = the other sm90 kernel) choose the schedules.
# `testwsp` and `benchwsp` (Hopper): its persistent kernel (issue 17): the suite with FLATATTN_CUDA_SM90_WS_PERSISTENT=1
# under each of WS_SCHEDULES, and an A/B of bench_fwd (schedule WSP_SCHED, default 2) with it 0 and 1, alternating, two
# rounds (ours_wsp<mode>_r<round>.json; WSP_MODES, default "0 1", e.g. "rule model"; BENCH_D default 64,128, BENCH_N default 512,...,8192).
# Environment: STAGES (default: build test jit san cli bench peers bwdbench bwdpeers), ARCHS
# (FLATATTN_CUDA_ARCHS, default 80;86;89;90: the full build, timed), JOBS (default nproc), BENCH_N
# (bench_fwd --n list), BENCH_D (bench_fwd --d list), FLATATTN_COMMIT (recorded with results), DEADLINE (seconds, default 540),
# TEST_FILTER (gtest filter of the test stage), TEST_LIMIT (its seconds, default 300), TEST_SHARDS (default 1: that
# many gtest shards in parallel, each with nproc / TEST_SHARDS OpenMP threads for the host's fp64 oracle, which is
# the slow part: the whole suite is about 1,500 s as one process; shards sharing all cores oversubscribe and crawl).
# The `python` stage needs .xfer/minilm-fp16 carried (examples/prepare_minilm_carry.py) and its own call:
# it builds the wheel separately.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
STAGES=${STAGES:-"build test jit san cli bench peers bwdbench bwdpeers"}
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
# Result files are named after the GPU (h100, h200, ...), from its name: "NVIDIA H200" -> h200.
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | awk '{print tolower($2)}')
GPU=${GPU:-gpu}

if has build; then
  # The CLI needs CLI11, fmt and nlohmann-json; where the machine lacks them, configure without it.
  cfg=(cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLATATTN_CUDA=ON -DFLATATTN_CUDA_ARCHS="$ARCHS"
       -DFLATATTN_BUILD_TESTS=ON -DFLATATTN_CUDA_PTXAS_VERBOSE=ON ${CMAKE_EXTRA:-})
  stage configure 120 "${cfg[@]}" -DFLATATTN_BUILD_CLI=ON || { rm -rf $B; stage configure_nocli 120 "${cfg[@]}" -DFLATATTN_BUILD_CLI=OFF; }
  # The library with every instance first (the timed "full GPU build"), then the test and bench binaries.
  stage build_lib 420 bash -c "time ninja -C $B -j $JOBS flatattn_core"
  note "full build ($(grep -c 'Compiling entry' "$LOG/build_lib.log") kernels, ARCHS=$ARCHS + compute_75 PTX, $JOBS jobs): $(grep real "$LOG/build_lib.log" | tail -1)"
  stage build_bins 300 ninja -C $B -j $JOBS test_cuda bench_fwd bench_bwd host_overhead host_threads $(has features && echo bench_features) $( (has decode || has decodepdl || has decodeprof || has decodemodel) && echo bench_decode) $(has biasbench && echo bench_bias) $( (has sparse || has sparsewsp) && echo bench_sparse) $(has tune && echo tune_fwd tune_bwd) $(has tunebwd && echo tune_bwd) \
    $(has tune90 && echo tune_fwd) \
    $(grep -q 'build cli/flatattn' $B/build.ninja 2>/dev/null && echo flatattn_cli)
fi
T=$B/tests/cuda/test_cuda
# The Flash forward runs the sm90 (wgmma) family on Hopper when it is built (ARCHS with 90); the sm80 family
# otherwise. FLATATTN_CUDA_SM90=0 sends Hopper back to the sm80 family (the `test80` stage).
GPU_CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1)
EXPECT=sm80
[[ $GPU_CC == 9.0 && ";$ARCHS;" == *";90;"* ]] && EXPECT=sm90
if has test; then
  SH=${TEST_SHARDS:-1}
  stage test ${TEST_LIMIT:-300} bash -c '
    for i in $(seq 0 $(( $1 - 1 ))); do
      GTEST_TOTAL_SHARDS=$1 GTEST_SHARD_INDEX=$i OMP_NUM_THREADS=$(( $(nproc) / $1 > 0 ? $(nproc) / $1 : 1 )) \
        OMP_WAIT_POLICY=passive FLATATTN_EXPECT_PATH=$2 stdbuf -oL $3 --gtest_brief=1 ${4:+--gtest_filter=$4} \
        > "$5/test_shard$i.log" 2>&1 &
    done
    rc=0; for j in $(jobs -p); do wait $j || rc=1; done
    cat "$5"/test_shard*.log; exit $rc' _ "$SH" "$EXPECT" "$T" "${TEST_FILTER:-}" "$LOG"
  grep -E "^\[seed\]|FAILED|Failure|PASSED|SKIPPED" "$LOG/test.log" | head -20 >> "$SUMMARY"
fi
if has test80 && [[ $EXPECT == sm90 ]]; then
  stage test80 240 env FLATATTN_CUDA_SM90=0 FLATATTN_EXPECT_PATH=sm80 $T --gtest_brief=1 --gtest_filter='CudaForward.*:CudaBackward.*'
  grep -E "FAILED|Failure|PASSED|SKIPPED" "$LOG/test80.log" | head -8 >> "$SUMMARY"
fi
if has jit; then
  # Only compute_75 PTX can serve under CUDA_FORCE_PTX_JIT (the sm80/sm86 families are SASS only): the driver
  # JIT-compiles it and the m16n8k8 / synchronous-load path runs on this GPU. bf16 must be refused.
  stage jit 240 env CUDA_FORCE_PTX_JIT=1 FLATATTN_EXPECT_PATH=sm75 $T --gtest_brief=1 \
    --gtest_filter='CudaForward.*:CudaErrors.*:CudaBackward.HeadDimsF16:CudaBackward.AdversarialF16:-CudaForward.LongCausalAgainstOracle'
  grep -E "^\[path\]|FAILED|Failure|PASSED|SKIPPED" "$LOG/jit.log" | head -12 >> "$SUMMARY"
fi
if has san; then
  stage memcheck 200 compute-sanitizer --tool memcheck --error-exitcode 9 $T --gtest_filter='Cuda*.SanitizerSet'
  grep -E "ERROR SUMMARY" "$LOG/memcheck.log" >> "$SUMMARY"
  stage racecheck 240 compute-sanitizer --tool racecheck --error-exitcode 9 $T --gtest_filter='Cuda*.SanitizerSet'
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$LOG/racecheck.log" >> "$SUMMARY"
  # Adversarial varlen metadata (issue 20): 0 errors means no kernel read or wrote outside the tensors.
  stage memcheck_meta 300 compute-sanitizer --tool memcheck --error-exitcode 9 $T \
    --gtest_filter='Metadata.CheckingModeDirect:Metadata.CheckingModeStaged:Metadata.OffendingSequenceSkipped:Metadata.AsynchronousReport:CudaCornerCases.*:KvCacheCudaMeta.SanitizerSet'
  grep -E "ERROR SUMMARY" "$LOG/memcheck_meta.log" >> "$SUMMARY"
  # The decode kernels' shared memory (Q staged in the pipeline's stages, the warps' merge, cluster-FLAT's
  # distributed shared memory): racecheck on the KV-cache sanitizer set.
  stage racecheck_kv 240 compute-sanitizer --tool racecheck --error-exitcode 9 $T --gtest_filter='KvCacheCudaMeta.SanitizerSet'
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$LOG/racecheck_kv.log" >> "$SUMMARY"
fi
if has cli && [[ -x $B/cli/flatattn ]]; then
  export FLATATTN_DATA_DIR=$PWD/data
  stage cli_run 120 $B/cli/flatattn run --device cuda
  grep -E "^(fused|naive|flatattn run)" "$LOG/cli_run.log" >> "$SUMMARY"
  stage cli_check 150 $B/cli/flatattn check --device cuda
  tail -n 1 "$LOG/cli_check.log" >> "$SUMMARY"
  stage cli_bench 120 $B/cli/flatattn bench --device cuda --dtype bf16 --n 1024,4096 --hq 16 --d 128 --methods flash,flat --json "$OUT/cli_bench_cuda.json"
fi
if has bench; then
  stage bench 180 $B/bench/gpu/bench_fwd --out "$OUT/ours.json" --commit "$COMMIT" ${BENCH_N:+--n $BENCH_N} ${BENCH_D:+--d $BENCH_D}
  cp "$LOG/bench.log" "$OUT/ours_table.txt" 2>/dev/null
fi
if has bench80 && [[ $EXPECT == sm90 ]]; then  # the sm80 family on the same GPU, for the comparison
  stage bench80 180 env FLATATTN_CUDA_SM90=0 $B/bench/gpu/bench_fwd --out "$OUT/ours_sm80.json" --commit "$COMMIT" \
    ${BENCH_N:+--n $BENCH_N} ${BENCH_D:+--d $BENCH_D}
  cp "$LOG/bench80.log" "$OUT/ours_sm80_table.txt" 2>/dev/null
fi
if has testws && [[ $EXPECT == sm90 ]]; then  # the warp-specialized forward: a hang is cut by the stage's timeout
  for s in ${WS_SCHEDULES:-1 3 2}; do  # ping-pong (2) last: a named-barrier hang there is cut only by the stage timeout
    stage testws$s 200 env FLATATTN_TEST_WS_SCHEDULE=$s stdbuf -oL $T --gtest_brief=1 --gtest_filter='CudaSm90Ws.*'
    grep -E "FAILED|Failure|PASSED|SKIPPED|ran the warp|\[ws\] (HUNG|SLOW|FAIL|BAD)" "$LOG/testws$s.log" | head -8 >> "$SUMMARY"
  done
fi
if has benchws && [[ $EXPECT == sm90 ]]; then
  for s in ${WS_BENCH:-1 2}; do
    stage benchws$s 180 env FLATATTN_CUDA_SM90_WS=$s $B/bench/gpu/bench_fwd --out "$OUT/ours_ws$s.json" --commit "$COMMIT" \
      --d ${BENCH_D:-64,128} ${BENCH_N:+--n $BENCH_N}
    cp "$LOG/benchws$s.log" "$OUT/ours_ws${s}_table.txt" 2>/dev/null
  done
fi
if has testwsp && [[ $EXPECT == sm90 ]]; then  # the persistent warp-specialized forward, every suite case on it
  for s in ${WS_SCHEDULES:-1 3 2}; do
    stage testwsp$s 200 env FLATATTN_TEST_WS_SCHEDULE=$s FLATATTN_CUDA_SM90_WS_PERSISTENT=1 stdbuf -oL $T --gtest_brief=1 \
      --gtest_filter='CudaSm90Ws.*'
    grep -E "FAILED|Failure|PASSED|SKIPPED|ran the warp|\[ws\] (HUNG|SLOW|FAIL|BAD)" "$LOG/testwsp$s.log" | head -8 >> "$SUMMARY"
  done
fi
if has benchwsp && [[ $EXPECT == sm90 ]]; then  # A/B on one lease: one CTA per tile (0) vs persistent (1), alternating
  for r in 1 2; do
    for p in ${WSP_MODES:-0 1}; do
      stage benchwsp${p}_$r 150 env FLATATTN_CUDA_SM90_WS=${WSP_SCHED:-2} FLATATTN_CUDA_SM90_WS_PERSISTENT=$p \
        $B/bench/gpu/bench_fwd --out "$OUT/ours_wsp${p}_r$r.json" --commit "$COMMIT" --d ${WSP_D:-${BENCH_D:-64,128}} \
        --n ${BENCH_N:-512,1024,2048,4096,8192}
      cp "$LOG/benchwsp${p}_$r.log" "$OUT/ours_wsp${p}_r${r}_table.txt" 2>/dev/null
    done
  done
fi
if has fuzz && [[ -x $B/cli/flatattn ]]; then  # the differential fuzz on the GPU: >= 10,000 cases when time allows
  stage fuzz ${FUZZ_LIMIT:-420} $B/cli/flatattn check --device cuda --jobs ${FUZZ_JOBS:-$(nproc)} --fuzz ${FUZZ_CASES:-10000} --seconds $(( ${FUZZ_LIMIT:-420} - 20 ))
  tail -n 3 "$LOG/fuzz.log" >> "$SUMMARY"
fi
if has host; then  # host time per call from the C++ entry to the launch, next to a bare launch
  stage host 90 $B/bench/gpu/host_overhead --out "$OUT/host_overhead.json" --commit "$COMMIT"
  cp "$LOG/host.log" "$OUT/host_overhead.txt" 2>/dev/null
  if [[ -x $B/bench/gpu/host_threads ]]; then  # the same per call from 1 and 8 host threads (own streams, shapes)
    stage host_threads 120 $B/bench/gpu/host_threads --threads 8 --out "$OUT/host_threads.json" --commit "$COMMIT"
  fi
fi
if has decode; then  # issue 18: decode bandwidth vs copy bandwidth, then SDPA's backends on the same shapes
  stage decode 300 $B/bench/gpu/bench_decode --out "$OUT/decode_$GPU.json" --commit "$COMMIT" ${DECODE_ARGS:-}
  cp "$LOG/decode.log" "$OUT/decode_${GPU}_table.txt" 2>/dev/null
  stage decode_peers 240 env PYTHONUNBUFFERED=1 OUT="$OUT" python3 bench/gpu/peers_decode.py
fi
if has decodeprof; then  # issue 18, B = 1: forced split counts (event timing), then ncu's kernel durations and DRAM bytes
  stage decodesplits 150 $B/bench/gpu/bench_decode --out "$OUT/decode_splits_$GPU.json" --commit "$COMMIT" --batch 1 \
    --ctx 8192,32768,131072 --heads 32/8,32/32 --qlen 1 --page 16,256 --force 8,16,32,64,128 --no-cluster 1 --long 0
  cp "$LOG/decodesplits.log" "$OUT/decode_splits_${GPU}_table.txt" 2>/dev/null
  stage decodencu 200 ncu --clock-control none -k 'regex:decode' --csv --metrics \
    gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__cycles_active.avg,launch__grid_size,launch__occupancy_limit_shared_mem,launch__occupancy_limit_registers,launch__registers_per_thread \
    $B/bench/gpu/bench_decode --out "$OUT/decode_ncu_run.json" --batch 1 --ctx 8192,32768 --heads 32/8,32/32 --qlen 1 \
    --page 16 --force 1 --no-cluster 1 --long 0 --reps 3
  cp "$LOG/decodencu.log" "$OUT/decode_ncu.csv" 2>/dev/null
fi
if has decodemodel; then  # issue 18: the decode planner's rule vs the decode cost model's split count, alternating, two rounds
  for r in 1 2; do
    for m in rule model; do
      stage decodemodel_${m}_$r 150 env FLATATTN_DECODE_SPLITS=$m $B/bench/gpu/bench_decode \
        --out "$OUT/decode_splits_${m}_r$r.json" --commit "$COMMIT" ${DECODE_ARGS:-}
      cp "$LOG/decodemodel_${m}_$r.log" "$OUT/decode_splits_${m}_r${r}_table.txt" 2>/dev/null
    done
  done
fi
if has decodepdl; then  # issue 18: the decode step with PDL off (0) and on (1), alternating, two rounds
  for r in 1 2; do
    for pdl in 0 1; do
      stage decodepdl${pdl}_$r 150 env FLATATTN_CUDA_PDL=$pdl $B/bench/gpu/bench_decode \
        --out "$OUT/decode_pdl${pdl}_r$r.json" --commit "$COMMIT" ${DECODE_ARGS:-}
      cp "$LOG/decodepdl${pdl}_$r.log" "$OUT/decode_pdl${pdl}_r${r}_table.txt" 2>/dev/null
    done
  done
fi
if has peers; then
  stage peers 240 env PYTHONUNBUFFERED=1 PEERS_MATH=0 PEERS_N=${PEERS_N:-128,256,512,1024,2048,4096,8192,16384} \
    python3 bench/gpu/peers_sdpa.py fwd
fi
if has bwdbench; then
  stage bwdbench 120 $B/bench/gpu/bench_bwd --out "$OUT/ours_bwd.json" --commit "$COMMIT"
  cp "$LOG/bwdbench.log" "$OUT/ours_bwd_table.txt" 2>/dev/null
  if [[ $EXPECT == sm90 ]]; then  # the sm80 family's backward on the same GPU, for the comparison
    stage bwdbench80 120 env FLATATTN_CUDA_SM90=0 $B/bench/gpu/bench_bwd --out "$OUT/ours_bwd_sm80.json" --commit "$COMMIT"
    cp "$LOG/bwdbench80.log" "$OUT/ours_bwd_sm80_table.txt" 2>/dev/null
  fi
fi
if has sparse; then  # issue 16: FlexAttention (torch.compile) and SDPA with the boolean mask on the issue's masks
  # and our block-sparse forward against our dense one (bench_sparse; the CUDA sparse backward is not written yet)
  stage sparse_ours 120 $B/bench/gpu/bench_sparse --out "$OUT/sparse.json" --commit "$COMMIT"
  stage sparse 300 env PYTHONUNBUFFERED=1 OUT="$OUT" FLEX_N=${FLEX_N:-4096,8192,16384,32768} python3 bench/gpu/peers_flex.py
fi
if has sparsewsp; then  # issue 16: the sparse kernel on one CTA per tile (0) vs persistent (1), alternating, two rounds
  for r in 1 2; do
    for p in 0 1; do
      stage sparsewsp${p}_$r 120 env FLATATTN_CUDA_SM90_WS_PERSISTENT=$p $B/bench/gpu/bench_sparse \
        --out "$OUT/sparse_wsp${p}_r$r.json" --commit "$COMMIT" --d ${SPARSE_D:-128,64} --n ${SPARSE_N:-16384} \
        --density ${SPARSE_DENSITY:-100,50,25,10} --bwd ${SPARSE_BWD:-1}
      cp "$LOG/sparsewsp${p}_$r.log" "$OUT/sparse_wsp${p}_r${r}_table.txt" 2>/dev/null
    done
  done
fi
if has clisparse && [[ -x $B/cli/flatattn ]]; then  # issue 16: `flatattn run` with block lists and local + global on the GPU
  stage clisparse_density 120 $B/cli/flatattn run --device cuda --dtype bf16 --n 4096 --d 128 --no-causal --density 0.1
  stage clisparse_global 120 $B/cli/flatattn run --device cuda --dtype bf16 --n 4096 --d 64 --no-causal --window 256,256 --global 16
  stage clisparse_bigbird 120 $B/cli/flatattn run --device cuda --dtype bf16 --n 4096 --d 64 --no-causal --window 256,256 --global 16 --density 0.1
  stage clisparse_bench 120 $B/cli/flatattn bench --device cuda --dtype bf16 --n 4096,16384 --d 128 --no-causal --density 0.25 \
    --json "$OUT/cli_bench_sparse_cuda.json"
  grep -hE "visited|PASS|FAIL|check" "$LOG"/clisparse_*.log | head -12 >> "$SUMMARY"
fi
if has features; then
  stage features 240 $B/bench/gpu/bench_features --out "$OUT/features.json" --commit "$COMMIT" \
    ${FEATURES_D:+--d $FEATURES_D} ${FEATURES_N:+--n $FEATURES_N}
  cp "$LOG/features.log" "$OUT/features_table.txt" 2>/dev/null
fi
if has biasbench; then  # the additive bias: ours vs none and the copy-bandwidth budget, then SDPA's peers
  stage biasbench 300 $B/bench/gpu/bench_bias --out "$OUT/bias.json" --commit "$COMMIT" \
    ${BIAS_D:+--d $BIAS_D} ${BIAS_N:+--n $BIAS_N}
  cp "$LOG/biasbench.log" "$OUT/bias_table.txt" 2>/dev/null
  stage biaspeers 300 env PYTHONUNBUFFERED=1 OUT="$OUT" ${BIAS_D:+PEERS_D=$BIAS_D} ${BIAS_N:+PEERS_N=$BIAS_N} \
    python3 bench/gpu/peers_sdpa_bias.py
fi
if has anydbench; then  # odd head dims (staged, docs/design.md) next to the multiple of 8 their kernel runs, same H
  stage anydbench 120 $B/bench/gpu/bench_bwd --out "$OUT/anyd_bwd.json" --d ${ANYD_D:-59,64,111,112,128,199,200} \
    --n ${ANYD_N:-1024,4096} --commit "$COMMIT"
  cp "$LOG/anydbench.log" "$OUT/anyd_bwd_table.txt" 2>/dev/null
fi
if has bwdpeers; then
  stage bwdpeers 150 env PYTHONUNBUFFERED=1 OUT="$OUT" python3 bench/gpu/peers_sdpa_bwd.py
fi
if has tune90; then  # the sm90 family's tile candidates only (bench/gpu/tune_sm90.cu)
  stage tune90 150 $B/bench/gpu/tune_fwd --out "$OUT/tune_sm90.json" --only sm90 ${TUNE_N:+--n $TUNE_N}
  cp "$LOG/tune90.log" "$OUT/tune_sm90.txt" 2>/dev/null
fi
if has tune; then
  stage tune 150 $B/bench/gpu/tune_fwd --out "$OUT/tune.json"
  stage tune_bwd 90 $B/bench/gpu/tune_bwd
fi
if has tunebwd; then  # the backward tuner alone (TUNE_BWD_ARGS, e.g. --n 8192)
  stage tune_bwd 150 $B/bench/gpu/tune_bwd ${TUNE_BWD_ARGS:-}
fi
if has profile; then
  stage profile 240 bash bench/gpu/profile_bwd.sh "$OUT/prof" "$B"
fi
if [[ -f $OUT/ours.json && -f $OUT/peers_sdpa.json ]]; then
  stage merge 60 python3 bench/gpu/merge.py "$OUT/ours.json" "$OUT/peers_sdpa.json" --prefix "$OUT/gpu-fwd-$GPU" \
    $([[ -f $OUT/ours_sm80.json ]] && echo --base "$OUT/ours_sm80.json")
  tail -n 3 "$OUT/gpu-fwd-$GPU.md" >> "$SUMMARY"
fi
if [[ -f $OUT/ours_bwd.json && -f $OUT/peers_bwd.json ]]; then
  stage merge_bwd 60 python3 bench/gpu/merge_bwd.py "$OUT/ours_bwd.json" "$OUT/peers_bwd.json" --prefix "$OUT/gpu-bwd-$GPU" \
    $([[ -f $OUT/ours_bwd_sm80.json ]] && echo --base "$OUT/ours_bwd_sm80.json")
  head -n 3 "$LOG/merge_bwd.log" | tail -n 1 >> "$SUMMARY"
fi
if has python; then
  stage python $(( DEADLINE - ($(date +%s) - START) - 20 )) env STAGES="${PY_STAGES:-install test minilm llama overhead}" OUT="$OUT/py" DEADLINE=$(( DEADLINE - ($(date +%s) - START) - 30 )) \
    bash python/gpu_session.sh
  cat "$OUT/py/summary.txt" >> "$SUMMARY" 2>/dev/null
fi
# Everything but the summary goes into one archive (the device returns at most 8 files), packed outside
# $OUT first: tar must not read the directory it is writing into.
tar -C "$OUT" -czf /tmp/flatattn_session.tgz --exclude=summary.txt . && mv /tmp/flatattn_session.tgz "$OUT/session.tgz" &&
  find "$OUT" -mindepth 1 ! -name session.tgz ! -name summary.txt -delete
echo "================ summary ================"
cat "$SUMMARY"
