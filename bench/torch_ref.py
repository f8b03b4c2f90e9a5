#!/usr/bin/python3
"""PyTorch side of the benchmark: the reference model's train step and inference.

    /usr/bin/python3 bench/torch_ref.py [--size demo|s|b|l|c] [--batch N] [--steps N]
        [--warmup N] [--schemes mhsa,gqa,...] [--kv-heads G] [--device cpu|cuda]
        [--threads N] [--json FILE]
        size c (or any size, to override): --img --patch --in-chans --embed
        --depth --heads --classes --window

Same configs and JSON schema as `clgqa bench`: per scheme the train step
(forward + backward + AdamW, fp32, a fixed synthetic batch) as median, min and
max milliseconds over --steps after --warmup steps, train img/s from the
median, and inference img/s (evaluation-mode forward, no autograd).
Sizes: demo = the README demo's ViT (28x28x1, patch 7, 64 wide, 4 layers,
4 heads, 2 kv heads, 10 classes); s, b, l = the reference ViT-S/B/L at 224,
patch 16, 1000 classes (kv heads 3, 6, 8 as clgqa's presets).
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
from reference_model import SCHEMES, SIZES, ViTConfig, VisionTransformer, adamw  # noqa: E402

# Same optimiser settings as clgqa bench's train step.
ADAMW = dict(lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)


def base_config(args):
    if args.size == "demo" or args.size == "c":
        cfg = dict(img_size=28, patch_size=7, in_chans=1, embed_dim=64, depth=4,
                   heads=4, kv_heads=2, num_classes=10, window_size=100)
    else:
        C, depth, H = SIZES[args.size]
        cfg = dict(img_size=224, patch_size=16, in_chans=3, embed_dim=C, depth=depth,
                   heads=H, kv_heads={"s": 3, "b": 6, "l": 8}[args.size],
                   num_classes=1000, window_size=100)
    overrides = dict(img_size=args.img, patch_size=args.patch, in_chans=args.in_chans,
                     embed_dim=args.embed, depth=args.depth, heads=args.heads,
                     kv_heads=args.kv_heads, num_classes=args.classes, window_size=args.window)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


def device_name(dev):
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} ({torch.get_num_threads()} threads)"


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def summary(ms):
    return {"median": statistics.median(ms), "min": min(ms), "max": max(ms)}


def bench_scheme(cfg_dict, scheme, args, dev):
    cfg = ViTConfig(scheme=scheme, **cfg_dict).validate()
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    model = VisionTransformer(cfg).to(dev)
    if dev.type == "cpu":
        model.set_generator(gen)  # PGQA draws / DGQA picks on a seeded stream
    opt = adamw(model, **ADAMW)
    x = torch.randn(args.batch, cfg.in_chans, cfg.img_size, cfg.img_size, generator=gen).to(dev)
    y = torch.randint(cfg.num_classes, (args.batch,), generator=gen).to(dev)

    def train_step(step):
        model.train()
        model.set_step(step)  # batch index within the epoch (one long epoch)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        sync(dev)

    step = 0
    for _ in range(args.warmup):
        train_step(step)
        step += 1
    train_ms = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        train_step(step)
        train_ms.append((time.perf_counter() - t0) * 1e3)
        step += 1

    model.eval()
    infer_ms = []
    with torch.no_grad():
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            model(x)
            sync(dev)
            if i >= args.warmup:
                infer_ms.append((time.perf_counter() - t0) * 1e3)
    tr, inf = summary(train_ms), summary(infer_ms)
    return {
        "train_step_ms": tr,
        "train_img_s": args.batch * 1e3 / tr["median"],
        "infer_ms": inf,
        "infer_img_s": args.batch * 1e3 / inf["median"],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="demo", choices=("demo", "s", "b", "l", "c"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's, which counts physical cores: "
                    "1 on this 2-vCPU machine; 2 OpenMP threads ran 5x slower here under load)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", dest="json_path", default=None)
    ap.add_argument("--img", type=int)
    ap.add_argument("--patch", type=int)
    ap.add_argument("--in-chans", type=int)
    ap.add_argument("--embed", type=int)
    ap.add_argument("--depth", "--num-layers", type=int)
    ap.add_argument("--heads", "--num-heads", type=int)
    ap.add_argument("--kv-heads", type=int)
    ap.add_argument("--classes", "--num-classes", type=int)
    ap.add_argument("--window", type=int)
    args = ap.parse_args()
    for flag in ("batch", "steps"):
        if getattr(args, flag) < 1:
            ap.error(f"--{flag} must be positive")
    if args.warmup < 0:
        ap.error("--warmup must be >= 0")
    schemes = args.schemes.split(",")
    for s in schemes:
        if s not in SCHEMES:
            ap.error(f"--schemes: unknown scheme {s!r} (known: {', '.join(SCHEMES)})")
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: this torch build sees no CUDA device")
    if dev.type == "cuda":
        # fp32 as clgqa: no TF32 tensor-core shortcuts in matmuls.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    cfg = base_config(args)
    try:
        ViTConfig(scheme=schemes[0], **cfg).validate()
    except ValueError as e:
        ap.error(str(e))
    results = {}
    print(f"device: {device_name(dev)}, torch {torch.__version__}")
    print(f"model: {args.size} {cfg}, batch {args.batch}, {args.steps} steps after {args.warmup} warm-up\n")
    print(f"{'scheme':<10} {'step ms':>10} {'min':>10} {'max':>10} {'train img/s':>12} {'infer img/s':>12}")
    for s in schemes:
        r = bench_scheme(cfg, s, args, dev)
        results[s] = r
        t = r["train_step_ms"]
        print(f"{s:<10} {t['median']:10.2f} {t['min']:10.2f} {t['max']:10.2f} "
              f"{r['train_img_s']:12.1f} {r['infer_img_s']:12.1f}", flush=True)

    if args.json_path:
        doc = {
            "tool": "pytorch",
            "device": device_name(dev),
            "device_type": dev.type,
            "torch_version": torch.__version__,
            "cuda_version": torch.version.cuda if dev.type == "cuda" else None,
            "threads": torch.get_num_threads() if dev.type == "cpu" else None,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "config": {
                "size": args.size, "batch": args.batch, "steps": args.steps,
                "warmup": args.warmup, "img_size": cfg["img_size"],
                "patch_size": cfg["patch_size"], "in_chans": cfg["in_chans"],
                "embed_dim": cfg["embed_dim"], "depth": cfg["depth"],
                "num_heads": cfg["heads"], "num_kv_heads": cfg["kv_heads"],
                "num_classes": cfg["num_classes"], "window_size": cfg["window_size"],
                "dtype": "float32",
            },
            "schemes": results,
        }
        with open(args.json_path, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
