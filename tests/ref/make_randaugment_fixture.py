#!/usr/bin/python3
"""Writes tests/ref/randaugment/expected.bin: every RandAugment op of
torchvision (0.13+, the uint8 tensor path of transforms/functional_tensor.py,
transcribed below with torch) at magnitude bin 9 of 31, both signs, on three
generated images. test_datasets_image.c compares clgqa's ops byte for byte.
Needs torch (not torchvision):

    /usr/bin/python3 tests/ref/make_randaugment_fixture.py

Images (same formula as gen_pixel in tests/support/dataset_gen.c):
    sample 7, 12x12 RGB; sample 11, 12x12 gray; sample 5, 9x9 RGB.
Layout: for each image, for op 0..13 (torchvision's order), for sign +, -:
the op's output, height x width x channels bytes. Unsigned ops repeat.
"""
import math
import os

import torch
from torch.nn.functional import conv2d, grid_sample

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "randaugment", "expected.bin")
IMAGES = [(7, 12, 3), (11, 12, 1), (5, 9, 3)]
BINS, BIN = 31, 9


def gen_pixel(sample, x, y, c):
    t = (sample * 37 + x * 5 + y * 3 + c * 50) % 400
    return 20 + (t if t < 200 else 400 - t)


def gen_image(sample, side, channels):
    return torch.tensor([[[gen_pixel(sample, x, y, c) for x in range(side)] for y in range(side)]
                         for c in range(channels)], dtype=torch.uint8)


# ---- geometry: F.affine / F.rotate with NEAREST and fill None ----

def inverse_affine(center, angle, translate, shear):
    rot = math.radians(angle)
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [d, -b, 0.0, -c, a, 0.0]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty) + cx
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty) + cy
    return m


def affine(img, m):
    _, h, w = img.shape
    theta = torch.tensor(m, dtype=torch.float).reshape(1, 2, 3)
    base = torch.empty(1, h, w, 3)
    base[..., 0].copy_(torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, steps=w))
    base[..., 1].copy_(torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, steps=h).unsqueeze_(-1))
    base[..., 2].fill_(1)
    grid = base.view(1, h * w, 3).bmm(theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h]))
    out = grid_sample(img.unsqueeze(0).float(), grid.view(1, h, w, 2), mode="nearest",
                      padding_mode="zeros", align_corners=False)
    return out[0].round().to(torch.uint8)


# ---- colour ----

def gray(img):
    r, g, b = img.unbind(dim=-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).to(img.dtype).unsqueeze(dim=-3)


def blend(a, b, ratio):
    return (ratio * a + (1.0 - ratio) * b).clamp(0, 255).to(a.dtype)


def contrast(img, f):
    src = gray(img) if img.shape[-3] == 3 else img
    return blend(img, torch.mean(src.to(torch.float32), dim=(-3, -2, -1), keepdim=True), f)


def sharpness(img, f):
    k = torch.ones((3, 3))
    k[1, 1] = 5.0
    k = (k / k.sum()).expand(img.shape[-3], 1, 3, 3)
    smooth = conv2d(img.float().unsqueeze(0), k, groups=img.shape[-3])[0].round().to(torch.uint8)
    degenerate = img.clone()
    degenerate[..., 1:-1, 1:-1] = smooth
    return blend(img, degenerate, f)


def autocontrast(img):
    lo = img.amin(dim=(-2, -1), keepdim=True).float()
    hi = img.amax(dim=(-2, -1), keepdim=True).float()
    scale = 255.0 / (hi - lo)
    flat = torch.isfinite(scale).logical_not()
    lo[flat], scale[flat] = 0, 1
    return ((img - lo) * scale).clamp(0, 255).to(img.dtype)


def equalize_channel(c):
    hist = torch.bincount(c.reshape(-1), minlength=256)
    step = torch.div(hist[hist != 0][:-1].sum(), 255, rounding_mode="floor")
    if step == 0:
        return c
    lut = torch.div(torch.cumsum(hist, 0) + torch.div(step, 2, rounding_mode="floor"), step,
                    rounding_mode="floor")
    lut = torch.nn.functional.pad(lut, [1, 0])[:-1].clamp(0, 255)
    return lut[c.to(torch.int64)].to(torch.uint8)


def apply_op(img, op, m):
    side = img.shape[-1]
    corner = [-side * 0.5, -side * 0.5]
    ops = [
        lambda: img,
        lambda: affine(img, inverse_affine(corner, 0.0, [0, 0], [math.degrees(math.atan(m)), 0.0])),
        lambda: affine(img, inverse_affine(corner, 0.0, [0, 0], [0.0, math.degrees(math.atan(m))])),
        lambda: affine(img, inverse_affine([0, 0], 0.0, [int(m), 0], [0.0, 0.0])),
        lambda: affine(img, inverse_affine([0, 0], 0.0, [0, int(m)], [0.0, 0.0])),
        lambda: affine(img, inverse_affine([0, 0], -m, [0, 0], [0.0, 0.0])),
        lambda: blend(img, torch.zeros_like(img), 1.0 + m),
        lambda: img if img.shape[-3] == 1 else blend(img, gray(img), 1.0 + m),
        lambda: contrast(img, 1.0 + m),
        lambda: sharpness(img, 1.0 + m),
        lambda: img & -int(2 ** (8 - int(m))),
        lambda: torch.where(img >= m, 255 - img, img),
        lambda: autocontrast(img),
        lambda: torch.stack([equalize_channel(c) for c in img]),
    ]
    return ops[op]()


def magnitudes(side):
    """torchvision RandAugment._augmentation_space at bin 9, and whether signed."""
    lin = lambda top: float(torch.linspace(0.0, top, BINS)[BIN])
    posterize = int((8 - (torch.arange(BINS) / ((BINS - 1) / 4)).round().int())[BIN])
    return [(0.0, False), (lin(0.3), True), (lin(0.3), True), (lin(150.0 / 331.0 * side), True),
            (lin(150.0 / 331.0 * side), True), (lin(30.0), True), (lin(0.9), True),
            (lin(0.9), True), (lin(0.9), True), (lin(0.9), True), (float(posterize), False),
            (float(torch.linspace(255.0, 0.0, BINS)[BIN]), False), (0.0, False), (0.0, False)]


def main():
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        for sample, side, channels in IMAGES:
            img = gen_image(sample, side, channels)
            for op, (m, signed) in enumerate(magnitudes(side)):
                for sign in (1, -1):
                    out = apply_op(img, op, m * sign if signed else m)
                    f.write(out.permute(1, 2, 0).contiguous().numpy().tobytes())


if __name__ == "__main__":
    main()
