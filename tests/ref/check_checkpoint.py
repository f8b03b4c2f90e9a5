#!/usr/bin/python3
"""Load a clgqa checkpoint into the PyTorch reference and compare logits.

    /usr/bin/python3 tests/ref/check_checkpoint.py CKPT.safetensors INPUT.safetensors [--tol 1e-4]

CKPT: a safetensors checkpoint written by clgqa: the reference state_dict
names and shapes, DGQA state (blocks.{i}.attn.cache float [G],
blocks.{i}.attn.split integer [G]) and the config in __metadata__ as strings:
img_size, patch_size, in_chans, embed_dim, depth (or num_layers), heads (or
num_heads), kv_heads (or num_kv_heads), num_classes, att_scheme,
window_size. Other tensors (AdamW moments, step, generator state: anything
outside the model's names) are ignored.

INPUT: `input` [B, C, H, W] float and `logits` [B, num_classes] computed by
clgqa in evaluation mode (`expected.eval_logits` is accepted too, so a
fixture checks against itself). For pgqa, `pgqa_noise.{i}` [H, P*d] per layer
(the raw noise clgqa used; taken from CKPT when INPUT lacks it).

The model is loaded strictly: every reference tensor must be present with its
shape. Evaluation mode as the reference: PGQA perturbs, DGQA computes its
split from the loaded cache (then cache = m), KDGQA from the key norms.

Prints max abs and relative difference (max |a-b| / max |expected|) and exits
0 when the relative difference is <= tol, 1 above it, 2 when the files cannot
be used.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_model import DGQA_SCHEMES, ViTConfig, VisionTransformer  # noqa: E402
from safetensors_io import load_file  # noqa: E402

MODEL_NAMESPACES = ("cls_token", "pos_embed", "patch_embed.", "blocks.", "norm.", "head.")


class CheckError(Exception):
    pass


def load_reference(ckpt, md):
    try:
        cfg = ViTConfig.from_metadata(md)
    except (KeyError, ValueError) as e:
        raise CheckError(f"checkpoint metadata: {e}")
    model = VisionTransformer(cfg)
    want = model.state_dict()
    problems, notes = [], []
    load = {}
    for name, ref in want.items():
        if name not in ckpt:
            problems.append(f"missing tensor {name} {list(ref.shape)}")
            continue
        t = ckpt[name]
        if tuple(t.shape) != tuple(ref.shape):
            problems.append(f"{name}: shape {list(t.shape)}, the reference has {list(ref.shape)}")
            continue
        if t.is_floating_point() != ref.is_floating_point():
            problems.append(f"{name}: dtype {t.dtype}, the reference has {ref.dtype}")
            continue
        load[name] = t.to(ref.dtype)  # F16/BF16 -> F32, I32 -> I64
    for name in sorted(set(ckpt) - set(want)):
        if not name.startswith(MODEL_NAMESPACES):
            continue  # optimiser state, step, generator, fixture extras
        if cfg.scheme not in DGQA_SCHEMES and name.endswith((".attn.cache", ".attn.split")):
            notes.append(f"ignored {name} ({cfg.scheme} keeps no DGQA state)")
            continue
        problems.append(f"unexpected tensor {name} {list(ckpt[name].shape)}")
    if problems:
        raise CheckError("checkpoint does not match the reference model:\n  " + "\n  ".join(problems))
    model.load_state_dict(load, strict=True)
    if cfg.scheme in DGQA_SCHEMES:
        for i, a in enumerate(model.attns()):
            if int(a.split.sum()) != cfg.heads or bool((a.split < 0).any()):
                raise CheckError(f"blocks.{i}.attn.split {a.split.tolist()} does not sum to H = {cfg.heads}")
    return model, cfg, notes


def check(ckpt_path, input_path, tol=1e-4, out=print):
    """Returns the exit status; prints a short report through `out`."""
    try:
        ckpt, md = load_file(ckpt_path)
        inp, _ = load_file(input_path)
        model, cfg, notes = load_reference(ckpt, md)
        if "input" not in inp:
            raise CheckError(f"{input_path}: no `input` tensor")
        expected = inp.get("logits", inp.get("expected.eval_logits"))
        if expected is None:
            raise CheckError(f"{input_path}: no `logits` tensor")
        x = inp["input"].float()
        if cfg.scheme == "pgqa":
            noises = []
            for i in range(cfg.depth):
                key = f"pgqa_noise.{i}"
                src = inp if key in inp else ckpt
                if key not in src:
                    raise CheckError(f"pgqa: {key} [H, P*d] is needed (in INPUT or CKPT) "
                                     "to make the evaluation deterministic")
                noises.append(src[key].float())
            model.set_noise(noises)
    except (CheckError, OSError, ValueError) as e:
        out(f"error: {e}")
        return 2
    for n in notes:
        out(f"note: {n}")

    model.eval()
    with torch.no_grad():
        logits = model(x)
    if tuple(logits.shape) != tuple(expected.shape):
        out(f"error: logits shape {list(expected.shape)} in INPUT, the reference gives {list(logits.shape)}")
        return 2
    for i, a in enumerate(model.attns()):
        if a.last_fixups and cfg.scheme in DGQA_SCHEMES:
            out(f"warning: layer {i}: the DGQA split needed {a.last_fixups} random fix-up picks; "
                "clgqa draws them from its own generator, so logits may differ")
        if cfg.scheme in ("kdgqa",) + DGQA_SCHEMES:
            out(f"layer {i}: split {a.last_split.tolist()}")
    diff = (logits.double() - expected.double()).abs()
    max_abs = float(diff.max())
    rel = max_abs / max(float(expected.double().abs().max()), 1e-30)
    ok = rel <= tol
    out(f"{cfg.scheme}: {logits.shape[0]} inputs, max abs diff {max_abs:.3e}, "
        f"max rel diff {rel:.3e} (tol {tol:g}): {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("input")
    ap.add_argument("--tol", type=float, default=1e-4, help="relative tolerance (default 1e-4)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    return check(args.checkpoint, args.input, args.tol)


if __name__ == "__main__":
    sys.exit(main())
