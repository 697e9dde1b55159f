#!/usr/bin/env bash
# The Python side of a GPU-machine session (no package registry there): install the package with the CUDA
# backend, run the whole pytest suite (GPU tests included), the MiniLM and Llama examples on CPU and GPU,
# and the call-overhead benchmark. Results land under $OUT; a summary prints last.
#
#   # here, once: python examples/prepare_minilm_carry.py        (-> .xfer/minilm-fp16, 44 MB; carry it)
#   STAGES="install test minilm llama overhead" OUT=/tmp/out bash python/gpu_session.sh
# Environment: STAGES (default all), ARCHS (FLATATTN_CUDA_ARCHS for the build, default 90 = H100/H200 only; no
# compute_75 PTX: the wheel serves this GPU),
# JOBS (default nproc), MODEL_DIR (default .xfer/minilm-fp16), DEADLINE (seconds, default 540), PY_CMAKE_EXTRA (more
# CMake options for the install, e.g. "-DFLATATTN_HDIMS=64;128" for a faster build of the head dims a stage needs).
# Optional stage `longformer` (issue 16): examples/longformer_attention.py on CPU and CUDA.
# Optional stage `flex` (issue 16): bench/gpu/peers_flex.py with the installed package, so flatattn.flex_attention
# runs on the same BlockMasks as torch.compile(flex_attention) and SDPA's boolean mask (FLEX_* as that script).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/py-gpu-out}
STAGES=${STAGES:-"install test minilm llama overhead"}
ARCHS=${ARCHS:-90}
JOBS=${JOBS:-$(nproc)}
MODEL_DIR=${MODEL_DIR:-.xfer/minilm-fp16}
DEADLINE=${DEADLINE:-540}
START=$(date +%s)
LOG=$OUT/logs
mkdir -p "$LOG"
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
has() { [[ " $STAGES " == *" $1 "* ]]; }
stage() {  # stage NAME TIMEOUT_S CMD...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  local left=$(( DEADLINE - (t0 - START) - 10 ))
  if (( left < 20 )); then note "$(printf '%-9s skipped: %ss left' "$name" "$left")"; return 124; fi
  (( limit > left )) && limit=$left
  timeout --kill-after=10 "$limit" "$@" > "$LOG/$name.log" 2>&1
  local rc=$?
  note "$(printf '%-9s rc=%-3s %4ss  %s' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$(tail -n 1 "$LOG/$name.log" | cut -c1-120)")"
  return $rc
}
note "device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)  $(python3 -c 'import torch, sys; print("torch", torch.__version__, "python", sys.version.split()[0])' 2>&1)"

if has install; then
  # --no-build-isolation: use the machine's nanobind / scikit-build-core; --no-deps: nothing to fetch.
  stage install 420 env FLATATTN_CUDA=ON CMAKE_ARGS="-DFLATATTN_CUDA_ARCHS=$ARCHS -DFLATATTN_CUDA_PTX75=OFF ${PY_CMAKE_EXTRA:-}" CMAKE_BUILD_PARALLEL_LEVEL=$JOBS \
    python3 -m pip install . --no-build-isolation --no-deps -v
  stage import 30 python3 -c "import flatattn; assert flatattn.cuda_built(), 'built without CUDA'; print('flatattn', flatattn.__version__, 'cuda_built', flatattn.cuda_built())"
fi
if has test; then
  stage pytest 300 env FLATATTN_TEST_SLOW=1 python3 -m pytest -q -ra tests/python --junitxml="$OUT/pytest.xml"
  grep -E "passed|failed|error|seed" "$LOG/pytest.log" | tail -4 >> "$SUMMARY"
fi
if has minilm; then
  stage minilm 180 python3 examples/minilm_embeddings.py --device all --model-dir "$MODEL_DIR" --out "$OUT/python_minilm.json"
  grep -E "^\[" "$LOG/minilm.log" >> "$SUMMARY"
fi
if has llama; then
  stage llama 180 python3 examples/llama_generate.py --device all
  grep -E "^\[" "$LOG/llama.log" >> "$SUMMARY"
fi
if has overhead; then
  stage ovh_cuda 120 python3 bench/python_overhead.py --device cuda --out "$OUT/python_overhead_cuda.json"
  stage ovh_cpu 120 python3 bench/python_overhead.py --device cpu --out "$OUT/python_overhead_cpu.json"
  grep -E "added overhead" "$LOG"/ovh_*.log >> "$SUMMARY"
fi
if has longformer; then  # issue 16: Hugging Face LongformerSelfAttention reproduced by two flatattn calls, CPU and CUDA
  stage longformer 120 python3 examples/longformer_attention.py --device all
  tail -n 4 "$LOG/longformer.log" >> "$SUMMARY"
fi
if has flex; then
  stage flex ${FLEX_LIMIT:-420} env PYTHONUNBUFFERED=1 OUT="$OUT" python3 bench/gpu/peers_flex.py
  grep -c "'mask'" "$LOG/flex.log" | sed 's/^/flex rows: /' >> "$SUMMARY"
fi
tar -C "$OUT" -czf "$OUT/py-logs.tar.gz" logs && rm -rf "$LOG"
echo "================ summary ================"
cat "$SUMMARY"
