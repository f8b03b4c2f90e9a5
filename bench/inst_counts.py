#!/usr/bin/python3
"""Multiply-adds per local-memory load of each kernel, from the output of
`oclgrind --inst-counts` (its histograms, one per launch, summed per
kernel). A multiply-add is an llvm.fmuladd call, a <4 x float> one counting
4; a load is one `load local` instruction, whatever its width, and the last
column divides by the floats loaded instead. The tiled attention kernels
with the GPU paths forced, as in docs/benchmarks.md:

    CLGQA_DEVICE_CLASS=gpu CLGQA_ATTENTION=tiled CLGQA_TEST_SMALL=1 \\
      CLGQA_CACHE_DIR=off oclgrind --inst-counts build/test_ops_attention > counts.txt
    bench/inst_counts.py counts.txt [KERNEL ...]   (default: attention_tiled*)
"""
import re
import sys


def read(path):
    """{kernel: {instruction: count}} with each `(N bytes)` summed apart."""
    kernels, kernel = {}, None
    with open(path) as f:
        for line in f:
            m = re.match(r"Instructions executed for kernel '(\w+)':", line)
            if m:
                kernel = kernels.setdefault(m.group(1), {})
                continue
            m = re.match(r"\s+(\d+) - (.*?)\s*$", line)
            if not m or kernel is None:
                continue
            count, what = int(m.group(1)), m.group(2)
            name = re.sub(r" \(\d+ bytes\)", "", what)
            kernel[name] = kernel.get(name, 0) + count
            size = re.search(r"\((\d+) bytes\)", what)
            if size:
                kernel[name + " bytes"] = kernel.get(name + " bytes", 0) + int(size.group(1))
    return kernels


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    kernels = read(sys.argv[1])
    names = sys.argv[2:] or sorted(k for k in kernels if k.startswith("attention_tiled"))
    if not names:
        sys.exit(f"{sys.argv[1]}: no kernel's instruction counts (run oclgrind --inst-counts)")
    print(f"{'kernel':<22} {'multiply-adds':>14} {'local loads':>12} {'per load':>9} {'per float':>10}")
    for name in names:
        k = kernels.get(name, {})
        fma = k.get("call llvm.fmuladd.f32()", 0) + 4 * k.get("call llvm.fmuladd.v4f32()", 0)
        loads, floats = k.get("load local", 0), k.get("load local bytes", 0) / 4
        print(f"{name:<22} {fma:>14} {loads:>12} {fma / loads if loads else 0:>9.2f} "
              f"{fma / floats if floats else 0:>10.2f}")


if __name__ == "__main__":
    main()
