#!/usr/bin/env bash
# The GPU check, in one run of under 8 minutes, on a machine with a GPU's
# OpenCL driver and PyTorch but without the Debian packages clgqa needs
# (README "On a GPU"). From the project root, with build/ (built with
# -DCLGQA_MPI=OFF when the MPI option exists) and .gpu/ (device-env.sh and the
# runtime .deb files) carried along:
#
#   bash bench/device-check.sh [OUT_DIR]      (default $OUT, else bench/results/gpu)
#
# 1. the op and model parity suites on the GPU, with the default paths (on a
#    GPU: device class gpu, tiled attention), with CLGQA_ATTENTION=rows and
#    (the model) with CLGQA_GEMM=direct;
# 2. clgqa bench --size s --batch 64 for all six schemes, then gqa and kdgqa
#    again with CLGQA_GEMM=direct: CLBlast's direct kernel on every product
#    (fewest commands) against its own choice by size (auto), which decides
#    the GEMM default for this GPU;
# 3. bench/torch_ref.py --size s --batch 64 --device cuda on the same GPU;
# 4. the JSON files and the ratio table (bench/ratios.py), both GEMM paths;
#    on NVIDIA also each kernel's registers and spills (kernel-builds.txt).
# Everything goes to OUT_DIR: summary.txt (what passed, the table), one log per
# step. Each step has its own time limit inside a budget per phase (suites
# until 3.3 minutes, clgqa's bench until 5.3, its direct-GEMM run until 6.5,
# PyTorch's until 7.75), so one hang cannot eat the rest; a failed step is
# reported and the others still run.
# Exit status: the number of failed steps.
# A dry run elsewhere (e.g. PoCL): CHECK_SIZE=demo CHECK_BATCH=8
# CHECK_TORCH_DEVICE=cpu CLGQA_DEVICE=cpu bash bench/device-check.sh /tmp/dry
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-bench/results/gpu}}
size=${CHECK_SIZE:-s} batch=${CHECK_BATCH:-64} torch_device=${CHECK_TORCH_DEVICE:-cuda}
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
deadline=$((started + 200))
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
deadline=$((started + 320))
step bench-clgqa 130 env "${build_log[@]}" build/clgqa bench --size "$size" --batch "$batch" \
  --json "$clgqa_json"
if [ -s "$out/kernel-builds.txt" ]; then
  say "registers per work-item (ptxas), kernel by kernel:"
  awk "/entry function/ { match(\$0, /'[^']*'/); name = substr(\$0, RSTART + 1, RLENGTH - 2); spill = \"\" }
       /spill stores/ { spill = \$0; sub(/^ */, \"\", spill) }
       /Used [0-9]+ registers/ { sub(/.*Used/, \"Used\"); printf \"  %-28s %s; %s\\n\", name, \$0, spill }" \
    "$out/kernel-builds.txt" | sort -u | tee -a "$summary" > /dev/null
fi
deadline=$((started + 390))
step bench-clgqa-gemm-direct 70 env CLGQA_GEMM=direct build/clgqa bench --size "$size" \
  --batch "$batch" --schemes gqa,kdgqa --json "$direct_json"
python=""
want_cuda="import torch; assert '$torch_device' == 'cpu' or torch.cuda.is_available()"
for p in python3 /usr/bin/python3; do
  if command -v "$p" > /dev/null && "$p" -c "$want_cuda" 2> /dev/null; then
    python=$p
    break
  fi
done
deadline=$((started + 465))
if [ -n "$python" ]; then
  step bench-torch 100 "$python" bench/torch_ref.py --size "$size" --batch "$batch" \
    --device "$torch_device" --json "$torch_json"
else
  say "bench-torch                  FAILED (no python3 with PyTorch on $torch_device)"
  failed=$((failed + 1))
fi

# 4. the table.
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
