#!/usr/bin/python3
"""The clgqa/PyTorch ratio table of benchmark JSON files (`clgqa bench
--json`, bench/torch_ref.py --json): per scheme, train and inference img/s of
each and their ratio (> 1: clgqa is faster), plus clgqa's OpenCL calls per
training step when they were counted and its GEMMs per kernel (direct /
indirect). Further clgqa files (the same model on the same device with
another GEMM path, e.g. CLGQA_GEMM=direct) add a row per scheme they
measured, with their train speed against the first clgqa file's.

    bench/ratios.py CLGQA_JSON PYTORCH_JSON [CLGQA_JSON ...]
"""
import json
import sys


def gemm_path(c):
    """A run's GEMM path: the kernel forced, or auto with CLBlast's bound."""
    kernel = c.get("gemm_kernel", "auto")
    if kernel == "auto" and "gemm_min_indirect_size" in c:
        return f"auto<{int(c['gemm_min_indirect_size'])}^3"
    return kernel


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    c, t, *others = (json.load(open(p)) for p in sys.argv[1:])
    for path, run in zip(sys.argv[1:], [c, t] + others):
        if run.get("plan_only"):
            sys.exit(f"{path}: a plan run (CLGQA_COUNTER_MARKERS: kernels not run), its times are meaningless")
    print(f"clgqa:   {c['device']} (driver {c.get('driver', '?')}, CLBlast {c.get('clblast_version', '?')},"
          f" paths {c.get('device_class', '?')}/{c.get('attention_kernel', '?')})")
    print(f"PyTorch: {t['device']} (torch {t.get('torch_version', t.get('torch', '?'))})")
    print(f"config:  {c['config']}\n")
    print(f"{'scheme':<10} {'GEMM':<14} {'clgqa train img/s':>18} {'torch train img/s':>18} {'ratio':>7}"
          f" {'vs first':>8} {'clgqa infer img/s':>18} {'torch infer img/s':>18} {'ratio':>7}"
          f" {'commands':>9} {'buffers':>8} {'waits':>6} {'GEMMs dir/ind':>14}")
    for name, first in c["schemes"].items():
        ts = t["schemes"].get(name)
        for run in [c] + others:
            cs = run["schemes"].get(name)
            if cs is None:
                continue
            calls = cs.get("step_opencl_calls", {})
            gemms = cs.get("step_gemm_calls", {})
            counts = (f" {calls.get('commands', '-'):>9} {calls.get('buffers_created', '-'):>8}"
                      f" {calls.get('host_waits', '-'):>6}"
                      f" {str(gemms.get('direct', '-')) + '/' + str(gemms.get('indirect', '-')):>14}")
            vs_first = f"{cs['train_img_s'] / first['train_img_s']:>8.2f}"
            row = f"{name:<10} {gemm_path(run):<14} {cs['train_img_s']:>18.1f}"
            if ts is None:
                print(f"{row} {'(not measured by PyTorch)':>26} {vs_first}{counts}")
                continue
            print(f"{row} {ts['train_img_s']:>18.1f} {cs['train_img_s'] / ts['train_img_s']:>7.2f}"
                  f" {vs_first} {cs['infer_img_s']:>18.1f} {ts['infer_img_s']:>18.1f}"
                  f" {cs['infer_img_s'] / ts['infer_img_s']:>7.2f}{counts}")


if __name__ == "__main__":
    main()
