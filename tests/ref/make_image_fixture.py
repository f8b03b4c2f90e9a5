#!/usr/bin/python3
"""Writes tests/ref/images/: small JPEG/PNG inputs and what Pillow makes of
them, for test_datasets_image.c. Needs only Pillow (Debian python3-pil):

    /usr/bin/python3 tests/ref/make_image_fixture.py

Inputs are built from a fixed formula (no randomness), so rerunning gives the
same files with the same Pillow and libjpeg-turbo. Every expected output is a
lossless PNG:
  <input>.decoded.png         Image.open(input) converted to L or RGB
  <input>.luma.png            ... .convert("L")  (RGB inputs)
  <input>.<W>x<H>.png         ... .resize((W, H), Image.BILINEAR)
  <input>.draft<S>.png        JPEG: im.draft(None, (S, S)) then resize to S x S,
                              the decode-time shrink clgqa uses for big JPEGs
"""
import math
import os

from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images")


def pattern(width, height, mode):
    """Smooth gradients plus a high-frequency ripple, so resizing has work to do."""
    im = Image.new(mode, (width, height))
    px = im.load()
    for y in range(height):
        for x in range(width):
            r = (x * 255) // max(1, width - 1)
            g = (y * 255) // max(1, height - 1)
            b = int(127.5 + 120 * math.sin(0.9 * x + 0.5 * y))
            if mode == "L":
                px[x, y] = (r + g + b) // 3
            elif mode == "RGB":
                px[x, y] = (r, g, b)
            elif mode == "RGBA":
                px[x, y] = (r, g, b, (x * 37 + y * 11) % 256)
            elif mode == "CMYK":
                px[x, y] = (r, g, b, (x * 5 + y * 3) % 160)
    return im


def as_png(im, name):
    im.save(os.path.join(OUT, name), format="PNG")


def main():
    os.makedirs(OUT, exist_ok=True)
    inputs = {
        "rgb.png": pattern(37, 29, "RGB"),
        "gray.png": pattern(40, 24, "L"),
        "rgba.png": pattern(21, 17, "RGBA"),
        "rgb.jpg": pattern(96, 80, "RGB"),
        "gray.jpg": pattern(50, 50, "L"),
        "cmyk.jpg": pattern(30, 20, "CMYK"),
    }
    for name, im in inputs.items():
        path = os.path.join(OUT, name)
        if name.endswith(".jpg"):
            im.save(path, format="JPEG", quality=90)
        else:
            im.save(path, format="PNG")

    sizes = [(16, 16), (64, 64), (20, 50), (7, 5)]
    for name in inputs:
        im = Image.open(os.path.join(OUT, name))
        im = im.convert("L" if im.mode == "L" else "RGB")
        as_png(im, name + ".decoded.png")
        if im.mode == "RGB":
            as_png(im.convert("L"), name + ".luma.png")
        for w, h in sizes:
            as_png(im.resize((w, h), Image.BILINEAR), "%s.%dx%d.png" % (name, w, h))
        if name.endswith(".jpg"):
            for side in (12, 24):
                im = Image.open(os.path.join(OUT, name))
                im.draft(None, (side, side))
                im = im.convert("L" if im.mode == "L" else "RGB")
                as_png(im.resize((side, side), Image.BILINEAR), "%s.draft%d.png" % (name, side))


if __name__ == "__main__":
    main()
