"""PyTorch reference ViT with the grouped-query attention family of arXiv:2408.08454.

This is the independent side that clgqa's C/OpenCL code is checked against.
It follows docs/attention-variants.md (the semantics page) to the
letter, including the reference implementation's quirks and this project's
"Here:" rules for the edge cases the reference leaves undefined. Plain torch
only (no timm); module and parameter names reproduce timm's ViT state_dict
layout so checkpoints move between the two sides by name.

Schemes: mhsa, gqa, kdgqa, dgqa_diff, dgqa_ema, pgqa.
"""
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

SCHEMES = ("mhsa", "gqa", "kdgqa", "dgqa_diff", "dgqa_ema", "pgqa")
DGQA_SCHEMES = ("dgqa_diff", "dgqa_ema")
EMA_BETA = 0.9
LN_EPS = 1e-6
MLP_RATIO = 4

# Reference sizes (patch 16 at 224x224): size -> (embed_dim, depth, heads).
SIZES = {"s": (384, 12, 6), "b": (768, 12, 12), "l": (1024, 24, 16)}


@dataclass
class ViTConfig:
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 384
    depth: int = 12
    heads: int = 6
    kv_heads: int = 3
    num_classes: int = 10
    scheme: str = "mhsa"
    window_size: int = 10

    @property
    def grid(self):
        return self.img_size // self.patch_size

    @property
    def tokens(self):
        """P: patches plus the class token."""
        return self.grid * self.grid + 1

    @property
    def head_dim(self):
        return self.embed_dim // self.heads

    @property
    def groups(self):
        """G: key/value heads actually built. MHSA ignores kv_heads (G = H)."""
        return self.heads if self.scheme == "mhsa" else self.kv_heads

    def validate(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"att_scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not a multiple of heads {self.heads}")
        if self.scheme != "mhsa":
            if self.kv_heads < 1 or self.heads % self.kv_heads:
                # Static groups (gqa, pgqa) need it; kdgqa/dgqa need it for the
                # static fallback split (project rule, see the semantics page).
                raise ValueError(f"{self.scheme}: heads {self.heads} is not a multiple of "
                                 f"num_kv_heads {self.kv_heads}")
        if self.scheme in DGQA_SCHEMES and self.window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {self.window_size}")
        return self

    def to_metadata(self):
        """Config as safetensors metadata (str -> str).

        Both key spellings are written: the fixture names (classes, scheme) and
        the checkpoint names clgqa uses (num_classes, att_scheme)."""
        md = {k: str(v) for k, v in asdict(self).items()}
        md["classes"] = md["num_classes"]
        md["att_scheme"] = md["scheme"]
        return md

    @classmethod
    def from_metadata(cls, md):
        def pick(*names, required=True, default=None):
            for n in names:
                if n in md:
                    return md[n]
            if required:
                raise KeyError(f"metadata lacks {' / '.join(names)}")
            return default
        return cls(
            img_size=int(pick("img_size")),
            patch_size=int(pick("patch_size")),
            in_chans=int(pick("in_chans")),
            embed_dim=int(pick("embed_dim")),
            depth=int(pick("depth", "num_layers")),
            heads=int(pick("heads", "num_heads")),
            kv_heads=int(pick("kv_heads", "num_kv_heads")),
            num_classes=int(pick("num_classes", "classes")),
            scheme=pick("att_scheme", "scheme"),
            window_size=int(pick("window_size", required=False, default="10")),
        ).validate()


# ---------------------------------------------------------------------------
# Query-head allocation (integer decisions: no gradient flows through them)
# ---------------------------------------------------------------------------

def static_split(H, G):
    return torch.full((G,), H // G, dtype=torch.int64)


def key_norms(k):
    """Batch-summed Frobenius norm of each key head. k: [B, G, P, d] -> [G]."""
    return torch.norm(k.detach(), dim=(2, 3)).sum(dim=0)


def kdgqa_allocation(norms, H):
    """KDGQA split from the per-head key norms.

    Returns (split int64 [G], shares = the pre-rounding values r/sum(r)*H,
    fixups = how many +-1 corrections were made). torch.round rounds half to
    even; the fix-up is deterministic (first index on ties)."""
    G = norms.numel()
    mx, mn = norms.max(), norms.min()
    if mx == mn:
        # Here: the reference divides by zero; use the static split.
        return static_split(H, G), None, 0
    r = (norms - mn) / (mx - mn)
    shares = r / r.sum() * H
    n = torch.round(shares).to(torch.int64)
    fixups = 0
    while int(n.sum()) > H:
        n[torch.argmax(n)] -= 1  # torch.argmax returns the first maximal index
        fixups += 1
    while int(n.sum()) < H:
        n[torch.argmin(n)] += 1
        fixups += 1
    return n, shares, fixups


def dgqa_scores(cache, m, rule):
    if rule == "dgqa_diff":
        return (cache - m).abs()
    if rule == "dgqa_ema":
        return EMA_BETA * m + (1.0 - EMA_BETA) * cache
    raise ValueError(f"unknown DGQA rule {rule!r}")


def dgqa_allocation(cache, m, H, rule, generator=None):
    """DGQA split from the tracked cache and the current norms m.

    Returns (split, shares, fixups). The fix-up picks uniformly random indices
    (torch.randint on `generator`); clgqa uses its Philox stream for those, so
    parity fixtures are chosen never to need them (fixups == 0)."""
    G = m.numel()
    s = dgqa_scores(cache, m, rule)
    total = s.sum()
    if total == 0:
        # Here: the reference divides by zero; use the static split.
        return static_split(H, G), None, 0
    shares = s / total * H
    n = torch.round(shares).to(torch.int64)
    fixups = 0
    while int(n.sum()) > H:
        i = int(torch.randint(G, (1,), generator=generator))
        if n[i] > 0:
            n[i] -= 1
        fixups += 1
    while int(n.sum()) < H:
        i = int(torch.randint(G, (1,), generator=generator))
        n[i] += 1
        fixups += 1
    return n, shares, fixups


# ---------------------------------------------------------------------------
# PGQA perturbation
# ---------------------------------------------------------------------------

def bessel_std(rows):
    """Row standard deviation (divide by L-1) over the last dim, keepdim.

    Same value and gradient as torch.std(unbiased=True) where the std is
    positive. Here: where it is 0 its derivative is taken as 0 instead of the
    NaN torch would give (the double where keeps NaN out of the backward)."""
    L = rows.shape[-1]
    centred = rows - rows.mean(dim=-1, keepdim=True)
    var = centred.pow(2).sum(dim=-1, keepdim=True) / (L - 1)
    positive = var > 0
    safe_var = torch.where(positive, var, torch.ones_like(var))
    return torch.where(positive, torch.sqrt(safe_var), torch.zeros_like(var))


def standardise_noise(U):
    """U [n, L] raw uniforms -> z: zero the diagonal, then standardise rows.

    U[i][i] = 0 for i < min(n, L); z = (U - mean_row) / std_row (Bessel),
    a zero std replaced by 1. The noise is a constant: no gradient."""
    U = U.detach().clone()
    n, L = U.shape
    idx = torch.arange(min(n, L))
    U[idx, idx] = 0
    mean = U.mean(dim=-1, keepdim=True)
    std = U.std(dim=-1, unbiased=True, keepdim=True)
    std = torch.where(std == 0, torch.ones_like(std), std)
    return (U - mean) / std


def pgqa_perturb(A, U):
    """A' = A - (z * sigma + mu) per (sample, head) row of length L = P*d.

    A: [B, n, P, d] attention output of one group; U: [n, P*d] raw noise shared
    by the batch. mu and sigma come from A and stay in the autograd graph."""
    B, n, P, d = A.shape
    if n == 0:
        return A
    rows = A.reshape(B, n, P * d)
    mu = rows.mean(dim=-1, keepdim=True)
    sigma = bessel_std(rows)
    z = standardise_noise(U).to(A.dtype)
    return (rows - (z.unsqueeze(0) * sigma + mu)).reshape(B, n, P, d)


# ---------------------------------------------------------------------------
# Modules (timm names)
# ---------------------------------------------------------------------------

class GroupedAttention(nn.Module):
    """q/k/v/proj Linear layers; query heads split into G contiguous groups.

    Run-time state (not parameters):
      step       batch index within the current epoch (DGQA window), set by
                 the training loop; restarts at 0 every epoch.
      noise      PGQA: a fixed raw noise tensor [H, P*d] (row h = head h,
                 group rows contiguous) used instead of fresh draws.
      generator  torch.Generator for PGQA draws and DGQA fix-up picks.
    After each forward: last_split (int64 [G]), last_key_norms ([G] or None),
    last_shares, last_fixups, for tests and fixtures."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.scheme = cfg.scheme
        self.H = cfg.heads
        self.G = cfg.groups
        self.d = cfg.head_dim
        self.scale = self.d ** -0.5
        C = cfg.embed_dim
        self.q = nn.Linear(C, C)
        self.k = nn.Linear(C, self.G * self.d)
        self.v = nn.Linear(C, self.G * self.d)
        self.proj = nn.Linear(C, C)
        if self.scheme in DGQA_SCHEMES:
            # Buffers, so that they travel in the state_dict / checkpoints.
            self.register_buffer("cache", torch.zeros(self.G, dtype=torch.float32))
            self.register_buffer("split", static_split(self.H, self.G))
        self.step = 0
        self.noise = None
        self.generator = None
        self.last_split = None
        self.last_key_norms = None
        self.last_shares = None
        self.last_fixups = 0

    def group_counts(self, k):
        H, G = self.H, self.G
        self.last_key_norms, self.last_shares, self.last_fixups = None, None, 0
        if self.scheme in ("mhsa", "gqa", "pgqa"):
            return static_split(H, G)
        m = key_norms(k)
        self.last_key_norms = m.clone()
        if self.scheme == "kdgqa":
            n, shares, fixups = kdgqa_allocation(m, H)
        else:
            W = self.cfg.window_size
            if self.training and self.step % W != 0:
                return self.split.clone()  # keep the last split and cache
            n, shares, fixups = dgqa_allocation(self.cache.to(m.dtype), m, H,
                                                self.scheme, self.generator)
            with torch.no_grad():
                if self.training:
                    self.cache.copy_((self.cache + m.to(self.cache.dtype)) / W)
                else:
                    self.cache.copy_(m)  # evaluation: cache = m on every pass
                self.split.copy_(n)
        self.last_shares, self.last_fixups = shares, fixups
        return n

    def forward(self, x):
        B, P, C = x.shape
        H, G, d = self.H, self.G, self.d
        q = self.q(x).view(B, P, H, d).transpose(1, 2) * self.scale  # [B,H,P,d]
        k = self.k(x).view(B, P, G, d).transpose(1, 2)                # [B,G,P,d]
        v = self.v(x).view(B, P, G, d).transpose(1, 2)
        counts = self.group_counts(k)
        self.last_split = counts.clone()

        U_all = None
        if self.scheme == "pgqa":
            L = P * d
            if self.noise is not None:
                if tuple(self.noise.shape) != (H, L):
                    raise ValueError(f"PGQA noise must be [{H}, {L}], got {list(self.noise.shape)}")
                U_all = self.noise.to(x.device)
            else:
                # Fresh noise on every forward pass, shared by the batch.
                U_all = torch.rand(H, L, generator=self.generator,
                                   device=self.generator.device if self.generator is not None
                                   else x.device)
                U_all = U_all.to(x.device)

        outs = []
        start = 0
        for j in range(G):
            n = int(counts[j])
            if n == 0:
                continue  # this key/value head serves no query head this pass
            qj = q[:, start:start + n]                 # [B,n,P,d]
            scores = qj @ k[:, j:j + 1].transpose(-2, -1)
            out = F.softmax(scores, dim=-1) @ v[:, j:j + 1]
            if U_all is not None:
                out = pgqa_perturb(out, U_all[start:start + n])
            outs.append(out)
            start += n
        x = torch.cat(outs, dim=1).transpose(1, 2).reshape(B, P, C)
        return self.proj(x)


class TimmAttention(nn.Module):
    """timm's fused-qkv MHSA (blocks.{i}.attn.qkv.*), for uptraining tests."""

    def __init__(self, cfg):
        super().__init__()
        self.H = cfg.heads
        self.d = cfg.head_dim
        self.scale = self.d ** -0.5
        C = cfg.embed_dim
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.H, self.d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class PatchEmbed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim,
                              kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, grid*grid, C]


class Mlp(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.fc1 = nn.Linear(C, MLP_RATIO * C)
        self.act = nn.GELU(approximate="none")  # exact (erf) GELU
        self.fc2 = nn.Linear(MLP_RATIO * C, C)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg, fused_qkv=False):
        super().__init__()
        C = cfg.embed_dim
        self.norm1 = nn.LayerNorm(C, eps=LN_EPS)
        self.attn = TimmAttention(cfg) if fused_qkv else GroupedAttention(cfg)
        self.norm2 = nn.LayerNorm(C, eps=LN_EPS)
        self.mlp = Mlp(C)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """timm-layout ViT; fused_qkv=True builds timm's own MHSA attention."""

    def __init__(self, cfg, fused_qkv=False):
        super().__init__()
        self.cfg = cfg.validate()
        C = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.randn(1, cfg.tokens, C) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg, fused_qkv) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(C, eps=LN_EPS)
        self.head = nn.Linear(C, cfg.num_classes)
        self._init_weights()

    def _init_weights(self):
        # timm-like: truncated normal 0.02 for Linear weights, zero biases.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])

    # run-time controls ----------------------------------------------------
    def attns(self):
        return [blk.attn for blk in self.blocks]

    def set_step(self, step):
        """Batch index within the current epoch (DGQA window counter)."""
        for a in self.attns():
            a.step = step

    def set_noise(self, noises):
        """PGQA: list of [H, P*d] raw noise tensors per layer, or None."""
        for i, a in enumerate(self.attns()):
            a.noise = None if noises is None else noises[i]

    def set_generator(self, generator):
        for a in self.attns():
            a.generator = generator


# ---------------------------------------------------------------------------
# Uptraining helpers (semantics page, "Uptraining from an MHSA checkpoint")
# ---------------------------------------------------------------------------

def average_kv_heads(t, H, G):
    """[H*d, C] weight or [H*d] bias -> [G*d, ...], averaging contiguous
    groups of H/G heads."""
    d = t.shape[0] // H
    x = t.reshape(H, d, *t.shape[1:])
    x = x.reshape(G, H // G, d, *t.shape[1:]).mean(dim=1)
    return x.reshape(G * d, *t.shape[1:])


def convert_timm_state_dict(sd, cfg):
    """timm ViT state_dict (fused qkv) -> state_dict for VisionTransformer(cfg).

    q as is; k and v averaged over contiguous groups of H/G heads. Every other
    tensor copies over. DGQA buffers start at their initial values."""
    H, G, C = cfg.heads, cfg.groups, cfg.embed_dim
    out = {}
    for name, t in sd.items():
        if name.endswith("attn.qkv.weight") or name.endswith("attn.qkv.bias"):
            prefix = name[: -len("qkv.weight")] if name.endswith("weight") else name[: -len("qkv.bias")]
            kind = "weight" if name.endswith("weight") else "bias"
            q, k, v = t.split(C, dim=0)
            out[f"{prefix}q.{kind}"] = q.clone()
            out[f"{prefix}k.{kind}"] = average_kv_heads(k, H, G)
            out[f"{prefix}v.{kind}"] = average_kv_heads(v, H, G)
        else:
            out[name] = t.clone()
    if cfg.scheme in DGQA_SCHEMES:
        for i in range(cfg.depth):
            out[f"blocks.{i}.attn.cache"] = torch.zeros(G)
            out[f"blocks.{i}.attn.split"] = static_split(H, G)
    return out


def resample_abs_pos_embed(posemb, new_size, old_size=None, num_prefix_tokens=1,
                           antialias=False):
    """As timm.layers.resample_abs_pos_embed: class token(s) kept, the grid
    part resized bicubically (align_corners=False). This project uses
    antialias=False; timm's checkpoint filter defaults to antialias=True."""
    if old_size is None:
        hw = int(math.isqrt(posemb.shape[1] - num_prefix_tokens))
        old_size = (hw, hw)
    prefix, grid = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
    C = posemb.shape[-1]
    grid = grid.float().reshape(1, old_size[0], old_size[1], C).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_size), mode="bicubic",
                         align_corners=False, antialias=antialias)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, C).to(posemb.dtype)
    return torch.cat([prefix, grid], dim=1)


def adamw(model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """The reference's optimiser: AdamW over every parameter (biases, norms,
    cls_token and pos_embed decayed too)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=betas, eps=eps,
                             weight_decay=weight_decay)
