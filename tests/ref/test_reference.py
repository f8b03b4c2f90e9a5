#!/usr/bin/python3
"""Self-checks of the PyTorch reference against independent computations.

    /usr/bin/python3 tests/ref/test_reference.py        (about ten seconds)

Covers: a functional float64 forward written from the semantics page alone
(own LayerNorm, erf GELU, per-head loops) reproducing every committed
fixture's logits; GQA with G = H equal to MHSA; timm's fused-qkv MHSA equal
to the split q/k/v model; the conv patch embedding equal to a linear map of
(c, y, x)-flattened patches; KDGQA and DGQA allocation unit cases; PGQA zero
row means and torch.autograd.gradcheck in float64 (also with a zero-sigma
row); gradients and the AdamW step of the fixtures recomputed by hand.
"""
import copy
import glob
import math
import os
import sys
import tempfile
import unittest

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from reference_model import (EMA_BETA, GroupedAttention, ViTConfig,  # noqa: E402
                             VisionTransformer, bessel_std, convert_timm_state_dict,
                             dgqa_allocation, kdgqa_allocation, pgqa_perturb,
                             standardise_noise)
from safetensors_io import load_file, save_file  # noqa: E402

FIXTURES = sorted(glob.glob(os.path.join(HERE, "fixtures", "model_*.safetensors")))


def functional_forward(sd, cfg, x, splits=None, noises=None):
    """The ViT of the semantics page from a state_dict, in float64, written
    without the reference's modules. splits: per-layer query counts to use
    (for kdgqa/dgqa, taken from the fixture); noises: PGQA raw U per layer."""
    sd = {k: v.double() for k, v in sd.items()}
    x = x.double()
    B = x.shape[0]
    C, H, p = cfg.embed_dim, cfg.heads, cfg.patch_size
    G, d, g = cfg.groups, cfg.head_dim, cfg.grid

    def ln(t, w, b):
        mu = t.mean(-1, keepdim=True)
        var = ((t - mu) ** 2).mean(-1, keepdim=True)
        return (t - mu) / torch.sqrt(var + 1e-6) * w + b

    def lin(t, name):
        return t @ sd[name + ".weight"].T + sd[name + ".bias"]

    # Patch embedding as a linear map of patches flattened as (c, y, x).
    patches = x.reshape(B, cfg.in_chans, g, p, g, p).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(B, g * g, cfg.in_chans * p * p)
    w = sd["patch_embed.proj.weight"].reshape(C, -1)
    t = patches @ w.T + sd["patch_embed.proj.bias"]
    t = torch.cat([sd["cls_token"].expand(B, 1, C), t], 1) + sd["pos_embed"]
    P = t.shape[1]
    for i in range(cfg.depth):
        pre = f"blocks.{i}."
        h = ln(t, sd[pre + "norm1.weight"], sd[pre + "norm1.bias"])
        q = lin(h, pre + "attn.q") * d ** -0.5
        k = lin(h, pre + "attn.k")
        v = lin(h, pre + "attn.v")
        counts = splits[i] if splits is not None else [H // G] * G
        kv_of_head = [j for j in range(G) for _ in range(int(counts[j]))]
        heads = []
        for hd in range(H):
            j = kv_of_head[hd]
            qh = q[:, :, hd * d:(hd + 1) * d]
            kh = k[:, :, j * d:(j + 1) * d]
            vh = v[:, :, j * d:(j + 1) * d]
            s = qh @ kh.transpose(1, 2)
            a = torch.exp(s - s.max(-1, keepdim=True).values)
            out = (a / a.sum(-1, keepdim=True)) @ vh          # [B, P, d]
            if noises is not None:
                # Row = this head's [P, d] output of one sample.
                row = out.reshape(B, P * d)
                mu = row.mean(1, keepdim=True)
                sigma = row.std(1, unbiased=True, keepdim=True)
                start = sum(int(c) for c in counts[:j])
                local = hd - start
                u = noises[i][hd].double().clone()
                if local < P * d:
                    u[local] = 0.0
                z = (u - u.mean()) / u.std(unbiased=True)
                out = (row - (z * sigma + mu)).reshape(B, P, d)
            heads.append(out)
        t = t + lin(torch.cat(heads, -1), pre + "attn.proj")
        h = ln(t, sd[pre + "norm2.weight"], sd[pre + "norm2.bias"])
        h = lin(h, pre + "mlp.fc1")
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        t = t + lin(h, pre + "mlp.fc2")
    t = ln(t, sd["norm.weight"], sd["norm.bias"])
    return lin(t[:, 0], "head")


def load_fixture(path):
    t, md = load_file(path)
    cfg = ViTConfig.from_metadata(md)
    return t, md, cfg


def model_from_fixture(t, cfg):
    model = VisionTransformer(cfg)
    names = set(model.state_dict())
    model.load_state_dict({k: t[k] for k in names}, strict=True)
    if cfg.scheme == "pgqa":
        model.set_noise([t[f"pgqa_noise.{i}"] for i in range(cfg.depth)])
    return model


def rel_err(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


class FixtureTests(unittest.TestCase):
    def test_fixtures_exist(self):
        self.assertGreaterEqual(len(FIXTURES), 7)

    def test_functional_forward_matches_fixture_logits(self):
        """Independent float64 forward vs the fixture's float32 logits: the
        expected values are within float32 rounding of the exact ones."""
        for path in FIXTURES:
            t, md, cfg = load_fixture(path)
            splits = None
            if "expected.split.0" in t:
                splits = [t[f"expected.split.{i}"].tolist() for i in range(cfg.depth)]
            noises = None
            if cfg.scheme == "pgqa":
                noises = [t[f"pgqa_noise.{i}"] for i in range(cfg.depth)]
            sd = {k: v for k, v in t.items() if "." not in k or k.split(".")[0] in
                  ("patch_embed", "blocks", "norm", "head")}
            sd["cls_token"], sd["pos_embed"] = t["cls_token"], t["pos_embed"]
            logits = functional_forward(sd, cfg, t["input"], splits, noises)
            with self.subTest(fixture=os.path.basename(path)):
                self.assertLess(rel_err(t["expected.logits"], logits), 1e-5)
                loss = F.cross_entropy(logits, t["labels"])
                self.assertLess(abs(float(loss) - float(t["expected.loss"])), 1e-5)

    def test_gradients_match_float64_and_adamw_by_hand(self):
        for path in FIXTURES:
            t, md, cfg = load_fixture(path)
            model = model_from_fixture(t, cfg).double()
            model.train()
            model.set_step(0)
            if cfg.scheme == "pgqa":
                model.set_noise([t[f"pgqa_noise.{i}"].double() for i in range(cfg.depth)])
            logits = model(t["input"].double())
            for i, a in enumerate(model.attns()):
                if f"expected.split.{i}" in t:
                    self.assertEqual(a.last_split.tolist(), t[f"expected.split.{i}"].tolist())
                if f"expected.cache.{i}" in t:
                    self.assertLess(rel_err(t[f"expected.cache.{i}"], a.cache), 1e-5)
            F.cross_entropy(logits, t["labels"]).backward()
            lr, b1, b2 = float(md["lr"]), float(md["beta1"]), float(md["beta2"])
            eps, wd = float(md["eps"]), float(md["weight_decay"])
            for name, p in model.named_parameters():
                g = t[f"grad.{name}"].double()
                with self.subTest(fixture=os.path.basename(path), tensor=name):
                    if name.endswith("attn.k.bias"):
                        # Zero in exact arithmetic (softmax shift invariance).
                        self.assertLess(float(g.abs().max()), 1e-5)
                        self.assertLess(float(p.grad.abs().max()), 1e-10)
                        continue
                    self.assertLess(rel_err(g, p.grad), 1e-4)
                    # AdamW step 1 by hand: m = (1-b1) g, v = (1-b2) g^2,
                    # bias corrected; decoupled weight decay first.
                    w0 = t[name].double()
                    mhat = (1 - b1) * g / (1 - b1)
                    vhat = (1 - b2) * g * g / (1 - b2)
                    w1 = w0 * (1 - lr * wd) - lr * mhat / (vhat.sqrt() + eps)
                    self.assertLess(float((w1 - t[f"step1.{name}"].double()).abs().max()), 1e-6)

    def test_fixture_tensors_are_never_zero(self):
        for path in FIXTURES:
            t, md, cfg = load_fixture(path)
            for name in VisionTransformer(cfg).state_dict():
                if name.endswith((".cache", ".split")):
                    continue
                with self.subTest(fixture=os.path.basename(path), tensor=name):
                    self.assertTrue(bool((t[name] != 0).all()))

    def test_safetensors_round_trip(self):
        tensors = {"a": torch.randn(3, 2), "b": torch.arange(5), "e": torch.zeros(0, 4),
                   "h": torch.randn(7).half(), "bf": torch.randn(2, 3).bfloat16()}
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "x.safetensors")
            save_file(tensors, path, {"k": "v"})
            with open(path, "rb") as f:
                header_len = int.from_bytes(f.read(8), "little")
            self.assertEqual(header_len % 8, 0)
            back, md = load_file(path)
        self.assertEqual(md, {"k": "v"})
        for k, v in tensors.items():
            self.assertEqual(back[k].dtype, v.dtype)
            self.assertTrue(torch.equal(back[k], v))


def tiny_cfg(**kw):
    base = dict(img_size=8, patch_size=4, in_chans=3, embed_dim=12, depth=2, heads=6,
                kv_heads=3, num_classes=4, window_size=3)
    base.update(kw)
    return ViTConfig(**base)


class ModelTests(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)

    def randomised(self, model):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p) * 0.5)
        return model

    def test_gqa_with_g_equal_h_is_mhsa(self):
        mhsa = self.randomised(VisionTransformer(tiny_cfg(scheme="mhsa")))
        gqa = VisionTransformer(tiny_cfg(scheme="gqa", kv_heads=6))
        gqa.load_state_dict(mhsa.state_dict(), strict=True)
        x = torch.randn(2, 3, 8, 8)
        self.assertTrue(torch.allclose(mhsa(x), gqa(x), atol=1e-6))

    def test_timm_fused_qkv_equals_split_model(self):
        cfg = tiny_cfg(scheme="mhsa")
        timm = self.randomised(VisionTransformer(cfg, fused_qkv=True))
        ref = VisionTransformer(cfg)
        ref.load_state_dict(convert_timm_state_dict(timm.state_dict(), cfg), strict=True)
        x = torch.randn(2, 3, 8, 8)
        self.assertTrue(torch.allclose(timm(x), ref(x), atol=1e-5))

    def test_gqa_conversion_averages_contiguous_heads(self):
        cfg = tiny_cfg(scheme="gqa")  # H 6, G 3: heads (0,1), (2,3), (4,5)
        timm = self.randomised(VisionTransformer(cfg, fused_qkv=True))
        sd = convert_timm_state_dict(timm.state_dict(), cfg)
        qkv = timm.state_dict()["blocks.1.attn.qkv.weight"]
        k = qkv[12:24]
        self.assertTrue(torch.allclose(sd["blocks.1.attn.k.weight"][2:4], (k[4:6] + k[6:8]) / 2))
        vb = timm.state_dict()["blocks.0.attn.qkv.bias"][24:]
        self.assertTrue(torch.allclose(sd["blocks.0.attn.v.bias"][4:6], (vb[8:10] + vb[10:12]) / 2))

    def test_patch_embed_is_linear_over_c_y_x(self):
        cfg = tiny_cfg(scheme="gqa")
        model = self.randomised(VisionTransformer(cfg))
        x = torch.randn(2, 3, 8, 8)
        sd = model.state_dict()
        with torch.no_grad():
            self.assertLess(rel_err(model(x), functional_forward(sd, cfg, x)), 1e-5)


def cubic_weights(t, a=-0.75):
    """Keys cubic convolution weights for taps at offsets -1, 0, 1, 2."""
    def w(x):
        x = abs(x)
        if x <= 1:
            return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
        if x < 2:
            return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a
        return 0.0
    return [w(t + 1), w(t), w(1 - t), w(2 - t)]


def bicubic_matrix(n_in, n_out):
    """[n_out, n_in] interpolation matrix, align_corners=False, edge taps
    clamped (PyTorch's non-antialiased bicubic)."""
    M = torch.zeros(n_out, n_in, dtype=torch.float64)
    scale = n_in / n_out
    for o in range(n_out):
        src = (o + 0.5) * scale - 0.5
        i0 = math.floor(src)
        for tap, wt in zip(range(i0 - 1, i0 + 3), cubic_weights(src - i0)):
            M[o, min(max(tap, 0), n_in - 1)] += wt
    return M


class UptrainTests(unittest.TestCase):
    def setUp(self):
        self.exp, self.md = load_file(os.path.join(HERE, "fixtures", "timm_uptrain_expected.safetensors"))
        self.timm, _ = load_file(os.path.join(HERE, "fixtures", "timm_vit.safetensors"))

    def test_conversion_by_loops(self):
        C, H, G = 12, 6, 3
        d, per = C // H, H // G
        for i in range(2):
            w = self.timm[f"blocks.{i}.attn.qkv.weight"].double()
            b = self.timm[f"blocks.{i}.attn.qkv.bias"].double()
            for part, off in (("q", 0), ("k", C), ("v", 2 * C)):
                cw = self.exp[f"converted.blocks.{i}.attn.{part}.weight"].double()
                cb = self.exp[f"converted.blocks.{i}.attn.{part}.bias"].double()
                if part == "q":
                    self.assertTrue(torch.equal(cw, w[:C]))
                    self.assertTrue(torch.equal(cb, b[:C]))
                    continue
                for j in range(G):
                    for r in range(d):
                        rows = [off + (j * per + h) * d + r for h in range(per)]
                        self.assertLess(float((cw[j * d + r] - w[rows].mean(0)).abs().max()), 1e-6)
                        self.assertLess(abs(float(cb[j * d + r] - b[rows].mean())), 1e-6)

    def test_logits_by_functional_forward(self):
        sd = {k: v for k, v in self.timm.items() if ".qkv." not in k}
        for k, v in self.exp.items():
            if k.startswith("converted."):
                sd[k[len("converted."):]] = v
        for scheme in ("gqa", "kdgqa"):
            cfg = ViTConfig(scheme=scheme, img_size=9, patch_size=3, in_chans=3, embed_dim=12,
                            depth=2, heads=6, kv_heads=3, num_classes=5)
            splits = None
            if scheme == "kdgqa":
                splits = [self.exp[f"expected.kdgqa.split.{i}"].tolist() for i in range(2)]
            logits = functional_forward(sd, cfg, self.exp["input"], splits)
            self.assertLess(rel_err(self.exp[f"expected.{scheme}.logits"], logits), 1e-5)
        cfg = ViTConfig(scheme="gqa", img_size=15, patch_size=3, in_chans=3, embed_dim=12,
                        depth=2, heads=6, kv_heads=3, num_classes=5)
        sd["pos_embed"] = self.exp["expected.gqa.img15.pos_embed"]
        logits = functional_forward(sd, cfg, self.exp["input.img15"])
        self.assertLess(rel_err(self.exp["expected.gqa.img15.logits"], logits), 1e-5)

    def test_pos_embed_resampling_by_matrices(self):
        for case, (g_in, g_out) in (("up", (3, 5)), ("down", (4, 3))):
            src = self.exp[f"posemb.{case}.input"].double()
            M = bicubic_matrix(g_in, g_out)
            grid = src[0, 1:].reshape(g_in, g_in, -1)
            out = torch.einsum("ay,bx,yxc->abc", M, M, grid).reshape(1, g_out * g_out, -1)
            out = torch.cat([src[:, :1], out], 1)
            self.assertLess(float((out - self.exp[f"posemb.{case}.expected"].double()).abs().max()), 1e-5)
        self.assertTrue(torch.equal(self.exp["posemb.up.input"], self.timm["pos_embed"]))
        self.assertTrue(torch.equal(self.exp["posemb.up.expected"], self.exp["expected.gqa.img15.pos_embed"]))


class CheckCheckpointTests(unittest.TestCase):
    """check_checkpoint.py on checkpoints shaped like clgqa's."""

    def write_ckpt(self, tmp, fixture, edit=None):
        t, md, cfg = load_fixture(fixture)
        names = VisionTransformer(cfg).state_dict().keys()
        ckpt = {k: t[k] for k in names}
        for k in list(ckpt):
            if k.endswith(".attn.split"):
                ckpt[k] = ckpt[k].to(torch.int32)
        ckpt["adam.m.blocks.0.attn.q.weight"] = torch.zeros(3)  # ignored: outside the model names
        keys = ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "heads",
                "kv_heads", "num_classes", "att_scheme", "window_size")
        cmd = {k: md[k] for k in keys}
        if edit:
            edit(ckpt, cmd)
        ck = os.path.join(tmp, "ckpt.safetensors")
        save_file(ckpt, ck, cmd)
        inp = {"input": t["input"], "logits": t["expected.eval_logits"]}
        if cfg.scheme == "pgqa":
            inp.update({f"pgqa_noise.{i}": t[f"pgqa_noise.{i}"] for i in range(cfg.depth)})
        ip = os.path.join(tmp, "input.safetensors")
        save_file(inp, ip)
        return ck, ip

    def run_check(self, fixture, edit=None):
        from check_checkpoint import check
        with tempfile.TemporaryDirectory() as tmp:
            ck, ip = self.write_ckpt(tmp, fixture, edit)
            return check(ck, ip, out=lambda *a: None)

    def test_every_fixture_passes(self):
        for path in FIXTURES:
            with self.subTest(fixture=os.path.basename(path)):
                self.assertEqual(self.run_check(path), 0)

    def test_wrong_weights_fail(self):
        def edit(ckpt, md):
            ckpt["head.bias"] = ckpt["head.bias"] + 1e-2
        self.assertEqual(self.run_check(FIXTURES[0], edit), 1)

    def test_missing_or_misshapen_tensor_is_refused(self):
        def drop(ckpt, md):
            del ckpt["norm.weight"]
        self.assertEqual(self.run_check(FIXTURES[0], drop), 2)

        def reshape(ckpt, md):
            ckpt["pos_embed"] = ckpt["pos_embed"][:, :-1]
        self.assertEqual(self.run_check(FIXTURES[0], reshape), 2)

    def test_aliases_and_half_precision(self):
        def edit(ckpt, md):
            md["num_layers"] = md.pop("depth")
            md["num_heads"] = md.pop("heads")
            md["num_kv_heads"] = md.pop("kv_heads")
            ckpt["head.weight"] = ckpt["head.weight"].half()
        gqa = [p for p in FIXTURES if p.endswith("model_gqa.safetensors")][0]
        from check_checkpoint import check
        with tempfile.TemporaryDirectory() as tmp:
            ck, ip = self.write_ckpt(tmp, gqa, edit)
            self.assertEqual(check(ck, ip, tol=1e-2, out=lambda *a: None), 0)


class AllocationTests(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(1)

    def test_kdgqa_basic(self):
        n, shares, fix = kdgqa_allocation(torch.tensor([1.0, 2.0, 3.0]), 6)
        self.assertEqual(n.tolist(), [0, 2, 4])
        self.assertEqual(fix, 0)

    def test_kdgqa_all_equal_is_static(self):
        n, shares, fix = kdgqa_allocation(torch.tensor([2.5, 2.5, 2.5, 2.5]), 8)
        self.assertEqual(n.tolist(), [2, 2, 2, 2])
        self.assertIsNone(shares)

    def test_kdgqa_round_half_to_even(self):
        # r = [0, 1/3, 1/3, 1] -> shares [0, 1.5, 1.5, 4.5]*... with H = 10:
        # r/sum = [0, .2, .2, .6] -> [0, 2, 2, 6]. Use H = 5: [0, 1, 1, 3] exact.
        # Halves: norms [0, 1, 3] H = 2 -> r [0, 1/3, 1] -> shares [0, .5, 1.5]
        # -> round half to even [0, 0, 2] (sum 2, no fix-up).
        n, shares, fix = kdgqa_allocation(torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64), 2)
        self.assertEqual(n.tolist(), [0, 0, 2])
        self.assertEqual(fix, 0)

    def test_kdgqa_fixup_decrements_first_argmax(self):
        # norms [0, 1, 1, 1] H 8 -> shares [0, 8/3 x3] = 2.67 -> [0, 3, 3, 3] = 9
        # -> decrement the first max (index 1) -> [0, 2, 3, 3].
        n, shares, fix = kdgqa_allocation(torch.tensor([0.0, 1.0, 1.0, 1.0]), 8)
        self.assertEqual(n.tolist(), [0, 2, 3, 3])
        self.assertEqual(fix, 1)

    def test_kdgqa_fixup_increments_first_argmin(self):
        # norms [0, 1, 1, 1] H 7 -> shares 2.33 -> [0, 2, 2, 2] = 6 -> index 0 +1.
        n, shares, fix = kdgqa_allocation(torch.tensor([0.0, 1.0, 1.0, 1.0]), 7)
        self.assertEqual(n.tolist(), [1, 2, 2, 2])
        # Two zero-query heads, no fix-up: [5, 5.1, 100, 100] H 4.
        n, _, fix = kdgqa_allocation(torch.tensor([5.0, 5.1, 100.0, 100.0]), 4)
        self.assertEqual(n.tolist(), [0, 0, 2, 2])
        self.assertEqual(fix, 0)

    def test_dgqa_rules(self):
        cache = torch.tensor([1.0, 5.0, 3.0])
        m = torch.tensor([4.0, 4.0, 4.0])
        n, shares, _ = dgqa_allocation(cache, m, 6, "dgqa_diff")  # s = [3, 1, 1]
        self.assertEqual(n.tolist(), [4, 1, 1])
        n, shares, _ = dgqa_allocation(cache, m, 6, "dgqa_ema")
        s = EMA_BETA * m + (1 - EMA_BETA) * cache
        self.assertTrue(torch.allclose(shares, s / s.sum() * 6))
        # sum(s) == 0 -> static split.
        n, shares, _ = dgqa_allocation(m, m, 6, "dgqa_diff")
        self.assertEqual(n.tolist(), [2, 2, 2])
        self.assertIsNone(shares)

    def test_dgqa_fixup_keeps_sum_and_non_negative(self):
        gen = torch.Generator().manual_seed(3)
        for trial in range(50):
            cache = torch.rand(4, generator=gen) * 10
            m = torch.rand(4, generator=gen) * 10
            n, _, _ = dgqa_allocation(cache, m, 8, "dgqa_diff", gen)
            self.assertEqual(int(n.sum()), 8)
            self.assertTrue(bool((n >= 0).all()))

    def test_dgqa_window_and_eval(self):
        cfg = tiny_cfg(scheme="dgqa_diff", window_size=3)
        attn = GroupedAttention(cfg)
        x = torch.randn(2, cfg.tokens, cfg.embed_dim)
        attn.train()
        caches, splits = [], []
        for step in range(4):
            attn.step = step
            attn(x)
            caches.append(attn.cache.clone())
            splits.append(attn.last_split.clone())
        with torch.no_grad():
            k = attn.k(x).view(2, cfg.tokens, 3, 2).transpose(1, 2)
            m = torch.norm(k, dim=(2, 3)).sum(0)
        self.assertTrue(torch.allclose(caches[0], m / 3))              # (0 + m) / W
        self.assertTrue(torch.equal(caches[1], caches[0]))              # steps 1, 2 keep it
        self.assertTrue(torch.equal(caches[2], caches[0]))
        self.assertTrue(torch.equal(splits[1], splits[0]))
        self.assertTrue(torch.allclose(caches[3], (caches[0] + m) / 3))  # step 3 = W
        attn.eval()
        # The eval split may need random fix-up picks: give the module and the
        # expectation the same generator state.
        attn.generator = torch.Generator().manual_seed(11)
        twin = torch.Generator()
        twin.set_state(attn.generator.get_state())
        expect, _, _ = dgqa_allocation(attn.cache.clone(), m, 6, "dgqa_diff", twin)
        attn(x)
        self.assertTrue(torch.allclose(attn.cache, m))                  # eval: cache = m
        self.assertEqual(attn.last_split.tolist(), expect.tolist())
        self.assertEqual(attn.split.tolist(), expect.tolist())

    def test_indivisible_heads_refused(self):
        for scheme in ("gqa", "pgqa", "kdgqa", "dgqa_ema"):
            with self.assertRaises(ValueError):
                tiny_cfg(scheme=scheme, kv_heads=4).validate()
        tiny_cfg(scheme="mhsa", kv_heads=4).validate()  # ignored for MHSA


class PgqaTests(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(2)

    def test_noise_standardisation(self):
        U = torch.rand(3, 10, dtype=torch.float64)
        z = standardise_noise(U)
        self.assertTrue(torch.allclose(z.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-12))
        self.assertTrue(torch.allclose(z.std(1), torch.ones(3, dtype=torch.float64)))
        # Diagonal zeroed before standardisation: z[i][i] = -mean/std of the row.
        Uz = U.clone()
        Uz[range(3), range(3)] = 0
        self.assertTrue(torch.allclose(z[1, 1], -Uz[1].mean() / Uz[1].std()))
        # A row of equal values (std 0) is only centred.
        Z = standardise_noise(torch.zeros(2, 5))
        self.assertTrue(torch.equal(Z, torch.zeros(2, 5)))

    def test_rows_have_zero_mean(self):
        A = torch.randn(4, 3, 7, 5)
        out = pgqa_perturb(A, torch.rand(3, 35))
        self.assertLess(float(out.reshape(4, 3, -1).mean(-1).abs().max()), 1e-6)

    def test_gradcheck_float64(self):
        A = torch.randn(2, 3, 4, 2, dtype=torch.float64, requires_grad=True)
        U = torch.rand(3, 8, dtype=torch.float64)
        self.assertTrue(torch.autograd.gradcheck(lambda a: pgqa_perturb(a, U), (A,)))

    def test_gradcheck_with_zero_sigma_row(self):
        # Here: d(sigma)/dA = 0 for a row whose sigma is 0; finite, and equal to
        # the gradient of A - mu (sigma term dropped) on that row.
        A = torch.randn(2, 2, 3, 2, dtype=torch.float64)
        A[1, 0] = 0.75  # exactly representable mean, so sigma is exactly 0
        A.requires_grad_(True)
        U = torch.rand(2, 6, dtype=torch.float64)
        w = torch.randn(2, 2, 3, 2, dtype=torch.float64)
        (pgqa_perturb(A, U) * w).sum().backward()
        self.assertTrue(bool(torch.isfinite(A.grad).all()))
        row_w = w[1, 0].reshape(-1)
        expect = (row_w - row_w.mean()).reshape(3, 2)
        self.assertTrue(torch.allclose(A.grad[1, 0], expect))
        sigma = bessel_std(A.detach().reshape(2, 2, 6))
        self.assertEqual(float(sigma[1, 0]), 0.0)

    def test_whole_model_gradcheck_pgqa(self):
        cfg = tiny_cfg(scheme="pgqa", embed_dim=6, heads=2, kv_heads=1, depth=1)
        model = VisionTransformer(cfg).double()
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p) * 0.5)
        model.set_noise([torch.rand(2, cfg.tokens * 3, dtype=torch.float64)])
        x = torch.randn(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
        self.assertTrue(torch.autograd.gradcheck(model, (x,)))

    def test_matches_torch_std(self):
        A = torch.randn(3, 2, 5, 4)
        rows = A.reshape(3, 2, 20)
        self.assertTrue(torch.allclose(bessel_std(rows), rows.std(-1, keepdim=True), atol=1e-6))

    def test_eval_keeps_perturbation(self):
        cfg = tiny_cfg(scheme="pgqa")
        model = VisionTransformer(cfg).eval()
        gqa = VisionTransformer(tiny_cfg(scheme="gqa")).eval()
        gqa.load_state_dict(model.state_dict())
        x = torch.randn(2, 3, 8, 8)
        self.assertFalse(torch.allclose(model(x), gqa(x)))
        copy.deepcopy(model)  # modules stay copyable (fixtures rely on it)


if __name__ == "__main__":
    torch.set_num_threads(1)
    unittest.main(verbosity=1)
