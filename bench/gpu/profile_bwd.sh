#!/usr/bin/env bash
# Nsight Compute profiles of the backward's main kernel, ours (bench_bwd) and SDPA flash's
# (FlashAttention-2, through torch: bench/gpu/profile_sdpa_bwd.py), bf16, N = 8k, B = 2, H = 16,
# non-causal, D = 64 and 128; our deterministic mode at D = 128. Clocks as the GPU runs them
# (--clock-control none). Reports and text pages land in $1 (default ./prof).
#   [PROF_PEERS=0] bash bench/gpu/profile_bwd.sh OUTDIR BUILD_DIR   (PROF_PEERS=0: ours only)
set -uo pipefail
P=${1:-prof}
B=${2:-build-gpu}
mkdir -p "$P"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
SEC=(--section SpeedOfLight --section WarpStateStats --section InstructionStats --section MemoryWorkloadAnalysis
     --section MemoryWorkloadAnalysis_Tables --section LaunchStats --section Occupancy --section SchedulerStats
     --section ComputeWorkloadAnalysis)
MET=smsp__inst_executed.sum,smsp__sass_inst_executed_op_shared_ld.sum,smsp__sass_inst_executed_op_shared_st.sum,smsp__sass_inst_executed_op_ldsm.sum,smsp__sass_inst_executed_op_global_atom.sum,smsp__sass_inst_executed_op_global_red.sum,smsp__sass_inst_executed_op_local_ld.sum,smsp__sass_inst_executed_op_local_st.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum,smsp__inst_executed_pipe_tensor.sum,gpu__time_duration.sum
# prof NAME KERNEL_REGEX SKIP CMD...: one kernel, full sections, then the opcode histogram and counters.
prof() {
  local name=$1 re=$2 skip=$3; shift 3
  timeout 120 "$NCU" --clock-control none -k "regex:$re" --launch-skip "$skip" --launch-count 1 "${SEC[@]}" \
    -f -o "$P/$name" "$@" > "$P/$name.run.log" 2>&1
  "$NCU" -i "$P/$name.ncu-rep" --page details --print-details all > "$P/$name.details.txt" 2>&1
  "$NCU" -i "$P/$name.ncu-rep" --page raw --print-metric-instances values > "$P/$name.raw.txt" 2>&1 ||
    "$NCU" -i "$P/$name.ncu-rep" --page raw > "$P/$name.raw.txt" 2>&1
  timeout 60 "$NCU" --clock-control none -k "regex:$re" --launch-skip "$skip" --launch-count 1 --metrics "$MET" \
    "$@" > "$P/$name.metrics.txt" 2>&1
  grep -E "Duration|Executed Ipc|Registers Per|Achieved Occupancy|Local Memory|Issue Slots Busy|Stall|Bank" \
    "$P/$name.details.txt" | head -40
}
for d in 64 128; do
  # bench_bwd --reps 1: per mode 7 launches (1 + 5 warm-up + 1); the third non-causal default one.
  prof ours_d$d flash_bwd_kernel 2 "$B/bench/gpu/bench_bwd" --d $d --n 8192 --reps 1 --out /tmp/prof_$d.json
  [[ ${PROF_PEERS:-1} == 1 ]] && prof fa2_d$d flash_bwd_dq_dk_dv 1 env PROF_D=$d PROF_N=8192 python3 bench/gpu/profile_sdpa_bwd.py
done
# Deterministic, D = 128: launches 14..20 of the non-causal shape.
prof ours_det_d128 flash_bwd_kernel 16 "$B/bench/gpu/bench_bwd" --d 128 --n 8192 --reps 1 --out /tmp/prof_det.json
# Every kernel of one backward (durations only): ours (pre-pass, main, conversion) and FA2's.
timeout 60 "$NCU" --clock-control none -k "regex:bwd|dot_do_o|convert_dq" --launch-skip 6 --launch-count 3 \
  --section SpeedOfLight "$B/bench/gpu/bench_bwd" --d 128 --n 8192 --reps 1 --out /tmp/prof_all.json > "$P/ours_all_d128.txt" 2>&1
[[ ${PROF_PEERS:-1} == 1 ]] && timeout 60 "$NCU" --clock-control none -k "regex:flash_bwd|dot_do_o|convert_dq" --launch-skip 3 --launch-count 3 \
  --section SpeedOfLight env PROF_D=128 PROF_N=8192 python3 bench/gpu/profile_sdpa_bwd.py > "$P/fa2_all_d128.txt" 2>&1
ls -la "$P"
rm -f "$P"/*.ncu-rep  # the text pages above hold what is read; the reports are too large to bring back
