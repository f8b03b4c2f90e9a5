#!/usr/bin/python3
"""Uptraining fixtures (issue 5): a timm-layout MHSA ViT and what the
reference conversion to G key/value heads gives.

Writes
  fixtures/timm_vit.safetensors               timm state_dict (fused attn.qkv)
  fixtures/timm_uptrain_expected.safetensors  inputs, converted q/k/v, eval
                                              logits of the gqa and kdgqa
                                              models, pos_embed resampling

    /usr/bin/python3 tests/ref/make_timm_fixture.py [--check]

Conversion (semantics page, "Uptraining"): q as is; k and v viewed as
[H, d, C] ([H, d] for biases), averaged over contiguous groups of H/G heads.
Position embeddings for another patch grid: timm's resample_abs_pos_embed
(class token kept, bicubic, align_corners=False); antialias=False is this
project's rule, and the antialias=True variant (timm's checkpoint-filter
default) is stored too, named *_antialias.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import near_half, norms_separated, randomise  # noqa: E402
from reference_model import (ViTConfig, VisionTransformer, convert_timm_state_dict,  # noqa: E402
                             resample_abs_pos_embed)
from safetensors_io import write_or_check  # noqa: E402

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SOURCE = dict(img_size=9, patch_size=3, in_chans=3, embed_dim=12, depth=2,
              heads=6, kv_heads=3, num_classes=5)
N_INPUTS = 4
BIG_IMG = 15          # same checkpoint at a 5x5 grid: pos_embed resampled
SEED = 777


def kdgqa_robust(model):
    for a in model.attns():
        if a.last_shares is None or near_half(a.last_shares) or a.last_fixups:
            return False
        if not norms_separated(a.last_key_norms):
            return False
    return True


def generate():
    for attempt in range(200):
        seed = SEED + attempt
        gen = torch.Generator().manual_seed(seed)
        timm_cfg = ViTConfig(scheme="mhsa", **SOURCE)
        timm = VisionTransformer(timm_cfg, fused_qkv=True)
        randomise(timm, gen)
        timm_sd = {k: v.clone() for k, v in timm.state_dict().items()}
        x = torch.randn(N_INPUTS, 3, SOURCE["img_size"], SOURCE["img_size"], generator=gen)
        x_big = torch.randn(2, 3, BIG_IMG, BIG_IMG, generator=gen)

        out = {"input": x, "input.img15": x_big}
        ok = True
        models = {}
        for scheme in ("gqa", "kdgqa"):
            cfg = ViTConfig(scheme=scheme, **SOURCE)
            model = VisionTransformer(cfg).eval()
            model.load_state_dict(convert_timm_state_dict(timm_sd, cfg), strict=True)
            with torch.no_grad():
                out[f"expected.{scheme}.logits"] = model(x)
            if scheme == "kdgqa":
                ok = kdgqa_robust(model)
                for i, a in enumerate(model.attns()):
                    out[f"expected.kdgqa.split.{i}"] = a.last_split.clone()
            models[scheme] = model
        if not ok:
            continue

        # Converted attention tensors (the same for gqa and kdgqa: G = 3).
        conv = convert_timm_state_dict(timm_sd, ViTConfig(scheme="gqa", **SOURCE))
        for i in range(SOURCE["depth"]):
            for part in ("q", "k", "v"):
                for kind in ("weight", "bias"):
                    name = f"blocks.{i}.attn.{part}.{kind}"
                    out[f"converted.{name}"] = conv[name]

        # The same checkpoint on 15x15 images (grid 3 -> 5): gqa logits.
        big_cfg = ViTConfig(scheme="gqa", **dict(SOURCE, img_size=BIG_IMG))
        big_sd = dict(conv)
        big_sd["pos_embed"] = resample_abs_pos_embed(conv["pos_embed"], (5, 5))
        big = VisionTransformer(big_cfg).eval()
        big.load_state_dict(big_sd, strict=True)
        with torch.no_grad():
            out["expected.gqa.img15.logits"] = big(x_big)
        out["expected.gqa.img15.pos_embed"] = big_sd["pos_embed"]

        # Stand-alone resampling cases: up (3x3 -> 5x5) and down (4x4 -> 3x3).
        C = SOURCE["embed_dim"]
        up_in = timm_sd["pos_embed"]
        down_in = torch.randn(1, 17, C, generator=gen)
        out["posemb.up.input"] = up_in
        out["posemb.up.expected"] = resample_abs_pos_embed(up_in, (5, 5))
        out["posemb.up.expected_antialias"] = resample_abs_pos_embed(up_in, (5, 5), antialias=True)
        out["posemb.down.input"] = down_in
        out["posemb.down.expected"] = resample_abs_pos_embed(down_in, (3, 3))
        out["posemb.down.expected_antialias"] = resample_abs_pos_embed(down_in, (3, 3), antialias=True)

        # As a timm/Hugging Face export: no model config in the file (the
        # shapes and the target config say it all).
        src_md = {"format": "pt"}
        exp_md = ViTConfig(scheme="gqa", **SOURCE).to_metadata()
        for k in ("scheme", "att_scheme"):
            exp_md[k] = "gqa,kdgqa"
        exp_md.update({
            "format": "clgqa-ref-uptrain-1", "seed": str(seed),
            "mode": "eval",
            "conversion": "q as is; k, v averaged over contiguous groups of H/G heads",
            "resample": "bicubic, align_corners=False, antialias=False, class token kept",
            "img15": "input.img15 through the gqa model with pos_embed resampled 3x3 -> 5x5",
            "torch_version": torch.__version__.split("+")[0],
        })
        return timm_sd, src_md, {k: v.detach().clone() for k, v in out.items()}, exp_md
    raise RuntimeError("no seed gave a robust KDGQA allocation")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    timm_sd, src_md, exp, exp_md = generate()
    files = (("timm_vit", timm_sd, src_md), ("timm_uptrain_expected", exp, exp_md))
    bad = write_or_check(files, FIXTURE_DIR, args.check)
    if not args.check:
        print("kdgqa splits:", [exp[f"expected.kdgqa.split.{i}"].tolist() for i in range(SOURCE["depth"])])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
