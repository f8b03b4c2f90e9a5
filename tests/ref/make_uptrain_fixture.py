#!/usr/bin/python3
"""Fixtures of scripts/uptrain's conversion (issue 22): an MHSA checkpoint as
its stage 1 writes it (the reference's state_dict names, separate q/k/v, 8
query heads), and the evaluation logits of the reference after the paper's
mean-pooled conversion to every scheme at G = 1, 2 and 4 key/value heads.

Writes
  fixtures/uptrain_mhsa.safetensors      the MHSA state_dict (8 heads)
  fixtures/uptrain_expected.safetensors  input; per scheme and G the eval
                                         logits, the splits used, PGQA's noise

    /usr/bin/python3 tests/ref/make_uptrain_fixture.py [--check]

Conversion (semantics page, "Uptraining"): q as is; k and v viewed as
[H, d, C] ([H, d] for biases), averaged over contiguous groups of H/G heads;
DGQA's cache starts at 0 and its split static (convert_timm_state_dict, here
applied to the q/k/v of an MHSA state_dict). Evaluation mode: KDGQA and DGQA
group from the batch's key norms (DGQA against the zero cache), PGQA adds the
stored noise.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import near_half, norms_separated, randomise  # noqa: E402
from reference_model import (DGQA_SCHEMES, ViTConfig, VisionTransformer,  # noqa: E402
                             average_kv_heads, static_split)
from safetensors_io import write_or_check  # noqa: E402

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
# 9x9 RGB, patch 3: P = 10 tokens; C 16, H 8 (d = 2), as the uptrain demo's
# 8 query heads; 5 classes; window 3.
SOURCE = dict(img_size=9, patch_size=3, in_chans=3, embed_dim=16, depth=2,
              heads=8, kv_heads=8, num_classes=5, window_size=3)
SCHEMES = ("gqa", "kdgqa", "dgqa_diff", "dgqa_ema", "pgqa")
KV_HEADS = (1, 2, 4)
N_INPUTS = 4
SEED = 2222


def convert_mhsa_state_dict(sd, cfg):
    """MHSA state_dict (separate q/k/v, H heads) -> VisionTransformer(cfg)'s."""
    H, G = cfg.heads, cfg.groups
    out = {}
    for name, t in sd.items():
        if ".attn.k." in name or ".attn.v." in name:
            out[name] = average_kv_heads(t, H, G)
        else:
            out[name] = t.clone()
    if cfg.scheme in DGQA_SCHEMES:
        for i in range(cfg.depth):
            out[f"blocks.{i}.attn.cache"] = torch.zeros(G)
            out[f"blocks.{i}.attn.split"] = static_split(H, G)
    return out


def robust(model, scheme):
    """Every layer's allocation far from a rounding boundary, with no fix-up
    (DGQA's would be random), and KDGQA's extreme norms apart."""
    for a in model.attns():
        if a.last_shares is not None and (near_half(a.last_shares) or a.last_fixups):
            return False
        if scheme == "kdgqa" and a.G > 1 and not norms_separated(a.last_key_norms):
            return False
    return True


def generate():
    for attempt in range(500):
        seed = SEED + attempt
        gen = torch.Generator().manual_seed(seed)
        mhsa = VisionTransformer(ViTConfig(scheme="mhsa", **SOURCE))
        randomise(mhsa, gen)
        # Key heads of different sizes (a factor in [0.3, 2) per head), so
        # that after pooling the key norms differ enough for DGQA's shares,
        # not only KDGQA's min-max ones, to leave the even split.
        with torch.no_grad():
            for blk in mhsa.blocks:
                scale = 0.3 + 1.7 * torch.rand(SOURCE["heads"], 1, generator=gen)
                d_ = SOURCE["embed_dim"] // SOURCE["heads"]
                blk.attn.k.weight.mul_(scale.repeat_interleave(d_, 0))
        mhsa_sd = {k: v.clone() for k, v in mhsa.state_dict().items()}
        x = torch.randn(N_INPUTS, 3, SOURCE["img_size"], SOURCE["img_size"], generator=gen)
        P, d = 10, SOURCE["embed_dim"] // SOURCE["heads"]
        out = {"input": x}
        with torch.no_grad():
            out["expected.mhsa.logits"] = mhsa.eval()(x)
        ok = True
        for G in KV_HEADS:
            noises = [torch.rand(SOURCE["heads"], P * d, generator=gen) for _ in range(SOURCE["depth"])]
            for scheme in SCHEMES:
                cfg = ViTConfig(scheme=scheme, **dict(SOURCE, kv_heads=G))
                model = VisionTransformer(cfg).eval()
                model.load_state_dict(convert_mhsa_state_dict(mhsa_sd, cfg), strict=True)
                if scheme == "pgqa":
                    model.set_noise(noises)
                    for i, u in enumerate(noises):
                        out[f"pgqa_noise.g{G}.{i}"] = u
                with torch.no_grad():
                    out[f"expected.{scheme}.g{G}.logits"] = model(x)
                if scheme in ("kdgqa",) + DGQA_SCHEMES:
                    ok = ok and robust(model, scheme)
                    for i, a in enumerate(model.attns()):
                        out[f"expected.{scheme}.g{G}.split.{i}"] = a.last_split.clone()
        # Each key-driven scheme must leave the even split in some layer at
        # G = 2 and at G = 4, or the test could not tell it from GQA.
        uneven = all(any(bool((out[f"expected.{s}.g{G}.split.{i}"] != 8 // G).any())
                         for i in range(SOURCE["depth"]))
                     for s in ("kdgqa", "dgqa_diff", "dgqa_ema") for G in (2, 4))
        if not ok or not uneven:
            continue
        md = ViTConfig(scheme="mhsa", **SOURCE).to_metadata()
        md.update({
            "format": "clgqa-ref-uptrain-sweep-1", "seed": str(seed), "mode": "eval",
            "schemes": ",".join(SCHEMES), "kv_heads": ",".join(map(str, KV_HEADS)),
            "conversion": "q as is; k, v averaged over contiguous groups of H/G heads; "
                          "DGQA cache 0, split static",
            "torch_version": torch.__version__.split("+")[0],
        })
        return mhsa_sd, {"format": "pt"}, {k: v.detach().clone() for k, v in out.items()}, md
    raise RuntimeError("no seed gave robust allocations")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    mhsa_sd, src_md, exp, exp_md = generate()
    files = (("uptrain_mhsa", mhsa_sd, src_md), ("uptrain_expected", exp, exp_md))
    bad = write_or_check(files, FIXTURE_DIR, args.check)
    if not args.check:
        for s in ("kdgqa", "dgqa_diff", "dgqa_ema"):
            print(s, {G: [exp[f"expected.{s}.g{G}.split.{i}"].tolist() for i in range(SOURCE["depth"])]
                      for G in KV_HEADS})
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
