#!/usr/bin/env bash
# A/B timing of two source trees on one GPU in one lease: a baseline tree (BASE, e.g. `git archive` of the
# commit before a change, carried under .xfer/) and this checkout. Both are built with the same options,
# then bench_fwd, bench_bwd and host_overhead run alternately (base, new, base, new, ...) so that drift of
# the card shows up as the spread of each side. Everything lands under $OUT; a summary prints last.
#
#   BASE=.xfer/base OUT=/tmp/out ROUNDS=2 bash scripts/ab_session.sh
# BENCHES may also name `decode`: bench_decode (DECODE_ARGS), and with DECODE_ENV set (e.g. FLATATTN_CUDA_PDL=0)
# the new tree once more under that environment ("new_env"). AB_TESTS (a gtest filter): the new tree is configured
# with the tests, and test_cuda runs that filter after the rounds. AB_DTYPES (default bf16), AB_CMAKE_EXTRA (more
# cmake options for both trees, e.g. "-DFLATATTN_VARIANTS=plain;softcap;alibi"; not -DFLATATTN_CUDA_SUBSET=ci, which
# builds sm_80/sm_86 SASS only, so nothing runs on an H100), ROUND_S (default 150: no round starts with less
# time left), BASE_CMAKE_EXTRA (cmake options for the baseline only, after AB_CMAKE_EXTRA: e.g. fewer head dims,
# dtypes or variants when it only runs a bench that needs one of them). ALT: a third tree (e.g. the change's first
# step alone), built like the baseline and run between it and the new tree in every round (side "alt").
# Environment: BASE (required), ROUNDS (default 2), ARCHS (default 90: the sm80 family as sm_90 SASS plus
# the sm90 family), HDIMS (default 64;128;256), BENCH_D / BENCH_N / BWD_D / BWD_N (the benches' lists),
# BWD_ARGS (more bench_bwd options, e.g. --dropout 0.1),
# DEADLINE (seconds, default 540; rounds stop before it), JOBS, BENCHES (default "fwd bwd host": which benches
# each round runs), CUPTI (a CUPTI with include/ and lib/ for host_overhead's split; default: the toolkit's
# extras/CUPTI, else .xfer/cupti when carried).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT}
BASE=${BASE:?set BASE to the baseline source tree}
ROUNDS=${ROUNDS:-2}
ARCHS=${ARCHS:-90}
HDIMS=${HDIMS:-"64;128;256"}
JOBS=${JOBS:-$(nproc)}
DEADLINE=${DEADLINE:-540}
START=$(date +%s)
mkdir -p "$OUT"
SUMMARY=$OUT/ab_summary.txt
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $(( DEADLINE - ($(date +%s) - START) )); }

BENCHES=${BENCHES:-"fwd bwd host"}
if [[ -z ${CUPTI:-} ]]; then
  for c in /usr/local/cuda/extras/CUPTI "$PWD/.xfer/cupti"; do [[ -f $c/include/cupti.h ]] && { CUPTI=$c; break; }; done
fi
note "device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)  $(date -u +%FT%TZ)"
# host_overhead only uses the public API: the reference trees (BASE, ALT) build the same source (this tree's, copied over).
for tree in "$BASE" ${ALT:+"$ALT"}; do
  cp bench/gpu/host_overhead.cc bench/gpu/cupti_probe.h bench/gpu/cupti_probe.cc bench/gpu/empty_launch.cu bench/gpu/bench_util.h "$tree/bench/gpu/"
  if ! grep -q cupti_probe "$tree/bench/gpu/CMakeLists.txt"; then
    sed -i '/host_overhead/d' "$tree/bench/gpu/CMakeLists.txt"
    cat >> "$tree/bench/gpu/CMakeLists.txt" <<'CMAKE'

add_executable(host_overhead host_overhead.cc cupti_probe.cc empty_launch.cu)
set_target_properties(host_overhead PROPERTIES CUDA_ARCHITECTURES "75-virtual;90-real")
target_link_libraries(host_overhead PRIVATE flatattn_core)
if(FLATATTN_BENCH_CUPTI_ROOT)
  find_library(FLATATTN_CUPTI_LIB NAMES cupti libcupti.so.13 libcupti.so.12 PATHS "${FLATATTN_BENCH_CUPTI_ROOT}/lib"
               "${FLATATTN_BENCH_CUPTI_ROOT}/lib64" NO_DEFAULT_PATH)
  target_include_directories(host_overhead PRIVATE "${FLATATTN_BENCH_CUPTI_ROOT}/include")
  target_link_libraries(host_overhead PRIVATE "${FLATATTN_CUPTI_LIB}")
  target_compile_definitions(host_overhead PRIVATE FLATATTN_BENCH_CUPTI)
endif()
CMAKE
  fi
done
note "cupti: ${CUPTI:-none}"
TARGETS=""
for bch in fwd bwd decode; do [[ " $BENCHES " == *" $bch "* ]] && TARGETS="$TARGETS bench_$bch"; done
[[ " $BENCHES " == *" host "* ]] && TARGETS="$TARGETS host_overhead"
build() {  # build SRC DIR LOG [TESTS [EXTRA]]
  local t0=$(date +%s)
  cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLATATTN_CUDA=ON -DFLATATTN_CUDA_ARCHS="$ARCHS" \
    -DFLATATTN_HDIMS="$HDIMS" -DFLATATTN_DTYPES=${AB_DTYPES:-bf16} -DFLATATTN_CUDA_PTX75=OFF -DFLATATTN_BUILD_TESTS=${4:-OFF} \
    -DFLATATTN_BUILD_CLI=OFF -DFLATATTN_CUDA_PTXAS_VERBOSE=ON ${CUPTI:+-DFLATATTN_BENCH_CUPTI_ROOT=$CUPTI} ${AB_CMAKE_EXTRA:-} ${5:-} > "$3" 2>&1 &&
    ninja -C "$2" -j "$JOBS" $TARGETS $([[ ${4:-OFF} == ON ]] && echo test_cuda) >> "$3" 2>&1
  local rc=$?
  note "build $1: rc=$rc $(( $(date +%s) - t0 )) s"
  return $rc
}
SIDES="base${ALT:+ alt} new"
build "$BASE" build-ab-base "$OUT/build_base.log" OFF "${BASE_CMAKE_EXTRA:-}" & pb=$!
ra=0
if [[ -n ${ALT:-} ]]; then build "$ALT" build-ab-alt "$OUT/build_alt.log" OFF "${BASE_CMAKE_EXTRA:-}" & pa=$!; fi
build . build-ab-new "$OUT/build_new.log" $([[ -n ${AB_TESTS:-} ]] && echo ON); rn=$?
wait $pb; rb=$?
[[ -n ${ALT:-} ]] && { wait $pa; ra=$?; }
(( rn == 0 && rb == 0 && ra == 0 )) || { note "build failed"; tail -30 "$OUT"/build_*.log; exit 1; }

run() {  # run SIDE ROUND: one pass of the three benches
  local side=$1 r=$2 b=build-ab-$1
  [[ " $BENCHES " == *" fwd "* ]] &&
    timeout 200 $b/bench/gpu/bench_fwd --out "$OUT/fwd_${side}_$r.json" ${BENCH_D:+--d $BENCH_D} ${BENCH_N:+--n $BENCH_N} \
      > "$OUT/fwd_${side}_$r.txt" 2>&1
  [[ " $BENCHES " == *" bwd "* ]] &&
    timeout 200 $b/bench/gpu/bench_bwd --out "$OUT/bwd_${side}_$r.json" ${BWD_D:+--d $BWD_D} ${BWD_N:+--n $BWD_N} ${BWD_ARGS:-} \
      > "$OUT/bwd_${side}_$r.txt" 2>&1
  [[ " $BENCHES " == *" host "* ]] &&
    timeout 90 $b/bench/gpu/host_overhead --out "$OUT/host_${side}_$r.json" > "$OUT/host_${side}_$r.txt" 2>&1
  if [[ " $BENCHES " == *" decode "* ]]; then
    timeout 120 $b/bench/gpu/bench_decode --out "$OUT/decode_${side}_$r.json" ${DECODE_ARGS:-} > "$OUT/decode_${side}_$r.txt" 2>&1
    [[ $side == new && -n ${DECODE_ENV:-} ]] &&
      timeout 120 env $DECODE_ENV $b/bench/gpu/bench_decode --out "$OUT/decode_new_env_$r.json" ${DECODE_ARGS:-} \
        > "$OUT/decode_new_env_$r.txt" 2>&1
  fi
  note "round $r $side done ($(left) s left)"
}
for ((r = 1; r <= ROUNDS; ++r)); do
  for side in $SIDES; do
    (( $(left) < ${ROUND_S:-150} )) && { note "stopping: $(left) s left"; break 2; }
    run $side $r
  done
done
[[ " $BENCHES " == *" fwd "* || " $BENCHES " == *" bwd "* ]] && python3 bench/gpu/ab_compare.py "$OUT" | tee -a "$SUMMARY"
if [[ -n ${AB_TESTS:-} ]]; then
  timeout $(( $(left) > 30 ? $(left) - 20 : 10 )) build-ab-new/tests/cuda/test_cuda --gtest_brief=1 --gtest_filter="$AB_TESTS" \
    > "$OUT/tests_new.txt" 2>&1
  note "tests ($AB_TESTS): rc=$? $(grep -E 'PASSED|FAILED' "$OUT/tests_new.txt" | head -5 | tr '\n' ' ')"
fi
# The results come back as one archive plus the summary (the device returns at most 8 files).
tar -C "$OUT" -czf /tmp/ab.tgz --exclude=ab_summary.txt . && mv /tmp/ab.tgz "$OUT/ab.tgz" &&
  find "$OUT" -mindepth 1 ! -name ab.tgz ! -name ab_summary.txt -delete
