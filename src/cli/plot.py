# The pictures of `clgqa plot` (embedded in the clgqa binary, which runs it as
# `/usr/bin/python3 - MODE IN_DIR OUT_DIR [--csv]` with this text on stdin).
#   run IN_DIR:     curves.png (loss and accuracy per epoch from run.csv, the
#                   per-step training curve from steps.csv) and groups.png
#                   (query heads per key/value head from groups.csv, per layer)
#   compare IN_DIR: compare.png (test accuracy per scheme over seeds, from
#                   compare.csv as written by scripts/compare)
#   uptrain IN_DIR: uptrain.png (test accuracy against key/value heads per
#                   scheme, after fine-tuning and right after conversion, from
#                   uptrain.csv as written by scripts/uptrain)
# With --csv, plot.csv beside the pictures holds every plotted series
# (figure,panel,series,x,y), so a test can check the pictures against the run.
# Errors are one line "clgqa plot: ..." and exit status 1.
import csv
import math
import os
import sys

DPI = 100


def fail(message):
    print(f"clgqa plot: {message}", file=sys.stderr)
    sys.exit(1)


try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    fail(f"{sys.executable} has no matplotlib: apt-get install python3-matplotlib")


def read_rows(path, required=True):
    if not os.path.exists(path):
        if required:
            fail(f"{path} is missing")
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(row, key, path):
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        fail(f"{path}: bad or missing '{key}' in row {row}")


def read_config(run_dir):
    """config.yaml as clgqa writes it: a flat mapping, one 'key: value' a line."""
    cfg = {}
    path = os.path.join(run_dir, "config.yaml")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.split("#", 1)[0]
                if ":" in line:
                    key, value = line.split(":", 1)
                    cfg[key.strip()] = value.strip().strip("'\"")
    return cfg


def title_of(cfg):
    size = cfg.get("size", "?")
    if size == "c":
        size = (f"custom: {cfg.get('num_layers', '?')} layers, {cfg.get('embed_dim', '?')} wide, "
                f"{cfg.get('num_heads', '?')} query heads")
    else:
        size = f"ViT-{size.upper()}"
    return (f"{cfg.get('att_scheme', '?')}, {cfg.get('num_kv_heads', '?')} key/value heads, on "
            f"{cfg.get('dataset', '?')} ({size})")


class Export:
    """The plotted series, row by row, for plot.csv."""

    def __init__(self):
        self.rows = []

    def add(self, figure, panel, series, xs, ys):
        self.rows += [(figure, panel, series, x, y) for x, y in zip(xs, ys)]

    def write(self, path):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["figure", "panel", "series", "x", "y"])
            for figure, panel, series, x, y in self.rows:
                w.writerow([figure, panel, series, repr(float(x)), repr(float(y))])


def epoch_bounds(steps):
    """{epoch: (first global step, last global step)} from steps.csv rows: an
    epoch starts where the previous one ended."""
    last = {}
    for r in steps:
        last[r["epoch"]] = max(last.get(r["epoch"], 0), r["step"])
    bounds, start = {}, 0
    for e in sorted(last):
        bounds[e] = (start, last[e])
        start = last[e]
    return bounds


def plot_curves(run_dir, out_dir, cfg, export):
    run_path = os.path.join(run_dir, "run.csv")
    steps_path = os.path.join(run_dir, "steps.csv")
    epochs = [{k: number(r, k, run_path) for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")}
              for r in read_rows(run_path)]
    steps = [{k: number(r, k, steps_path) for k in ("epoch", "step", "loss", "accuracy", "lr")}
             for r in read_rows(steps_path, required=False)]
    if not epochs and not steps:
        fail(f"{run_dir} holds no training rows yet (run.csv and steps.csv are empty)")
    bounds = epoch_bounds(steps)

    def step_x(r):  # the step's place on the epoch axis: epoch e spans (e - 1, e]
        first, last = bounds[r["epoch"]]
        return r["epoch"] - 1 + (r["step"] - first) / (last - first)

    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(15, 4.8), dpi=DPI)
    ex = [r["epoch"] for r in epochs]
    sx = [step_x(r) for r in steps]
    series = [
        (ax_loss, "loss", "training, per step", sx, [r["loss"] for r in steps], dict(lw=1, alpha=0.6, color="tab:blue")),
        (ax_loss, "loss", "training, per epoch", ex, [r["train_loss"] for r in epochs], dict(marker="o", color="tab:blue")),
        (ax_loss, "loss", "test, per epoch", ex, [r["test_loss"] for r in epochs], dict(marker="s", color="tab:orange")),
        (ax_acc, "accuracy", "training, per step", sx, [100 * r["accuracy"] for r in steps], dict(lw=1, alpha=0.6, color="tab:blue")),
        (ax_acc, "accuracy", "training, per epoch", ex, [100 * r["train_acc"] for r in epochs], dict(marker="o", color="tab:blue")),
        (ax_acc, "accuracy", "test, per epoch", ex, [100 * r["test_acc"] for r in epochs], dict(marker="s", color="tab:orange")),
        (ax_lr, "lr", "learning rate", sx, [r["lr"] for r in steps], dict(color="tab:green")),
    ]
    for ax, panel, name, xs, ys, style in series:
        if xs:
            ax.plot(xs, ys, label=name, **style)
            export.add("curves", panel, name, xs, ys)
    for ax, ylabel in ((ax_loss, "cross-entropy loss"), (ax_acc, "accuracy (%)"), (ax_lr, "learning rate")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend()
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    ax_lr.set_title("learning-rate schedule")
    fig.suptitle(f"Training curves: {title_of(cfg)}")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "curves.png"))
    plt.close(fig)
    return bounds


def plot_groups(run_dir, out_dir, cfg, bounds, export):
    path = os.path.join(run_dir, "groups.csv")
    rows = read_rows(path)
    if not rows:
        fail(f"{path} has no rows yet")
    # x: the global step after which the split was read; "eval" rows at the
    # end of their epoch (the evaluation pass moves DGQA's split too). Steps
    # per epoch from steps.csv, else (older runs) from the rows themselves.
    if bounds:
        first, last = bounds[min(bounds)]
        steps_per_epoch = last - first
    else:
        steps_per_epoch = 1 + max([int(number(r, "step", path)) for r in rows if r["step"] != "eval"] + [0])
    layers = {}
    for r in rows:
        epoch = int(number(r, "epoch", path))
        if r["step"] == "eval":
            x = epoch * steps_per_epoch
        else:
            x = (epoch - 1) * steps_per_epoch + int(number(r, "step", path)) + 1
        counts = [int(c) for c in r["counts"].split()]
        layers.setdefault(int(number(r, "layer", path)), []).append((x, counts))
    epochs = sorted({int(number(r, "epoch", path)) for r in rows})
    n = len(layers)
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.9 * n + 1.4), dpi=DPI, sharex=True, squeeze=False)
    for ax, layer in zip(axes[:, 0], sorted(layers)):
        samples = sorted(layers[layer], key=lambda s: s[0])
        # a split holds from the step it was read at until the next row (DGQA
        # changes it on window steps only); the first row also stands for step 0
        xs = [0.0] + [x for x, _ in samples]
        kv = len(samples[0][1])
        stacks = []
        for g in range(kv):
            ys = [s[1][g] for s in samples]
            stacks.append([ys[0]] + ys)
            export.add("groups", f"layer {layer}", f"key/value head {g}", [x for x, _ in samples], ys)
        ax.stackplot(xs, stacks, step="post", labels=[f"key/value head {g}" for g in range(kv)], alpha=0.85)
        heads = sum(samples[0][1])
        ax.set_ylim(0, heads)
        ax.set_ylabel(f"layer {layer}\nquery heads")
        for e in epochs:
            ax.axvline(e * steps_per_epoch, color="black", lw=0.8, ls="--")
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    axes[-1, 0].set_xlabel("training step (dashed: end of each epoch)")
    top = axes[0, 0].secondary_xaxis("top", functions=(lambda s: s / steps_per_epoch,
                                                       lambda e: e * steps_per_epoch))
    top.set_xlabel("epoch")
    fig.suptitle(f"Query heads per key/value head, per layer\n{title_of(cfg)}")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "groups.png"))
    plt.close(fig)


def plot_compare(in_dir, out_dir, export):
    path = os.path.join(in_dir, "compare.csv")
    rows = read_rows(path)
    if not rows:
        fail(f"{path} has no runs")
    by_scheme = {}
    for r in rows:
        by_scheme.setdefault(r["scheme"], []).append(100 * number(r, "test_acc", path))
    names = list(by_scheme)
    means = [sum(v) / len(v) for v in by_scheme.values()]
    stds = [math.sqrt(sum((a - m) ** 2 for a in v) / (len(v) - 1)) if len(v) > 1 else 0.0
            for v, m in zip(by_scheme.values(), means)]
    seeds = max(len(v) for v in by_scheme.values())
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=DPI)
    xs = list(range(len(names)))
    # points, not bars: accuracies differ by little, so the axis does not start at 0
    ax.errorbar(xs, means, yerr=stds, fmt="o", ms=9, capsize=8, color="tab:blue",
                label=f"mean ± std over {seeds} seed{'s' if seeds > 1 else ''}")
    for x, name in zip(xs, names):
        ax.plot([x + 0.15] * len(by_scheme[name]), by_scheme[name], "k.", ms=6)
    ax.plot([], [], "k.", label="one seed")
    export.add("compare", "accuracy", "mean", xs, means)
    export.add("compare", "accuracy", "std", xs, stds)
    ax.set_xticks(xs, names)
    ax.set_xlabel("attention scheme")
    ax.set_ylabel("test accuracy (%)")
    low = min([min(v) for v in by_scheme.values()] + [m - d for m, d in zip(means, stds)])
    high = max([max(v) for v in by_scheme.values()] + [m + d for m, d in zip(means, stds)])
    margin = max(1.0, 0.15 * (high - low))
    ax.set_ylim(max(0.0, low - margin), min(100.0, high + margin))
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    cfg = read_config(os.path.join(in_dir, names[0], "seed-1"))
    ax.set_title(f"Test accuracy per scheme: {cfg.get('dataset', '?')}" if cfg else "Test accuracy per scheme")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "compare.png"))
    plt.close(fig)


def mean_std(values):
    """Mean and sample standard deviation (0 for one value)."""
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd


def plot_uptrain(in_dir, out_dir, export):
    path = os.path.join(in_dir, "uptrain.csv")
    rows = read_rows(path)
    if not rows:
        fail(f"{path} has no runs")
    # {scheme: {kv_heads: [(converted %, fine-tuned %), one per seed]}}, in the file's order
    runs = {}
    for r in rows:
        kv = int(number(r, "kv_heads", path))
        runs.setdefault(r["scheme"], {}).setdefault(kv, []).append(
            (100 * number(r, "converted_acc", path), 100 * number(r, "test_acc", path)))
    seeds = max(len(v) for by_kv in runs.values() for v in by_kv.values())
    pretrain_path = os.path.join(in_dir, "pretrain", "result.csv")
    pretrain = read_rows(pretrain_path, required=False)
    # each panel its own y range: a conversion can fall to chance (10% on 10
    # classes), while the fine-tuned runs differ by a point or two
    fig, axes = plt.subplots(1, 2, figsize=(14, 5), dpi=DPI)
    panels = ((axes[0], "fine-tuned", 1, "after fine-tuning"),
              (axes[1], "converted", 0, "right after conversion, before fine-tuning"))
    all_kv = sorted({kv for by_kv in runs.values() for kv in by_kv})
    # each scheme a little to the side (x is on a log2 axis), so error bars do not hide each other
    names = list(runs)
    shift = {name: 2 ** (0.06 * (i - (len(names) - 1) / 2)) for i, name in enumerate(names)}
    for ax, panel, column, title in panels:
        for name in names:
            kvs = sorted(runs[name])
            stats = [mean_std([run[column] for run in runs[name][kv]]) for kv in kvs]
            means, stds = [m for m, _ in stats], [sd for _, sd in stats]
            label = f"{name} (the control: not converted, G = H)" if name == "mhsa" else name
            ax.errorbar([kv * shift[name] for kv in kvs], means, yerr=stds, marker="o", ms=6, capsize=5,
                        ls="none" if name == "mhsa" else "-", label=label)
            export.add("uptrain", panel, f"{name} mean", kvs, means)
            export.add("uptrain", panel, f"{name} std", kvs, stds)
        if pretrain:
            acc = 100 * number(pretrain[-1], "test_acc", pretrain_path)
            ax.axhline(acc, color="black", ls=":", lw=1.2, label="the MHSA checkpoint (stage 1)")
            export.add("uptrain", panel, "pretrained", [int(number(pretrain[-1], "kv_heads", pretrain_path))], [acc])
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_kv, [str(kv) for kv in all_kv])
        ax.minorticks_off()
        ax.set_xlabel("key/value heads (G)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.set_ylabel(f"test accuracy (%), mean ± std over {seeds} seed{'s' if seeds > 1 else ''}")
    axes[1].legend(loc="upper left", fontsize="small")  # the converted accuracies rise to the right
    cfg = read_config(os.path.join(in_dir, "pretrain"))
    fig.suptitle("Uptraining an MHSA checkpoint to each scheme" +
                 (f": {cfg.get('dataset', '?')}, {title_of(cfg).split('(', 1)[1].rstrip(')')}" if cfg else ""))
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "uptrain.png"))
    plt.close(fig)


def main(argv):
    if len(argv) < 3 or argv[0] not in ("run", "compare", "uptrain"):
        fail("usage: plot.py run|compare|uptrain IN_DIR OUT_DIR [--csv]")
    mode, in_dir, out_dir = argv[:3]
    export = Export()
    os.makedirs(out_dir, exist_ok=True)
    if mode == "run":
        cfg = read_config(in_dir)
        bounds = plot_curves(in_dir, out_dir, cfg, export)
        plot_groups(in_dir, out_dir, cfg, bounds, export)
        written = ["curves.png", "groups.png"]
    elif mode == "compare":
        plot_compare(in_dir, out_dir, export)
        written = ["compare.png"]
    else:
        plot_uptrain(in_dir, out_dir, export)
        written = ["uptrain.png"]
    if "--csv" in argv[3:]:
        export.write(os.path.join(out_dir, "plot.csv"))
        written.append("plot.csv")
    print("clgqa plot: wrote " + ", ".join(os.path.join(out_dir, w) for w in written))


try:
    main(sys.argv[1:])
except OSError as e:
    fail(str(e))
