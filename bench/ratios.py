#!/usr/bin/python3
"""The clgqa/PyTorch ratio table of two benchmark JSON files (`clgqa bench
--json`, bench/torch_ref.py --json): per scheme, train and inference img/s of
each and their ratio (> 1: clgqa is faster), plus clgqa's OpenCL calls per
training step when they were counted.

    bench/ratios.py CLGQA_JSON PYTORCH_JSON
"""
import json
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    c, t = (json.load(open(p)) for p in sys.argv[1:3])
    print(f"clgqa:   {c['device']} (driver {c.get('driver', '?')}, CLBlast {c.get('clblast_version', '?')},"
          f" paths {c.get('device_class', '?')}/{c.get('attention_kernel', '?')})")
    print(f"PyTorch: {t['device']} (torch {t.get('torch_version', t.get('torch', '?'))})")
    print(f"config:  {c['config']}\n")
    print(f"{'scheme':<10} {'clgqa train img/s':>18} {'torch train img/s':>18} {'ratio':>7}"
          f" {'clgqa infer img/s':>18} {'torch infer img/s':>18} {'ratio':>7}"
          f" {'commands':>9} {'buffers':>8} {'waits':>6}")
    for name, cs in c["schemes"].items():
        ts = t["schemes"].get(name)
        calls = cs.get("step_opencl_calls", {})
        counts = (f" {calls.get('commands', '-'):>9} {calls.get('buffers_created', '-'):>8}"
                  f" {calls.get('host_waits', '-'):>6}")
        if ts is None:
            print(f"{name:<10} (not measured by PyTorch){counts}")
            continue
        print(f"{name:<10} {cs['train_img_s']:>18.1f} {ts['train_img_s']:>18.1f}"
              f" {cs['train_img_s'] / ts['train_img_s']:>7.2f}"
              f" {cs['infer_img_s']:>18.1f} {ts['infer_img_s']:>18.1f}"
              f" {cs['infer_img_s'] / ts['infer_img_s']:>7.2f}{counts}")


if __name__ == "__main__":
    main()
