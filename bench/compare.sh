#!/usr/bin/env bash
# Runs `clgqa bench` and the PyTorch reference (bench/torch_ref.py) with the
# same model, batch, schemes and step counts, one after the other on this
# machine, and prints clgqa/PyTorch ratios per scheme (> 1: clgqa is faster).
#
#   bench/compare.sh [--size demo|s|b|l] [--batch N] [--steps N] [--warmup N]
#                    [--schemes a,b,...] [--kv-heads G]
#                    [--device SPEC]          clgqa's OpenCL device
#                    [--torch-device cpu|cuda] PyTorch's device (default cpu)
#                    [--out DIR]              where the two JSON files go
# Needs build/clgqa (scripts/setup) and /usr/bin/python3 with python3-torch
# (apt-get install python3-torch libopenblas0-pthread).
set -euo pipefail
cd "$(dirname "$0")/.."
common=() clgqa_only=() torch_only=() out=bench/results
while [ $# -gt 0 ]; do
  case "$1" in
    --size|--batch|--steps|--warmup|--schemes|--kv-heads) common+=("$1" "$2"); shift 2 ;;
    --device) clgqa_only+=("$1" "$2"); shift 2 ;;
    --torch-device) torch_only+=(--device "$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "compare.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ -x build/clgqa ] || { echo "compare.sh: build/clgqa missing: run scripts/setup" >&2; exit 1; }
/usr/bin/python3 -c 'import torch' 2>/dev/null ||
  { echo "compare.sh: /usr/bin/python3 lacks torch: apt-get install python3-torch" >&2; exit 1; }
# Debian's python3-torch does its CPU matrix products through the system
# libblas.so.3: the reference BLAS makes it several times slower than with
# OpenBLAS, which would flatter clgqa.
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
case "$blas" in
  */blas/libblas.so.3*) echo "compare.sh: warning: PyTorch uses the reference BLAS ($blas);" \
    "apt-get install libopenblas0-pthread for a fair baseline" >&2 ;;
esac
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
clgqa_json="$out/clgqa-$stamp.json" torch_json="$out/pytorch-$stamp.json"

echo "== clgqa bench ${common[*]} ${clgqa_only[*]}"
build/clgqa bench "${common[@]}" "${clgqa_only[@]}" --json "$clgqa_json"
echo
echo "== bench/torch_ref.py ${common[*]} ${torch_only[*]}"
/usr/bin/python3 bench/torch_ref.py "${common[@]}" "${torch_only[@]}" --json "$torch_json"
echo
/usr/bin/python3 bench/ratios.py "$clgqa_json" "$torch_json"
