#!/usr/bin/python3
"""Write the PyTorch .pth fixtures (torch.save, zip format) of tests/test_pth.c.

The reference model's state_dicts come from the committed parity fixtures
(model_gqa, model_dgqa_diff), saved the way the paper's code saves them:

  reference_gqa.pth        torch.save(model.state_dict()) of the gqa model
  reference_gqa_qkv.pth    the same with q, k, v fused into attn.qkv
                           [C + 2*G*d, C] (the reference's grouped layout)
  reference_dgqa_diff.pth  the dgqa_diff model without blocks.{i}.attn.split
                           (the reference keeps only the cache)
  dtypes.pth               F32, F16, BF16, I64 tensors, a 0-d tensor and a
                           view at a storage offset, under a training
                           script's dict {"epoch", "model_state_dict",
                           "optimizer"} (AdamW's state_dict)
  dtypes_deflated.pth      dtypes.pth re-zipped with deflate
  dtypes_zip64.pth         dtypes.pth re-zipped with zip64 records
  legacy.pt                a tensor in the pre-1.6 format (refused)
  whole_module.pth         torch.save(module), not its state_dict (refused)
  pth_expected.safetensors the parity fixtures' inputs and the evaluation
                           logits of the reference on them for gqa and
                           dgqa_diff (eval mode: the DGQA split follows the
                           loaded cache),
                           and dtypes.pth's tensors as float32

    /usr/bin/python3 tests/ref/make_pth_fixture.py
"""
import os
import sys
import zipfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_model import ViTConfig, VisionTransformer  # noqa: E402
from safetensors_io import load_file, save_file  # noqa: E402

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def reference_model(scheme):
    """The parity fixture's model with its weights and DGQA state."""
    tensors, md = load_file(os.path.join(FIXTURE_DIR, f"model_{scheme}.safetensors"))
    model = VisionTransformer(ViTConfig.from_metadata(md))
    model.load_state_dict({k: tensors[k] for k in model.state_dict()})
    return model.eval(), tensors


def eval_logits(model, x):
    with torch.no_grad():
        return model(x)


def fuse_qkv(state_dict):
    """q, k, v of every block stacked by rows into attn.qkv."""
    out = {}
    for name, t in state_dict.items():
        if ".attn.q." in name:
            stem, kind = name.split(".attn.q.")
            parts = [state_dict[f"{stem}.attn.{p}.{kind}"] for p in "qkv"]
            out[f"{stem}.attn.qkv.{kind}"] = torch.cat(parts, dim=0)
        elif ".attn.k." not in name and ".attn.v." not in name:
            out[name] = t
    return out


def write_zip64(src_path, dst_path):
    """src re-zipped with every zip64 record (as torch writes files over
    4 GB): Python's zipfile told that every size needs zip64, then the
    classic end record's fields marked "see zip64" (Python fills them in)."""
    limits = zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT
    zipfile.ZIP64_LIMIT = zipfile.ZIP_FILECOUNT_LIMIT = 0
    try:
        with zipfile.ZipFile(src_path) as src, zipfile.ZipFile(dst_path, "w") as dst:
            for info in src.infolist():
                dst.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)),
                             src.read(info.filename))
    finally:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = limits
    data = bytearray(open(dst_path, "rb").read())
    end = len(data) - 22
    assert data[end:end + 4] == b"PK\x05\x06"
    data[end + 8:end + 12] = b"\xff" * 4    # entries on this disk, in all
    data[end + 12:end + 20] = b"\xff" * 8   # directory size and offset
    open(dst_path, "wb").write(bytes(data))


def main():
    torch.set_num_threads(1)
    expected = {}

    gqa, ref = reference_model("gqa")
    x = ref["input"]
    expected["gqa.input"] = x
    expected["gqa.eval_logits"] = eval_logits(gqa, x)
    assert torch.allclose(expected["gqa.eval_logits"], ref["expected.eval_logits"], atol=1e-6)
    torch.save(gqa.state_dict(), os.path.join(FIXTURE_DIR, "reference_gqa.pth"))
    torch.save(fuse_qkv(gqa.state_dict()), os.path.join(FIXTURE_DIR, "reference_gqa_qkv.pth"))

    dgqa, ref = reference_model("dgqa_diff")
    x = ref["input"]
    expected["dgqa_diff.input"] = x
    sd = {k: v for k, v in dgqa.state_dict().items() if not k.endswith(".split")}
    torch.save(sd, os.path.join(FIXTURE_DIR, "reference_dgqa_diff.pth"))
    # What the reference computes after loading that file: split static
    # (from __init__), cache loaded; in evaluation the split follows the cache.
    fresh = VisionTransformer(dgqa.cfg)
    missing = fresh.load_state_dict(sd, strict=False).missing_keys
    assert all(k.endswith(".split") for k in missing), missing
    expected["dgqa_diff.eval_logits"] = eval_logits(fresh.eval(), x)
    assert torch.allclose(expected["dgqa_diff.eval_logits"], ref["expected.eval_logits"], atol=1e-6)

    gen = torch.Generator().manual_seed(99)
    base = torch.randn(10, generator=gen)
    weights = {
        "f32": torch.randn(2, 3, generator=gen),
        "f16": torch.randn(4, generator=gen).half(),
        "bf16": torch.randn(3, 2, generator=gen).bfloat16(),
        "i64": torch.arange(-2, 3),
        "scalar": torch.tensor(3.5),
        "view": base[4:7],  # storage offset 4 into a 10-element storage
        "base": base,
    }
    param = torch.nn.Parameter(torch.randn(3, generator=gen))
    opt = torch.optim.AdamW([param], lr=1e-3)
    param.sum().backward()
    opt.step()
    checkpoint = {"epoch": 3, "model_state_dict": weights, "optimizer": opt.state_dict(), "best": 0.25}
    path = os.path.join(FIXTURE_DIR, "dtypes.pth")
    torch.save(checkpoint, path)
    for name, t in weights.items():
        expected[f"dtypes.{name}"] = t.float()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(os.path.join(FIXTURE_DIR, "dtypes_deflated.pth"), "w",
                                                       zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():  # a fixed date keeps the bytes reproducible
            entry = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(entry, src.read(info.filename))

    write_zip64(path, os.path.join(FIXTURE_DIR, "dtypes_zip64.pth"))
    torch.save({"w": torch.ones(2)}, os.path.join(FIXTURE_DIR, "legacy.pt"), _use_new_zipfile_serialization=False)
    torch.save(torch.nn.Linear(2, 2), os.path.join(FIXTURE_DIR, "whole_module.pth"))
    save_file({k: v.contiguous() for k, v in expected.items()},
              os.path.join(FIXTURE_DIR, "pth_expected.safetensors"),
              {"torch_version": torch.__version__, "format": "clgqa-pth-fixture-1"})
    for name in sorted(os.listdir(FIXTURE_DIR)):
        if name.endswith((".pth", ".pt")) or name == "pth_expected.safetensors":
            print(f"wrote {name}: {os.path.getsize(os.path.join(FIXTURE_DIR, name))} bytes")


if __name__ == "__main__":
    main()
