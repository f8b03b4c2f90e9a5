#!/usr/bin/env bash
# The GPU check, in one run of under 9 minutes, on a machine with a GPU's
# OpenCL driver and PyTorch but without the Debian packages clgqa needs
# (README "On a GPU"). From the project root, with build/ (built with
# -DCLGQA_MPI=OFF when the MPI option exists) and .gpu/ (device-env.sh and the
# runtime .deb files) carried along:
#
#   bash bench/device-check.sh [OUT_DIR]      (default $OUT, else bench/results/gpu)
#
# 1. the op and model parity suites on the GPU, with the default paths (on a
#    GPU: device class gpu, tiled attention), with CLGQA_ATTENTION=rows and
#    (the model) with CLGQA_GEMM=direct, and the model's stale-rows tests
#    (a smaller batch after a larger one, on the GPU's padded GEMM rows);
# 2. clgqa bench --size s --batch 64 for all six schemes, then gqa and kdgqa
#    again with CLGQA_GEMM=direct: CLBlast's direct kernel on every product
#    (fewest commands) against its own choice by size (auto), which decides
#    the GEMM default for this GPU; then gqa and kdgqa in precision 16-mixed
#    where the GPU has cl_khr_fp16 ("not available" elsewhere, e.g. NVIDIA);
# 3. bench/torch_ref.py --size s --batch 64 --device cuda on the same GPU;
# 4. CLBlast's tuners on the same device (Debian's clblast-utils, from PATH
#    or .gpu/debs): clblast_tuner_xgemm_direct at the model's direct-kernel
#    product (12608 x 384 x 384, ViT-S/16 batch 64's attention projection),
#    then clblast_tuner_routine_xgemm (the direct/indirect crossover,
#    XGEMM_MIN_INDIRECT_SIZE, swept over m=n=k 64-2048 with the direct
#    result and the shipped Xgemm file of this device); their JSON in
#    OUT_DIR/tuners, and in OUT_DIR/tuning the files to ship into tuning/
#    (bench/tuning_files.py). A tuner writes its JSON only when a phase ends:
#    the direct tuner's first phase (46 configurations) should fit its
#    limit, its random second phase (131) may not;
# 5. the JSON files and the ratio table (bench/ratios.py), both GEMM paths;
#    on NVIDIA also each kernel's registers and spills (kernel-builds.txt).
# Everything goes to OUT_DIR: summary.txt (what passed, the table), one log per
# step. Each step has its own time limit inside a budget per phase (suites
# until 3 minutes, clgqa's bench until 4.8, its direct-GEMM run until 5.75,
# its 16-mixed run until 6.5, PyTorch's until 7.6, the tuners until 8.6),
# so one hang cannot eat the rest; a failed step is reported and the others still run.
# Exit status: the number of failed steps.
# A dry run elsewhere (e.g. PoCL), the tuners cut to a few configurations:
# CHECK_SIZE=demo CHECK_BATCH=8 CHECK_TORCH_DEVICE=cpu CLGQA_DEVICE=cpu
# CHECK_TUNER_DIRECT_ARGS="-m 256 -n 256 -k 256 -fraction 16 -runs 1"
# CHECK_TUNER_ROUTINE_ARGS="-m 256 -n 256 -k 256 -runs 1" CHECK_TUNER_SECONDS="10 50"
# bash bench/device-check.sh /tmp/dry
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-bench/results/gpu}}
size=${CHECK_SIZE:-s} batch=${CHECK_BATCH:-64} torch_device=${CHECK_TORCH_DEVICE:-cuda}
tuner_direct_args=${CHECK_TUNER_DIRECT_ARGS:--m 12608 -n 384 -k 384}
tuner_routine_args=${CHECK_TUNER_ROUTINE_ARGS:-}
read -r direct_seconds routine_seconds <<< "${CHECK_TUNER_SECONDS:-35 25}"
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"
started=$(date +%s)
failed=0
say() { echo "$*" | tee -a "$summary"; }

# step NAME SECONDS COMMAND...: run with a time limit (cut to what is left
# of the phase, $deadline), log to OUT/NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  local left=$((deadline - t0))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 5 ]; then
    say "$(printf '%-28s %-30s' "$name" "SKIPPED (phase budget spent)")"
    failed=$((failed + 1))
    return 1
  fi
  timeout -k 10 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  local verdict=ok
  [ $rc -eq 0 ] || { verdict="FAILED (exit $rc$([ $rc -eq 124 ] && echo ", over ${limit}s"))"; failed=$((failed + 1)); }
  say "$(printf '%-28s %-30s %4ds' "$name" "$verdict" $(( $(date +%s) - t0 )))"
  return $rc
}

if [ -f .gpu/device-env.sh ]; then
  # shellcheck disable=SC1091
  source .gpu/device-env.sh >> "$summary" 2>&1
fi
say "device check, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(hostname)"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >> "$summary" 2>&1
missing=$(ldd build/clgqa build/test_model 2>/dev/null | grep 'not found' | sort -u)
if [ ! -x build/clgqa ] || [ -n "$missing" ]; then
  say "build/clgqa is missing or cannot load its libraries:"
  say "$missing"
  say "(add the packages to .gpu/ and build on the build machine; see README \"On a GPU\")"
  exit 100
fi
deadline=$((started + 180))
step devices 30 build/clgqa devices && cat "$out/devices.log" >> "$summary"

# 1. parity suites: every op suite and the model's PyTorch fixtures, on the
# first GPU (the runtime's default device).
export CLGQA_DEVICE=${CLGQA_DEVICE:-gpu} CK_DEFAULT_TIMEOUT=120
suites=$(cd build && ls test_ops_* test_gemm 2>/dev/null | sort)
# suite NAME SECONDS [VAR=value...] BINARY: a step that must also run checks
# (a case name that matches nothing runs none and would pass).
suite() {
  local name=$1
  step "$@" || return 1
  if ! grep -q 'Checks: [1-9]' "$out/$name.log"; then
    say "$(printf '%-28s %-30s' "$name" "FAILED (no checks ran)")"
    failed=$((failed + 1))
  fi
}
for s in $suites; do
  suite "$s" 60 "build/$s"
done
suite test_model-parity 90 env CK_RUN_CASE=pytorch_parity build/test_model
suite test_model-stale-rows 45 env CK_RUN_CASE=stale_rows build/test_model
suite test_ops_attention-rows 60 env CLGQA_ATTENTION=rows build/test_ops_attention
suite test_model-parity-rows 90 env CLGQA_ATTENTION=rows CK_RUN_CASE=pytorch_parity build/test_model
suite test_model-parity-direct 60 env CLGQA_GEMM=direct CK_RUN_CASE=pytorch_parity build/test_model

# 2-3. the benchmarks on the same GPU.
clgqa_json="$out/clgqa-$size-b$batch.json" torch_json="$out/pytorch-$size-b$batch.json"
direct_json="$out/clgqa-$size-b$batch-gemm-direct.json"
# On NVIDIA the bench's kernels are built afresh with -cl-nv-verbose, so that
# kernel-builds.txt holds the compiler's register and spill counts of each
# (the build happens before the timed steps).
build_log=()
if grep -qi nvidia "$out/devices.log" 2> /dev/null; then
  build_log=(CLGQA_CACHE_DIR=off CLGQA_BUILD_OPTIONS=-cl-nv-verbose
             CLGQA_BUILD_LOG="$out/kernel-builds.txt")
fi
deadline=$((started + 290))
step bench-clgqa 130 env "${build_log[@]}" build/clgqa bench --size "$size" --batch "$batch" \
  --json "$clgqa_json"
if [ -s "$out/kernel-builds.txt" ]; then
  say "registers per work-item (ptxas), kernel by kernel:"
  awk "/entry function/ { match(\$0, /'[^']*'/); name = substr(\$0, RSTART + 1, RLENGTH - 2); spill = \"\" }
       /spill stores/ { spill = \$0; sub(/^ */, \"\", spill) }
       /Used [0-9]+ registers/ { sub(/.*Used/, \"Used\"); printf \"  %-28s %s; %s\\n\", name, \$0, spill }" \
    "$out/kernel-builds.txt" | sort -u | tee -a "$summary" > /dev/null
fi
deadline=$((started + 345))
step bench-clgqa-gemm-direct 70 env CLGQA_GEMM=direct build/clgqa bench --size "$size" \
  --batch "$batch" --schemes gqa,kdgqa --json "$direct_json"
# 16-mixed beside the fp32 run above where the GPU has half floats
# (cl_khr_fp16); "not available" where the device the suites ran on lacks
# them (NVIDIA's OpenCL driver does not list it): a one-step probe on the
# demo model is refused there in one line, which is not a failure.
deadline=$((started + 390))
if timeout -k 5 30 build/clgqa bench --size demo --batch 2 --steps 1 --warmup 1 --schemes gqa \
     --precision 16-mixed > "$out/fp16-probe.log" 2>&1; then
  step bench-clgqa-16-mixed 45 build/clgqa bench --size "$size" --batch "$batch" \
    --schemes gqa,kdgqa --precision 16-mixed --json "$out/clgqa-$size-b$batch-16-mixed.json"
elif grep -q "no half-precision floats" "$out/fp16-probe.log"; then
  say "$(printf '%-28s %-30s' bench-clgqa-16-mixed "not available (no cl_khr_fp16)")"
else
  say "$(printf '%-28s %-30s' bench-clgqa-16-mixed "FAILED (the probe: fp16-probe.log)")"
  failed=$((failed + 1))
fi
python=""
want_cuda="import torch; assert '$torch_device' == 'cpu' or torch.cuda.is_available()"
for p in python3 /usr/bin/python3; do
  if command -v "$p" > /dev/null && "$p" -c "$want_cuda" 2> /dev/null; then
    python=$p
    break
  fi
done
deadline=$((started + 455))
if [ -n "$python" ]; then
  step bench-torch 75 "$python" bench/torch_ref.py --size "$size" --batch "$batch" \
    --device "$torch_device" --json "$torch_json"
else
  say "bench-torch                  FAILED (no python3 with PyTorch on $torch_device)"
  failed=$((failed + 1))
fi

# 4. CLBlast's tuners on the device the suites ran on: its platform and its
# index there, counted from `clgqa devices` (devices.log) as clgqa matches
# CLGQA_DEVICE (an index, gpu, cpu or part of a name or platform).
deadline=$((started + 515))
tuner_bin=""
if ! command -v clblast_tuner_xgemm_direct > /dev/null; then
  deb=$(ls .gpu/debs/clblast-utils_*.deb 2> /dev/null | head -n 1)
  if [ -n "$deb" ] && dpkg -x "$deb" /tmp/clgqa-clblast-utils 2>> "$summary"; then
    tuner_bin=/tmp/clgqa-clblast-utils/usr/bin/
  fi
fi
read -r tuner_platform tuner_device < <(awk -v spec="$(echo "$CLGQA_DEVICE" | tr '[:upper:]' '[:lower:]')" '
  /^\[[0-9]+\] / { index_ = substr($1, 2, length($1) - 2); name = tolower(substr($0, length($1) + 2)) }
  /^    platform: / { platform = substr($0, 15); if (!(platform in number)) number[platform] = platforms++
                      device = devices[platform]++ }
  /^    type: / { type = tolower($2)
    if (!found && (spec == index_ || spec == type ||
                   (spec !~ /^([0-9]+|gpu|cpu)$/ && (index(name, spec) || index(tolower(platform), spec))))) {
      print number[platform], device; found = 1 } }' "$out/devices.log" 2> /dev/null)
tuner_dir="$out/tuners"
rm -rf "$tuner_dir" "$out/tuning"
mkdir -p "$tuner_dir/routine"
python_any=${python:-python3}
if [ -z "$tuner_platform" ] || ! command -v "${tuner_bin}clblast_tuner_xgemm_direct" > /dev/null; then
  say "tuners                       FAILED (no clblast_tuner_xgemm_direct (clblast-utils in .gpu/debs) or no device '$CLGQA_DEVICE' in devices.log)"
  failed=$((failed + 1))
else
  say "tuners on platform $tuner_platform, device $tuner_device"
  where=(-platform "$tuner_platform" -device "$tuner_device" -precision 32)
  # Line-buffered, so that a tuner cut by its limit leaves its log.
  line_buffered=$(command -v stdbuf > /dev/null && echo "stdbuf -oL")
  # shellcheck disable=SC2016,SC2086
  step tuner-xgemm-direct "$direct_seconds" bash -c 'cd "$1" && shift && exec "$@"' _ "$tuner_dir" \
    $line_buffered \
    "${tuner_bin}clblast_tuner_xgemm_direct" "${where[@]}" $tuner_direct_args
  if [ $? -eq 124 ] && [ -s "$tuner_dir/clblast_xgemm_direct_1_32.json" ]; then
    say "  (cut in its random second phase: the first phase's result is kept, not a failure)"
    failed=$((failed - 1))
  fi
  # The routine tuner reads the kernels' tuning from its folder.
  direct=$("$python_any" bench/tuning_files.py direct-best "$tuner_dir" 2> /dev/null) &&
    cp "$direct" "$tuner_dir/routine/clblast_xgemm_direct_1_32.json"
  device_name=$(awk -v want="$tuner_platform $tuner_device" '
    /^\[[0-9]+\] / { name = substr($0, length($1) + 2) }
    /^    platform: / { platform = substr($0, 15); if (!(platform in number)) number[platform] = platforms++
                        if (number[platform] " " devices[platform]++ == want) { print name; exit } }' \
    "$out/devices.log")
  xgemm=$("$python_any" bench/tuning_files.py match "$device_name" tuning/*.json 2> /dev/null) &&
    cp "$xgemm" "$tuner_dir/routine/clblast_xgemm_1_32.json"
  # shellcheck disable=SC2016,SC2086
  step tuner-routine-xgemm "$routine_seconds" bash -c 'cd "$1" && shift && exec "$@"' _ \
    "$tuner_dir/routine" $line_buffered \
    "${tuner_bin}clblast_tuner_routine_xgemm" "${where[@]}" $tuner_routine_args
  "$python_any" bench/tuning_files.py ship "$tuner_dir" "$out/tuning" 2>&1 | tee -a "$summary"
fi

# 5. the table.
say ""
if [ -s "$clgqa_json" ] && [ -s "$torch_json" ]; then
  [ -s "$direct_json" ] || direct_json=""
  "${python:-python3}" bench/ratios.py "$clgqa_json" "$torch_json" $direct_json 2>&1 |
    tee "$out/ratios.txt" >> "$summary"
else
  for log in "$out/bench-clgqa.log" "$out/bench-clgqa-gemm-direct.log"; do
    [ -s "$log" ] && tail -n 40 "$log" >> "$summary"
  done
fi
say ""
say "$failed failed step(s), $(( $(date +%s) - started ))s in all"
cat "$summary"
exit $failed
