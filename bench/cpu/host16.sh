#!/usr/bin/env bash
# Issue 21 on a bigger CPU host (the GPU machine's 16 cores, which run the CPU engine too): builds the Python package
# CPU-only (FLATATTN_CUDA=OFF) and runs bench/cpu/peers_torch_cpu.py against torch's CPU SDPA on all the host's
# cores. Writes the CPU's identity and flags, the build log and the peer lines under $OUT.
#   OUT=/tmp/out [THREADS=16] [SHAPES=...] [DTYPES=bf16,fp32] [BENCH_S=170] bash bench/cpu/host16.sh
# First run in stop 37 (bench/results/cpu-host16-vs-torch-2026-12-07.md): the build took 16 s on 16 cores.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT}
mkdir -p "$OUT"
{ lscpu; echo; grep -o -E 'amx_[a-z0-9]+|avx512_bf16|avx512_fp16|avx512f' /proc/cpuinfo | sort -u; } > "$OUT/cpu.txt"
t0=$(date +%s)
FLATATTN_CUDA=OFF CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) python3 -m pip install -q --no-deps --no-build-isolation \
  --target /tmp/flatattn-cpu . > "$OUT/pip.log" 2>&1
echo "build rc=$? $(( $(date +%s) - t0 )) s" | tee -a "$OUT/cpu.txt"
# DATAFLOWS (default auto): one pass per forced dataflow (auto flash flat), each under $OUT/<dataflow>/ when
# more than one is named; BENCH_S bounds each pass.
dfs=${DATAFLOWS:-auto}
for df in $dfs; do
  o=$OUT; [[ $dfs == *" "* ]] && o=$OUT/$df && mkdir -p "$o"
  PYTHONPATH=/tmp/flatattn-cpu OUT=$o DATAFLOW=$df SHAPES=${SHAPES:-gpt2,gpt2_causal,llama4k,n16k,n16k_full} \
    THREADS=${THREADS:-$(nproc)} DTYPES=${DTYPES:-bf16,fp32} REPS=${REPS:-3} WARMUP=1 PYTHONUNBUFFERED=1 \
    timeout "${BENCH_S:-170}" python3 bench/cpu/peers_torch_cpu.py 2>&1 | tee "$o/peers.txt"
done
