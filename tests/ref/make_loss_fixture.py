#!/usr/bin/python3
"""Write tests/ref/fixtures/crossentropy_soft.safetensors: PyTorch's
cross-entropy with label smoothing and with soft targets, and timm's Mixup
targets, for tests/test_ops_crossentropy.c.

For each case `<case>` (`small`: 7 rows of 13 classes; `wide`: 4 rows of 300,
wider than a work-group) the file holds float32 logits `<case>.logits`
[R, K] and int64 labels `<case>.labels` [R], and:

  <case>.smooth.losses   [R]     F.cross_entropy(logits, labels, reduction="none",
                                 label_smoothing=0.1)
  <case>.smooth.dlogits  [R, K]  gradient of their mean
  <case>.soft.targets    [R, K]  random distributions (rows sum to 1)
  <case>.soft.losses     [R]     F.cross_entropy(logits, targets, reduction="none")
  <case>.soft.dlogits    [R, K]  gradient of their mean
  <case>.mix.targets     [R, K]  timm's mixup_target(labels, K, lam=0.3,
                                 smoothing=0.1): the batch mixed with itself flipped
  <case>.mix.losses      [R]     soft-target cross-entropy against them
  <case>.mix.dlogits     [R, K]  gradient of their mean (timm's
                                 SoftTargetCrossEntropy)

mixup_target and one_hot are copied from timm (timm/data/mixup.py, 0.9), as
Debian has no timm. Metadata: smoothing "0.1", lam "0.3".

    /usr/bin/python3 tests/ref/make_loss_fixture.py [--check]
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import load_file, save_file  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures",
                       "crossentropy_soft.safetensors")
SMOOTHING = 0.1
LAM = 0.3
CASES = (("small", 7, 13), ("wide", 4, 300))


def one_hot(x, num_classes, on_value=1., off_value=0.):  # timm
    x = x.long().view(-1, 1)
    return torch.full((x.size()[0], num_classes), off_value, device=x.device).scatter_(1, x, on_value)


def mixup_target(target, num_classes, lam=1., smoothing=0.0):  # timm
    off_value = smoothing / num_classes
    on_value = 1. - smoothing + off_value
    y1 = one_hot(target, num_classes, on_value=on_value, off_value=off_value)
    y2 = one_hot(target.flip(0), num_classes, on_value=on_value, off_value=off_value)
    return y1 * lam + y2 * (1. - lam)


def losses_and_grad(logits, target, **kwargs):
    x = logits.clone().requires_grad_(True)
    losses = F.cross_entropy(x, target, reduction="none", **kwargs)
    losses.mean().backward()
    return losses.detach(), x.grad.detach()


def generate():
    gen = torch.Generator().manual_seed(2108)
    out = {}
    for name, rows, classes in CASES:
        logits = torch.randn(rows, classes, generator=gen) * 3
        labels = torch.randint(0, classes, (rows,), generator=gen)
        out[f"{name}.logits"] = logits
        out[f"{name}.labels"] = labels
        losses, grad = losses_and_grad(logits, labels, label_smoothing=SMOOTHING)
        out[f"{name}.smooth.losses"], out[f"{name}.smooth.dlogits"] = losses, grad
        targets = torch.softmax(torch.randn(rows, classes, generator=gen) * 2, dim=1)
        out[f"{name}.soft.targets"] = targets
        out[f"{name}.soft.losses"], out[f"{name}.soft.dlogits"] = losses_and_grad(logits, targets)
        mixed = mixup_target(labels, classes, lam=LAM, smoothing=SMOOTHING)
        out[f"{name}.mix.targets"] = mixed
        out[f"{name}.mix.losses"], out[f"{name}.mix.dlogits"] = losses_and_grad(logits, mixed)
    metadata = {"smoothing": str(SMOOTHING), "lam": str(LAM), "torch_version": torch.__version__,
                "format": "clgqa-ref-fixture-1"}
    return out, metadata


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tensors, metadata = generate()
    if args.check:
        old, old_md = load_file(FIXTURE)
        same = set(old) == set(tensors) and old_md == metadata and all(
            torch.equal(old[k], tensors[k]) for k in tensors)
        print(f"{FIXTURE}: {'same' if same else 'DIFFERENT'}")
        return 0 if same else 1
    save_file(tensors, FIXTURE, metadata)
    print(f"wrote {FIXTURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
