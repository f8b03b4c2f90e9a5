#!/usr/bin/python3
"""Tuning files to ship from CLBlast tuner results (bench/device-check.sh).

    bench/tuning_files.py match DEVICE_NAME tuning/*.json
        the first shipped file for DEVICE_NAME (its "device", else a text of
        its "clgqa_device_match") whose kernel is Xgemm: the device-check
        gives it to the routine tuner as clblast_xgemm_1_32.json

    bench/tuning_files.py direct-best TUNER_DIR
        the faster of the direct tuner's two phase results in TUNER_DIR (the
        routine tuner reads it as clblast_xgemm_direct_1_32.json)

    bench/tuning_files.py ship TUNER_DIR OUT_DIR
        from the tuners' clblast_*.json in TUNER_DIR, one file per kernel in
        OUT_DIR as tuning/ holds them (tuning/README.md): the faster of the
        direct tuner's two phases, the routine tuner's crossover with
        best_kernel GemmRoutine (the name clgqa passes to
        CLBlastOverrideParameters; the tuner writes gemm_kernel_selection),
        each without its search log and with a note of where it came from
"""
import json
import os
import re
import sys

KERNELS = {  # tuner file (precision 32) -> (kernel family, file name suffix)
    "clblast_xgemm_direct_1_32.json": ("xgemm_direct", "xgemm-direct"),
    "clblast_xgemm_direct_2_32.json": ("xgemm_direct", "xgemm-direct"),
    "clblast_gemm_routine_32.json": ("gemm_routine", "gemm-routine"),
}


def matches(doc, device):
    texts = doc.get("clgqa_device_match", [])
    texts = [texts] if isinstance(texts, str) else texts
    return doc.get("device") == device or any(t and t in device for t in texts)


def match(device, paths):
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        if doc.get("best_kernel") == "Xgemm" and "clgqa_platform" not in doc and matches(doc, device):
            print(path)
            return 0
    return 1


def best_results(tuner_dir):
    """family -> (time, file name, document, path): each family's fastest."""
    best = {}
    for name, (family, _) in KERNELS.items():
        path = os.path.join(tuner_dir, name)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            doc = json.load(f)
        time = float(doc.get("best_time", "inf"))
        if family not in best or time < best[family][0]:
            best[family] = (time, name, doc, path)
    return best


def direct_best(tuner_dir):
    best = best_results(tuner_dir).get("xgemm_direct")
    if best:
        print(best[3])
    return 0 if best else 1


def ship(tuner_dir, out_dir):
    best = {}
    for folder, _, _ in os.walk(tuner_dir):
        for family, result in best_results(folder).items():
            if family not in best or result[0] < best[family][0]:
                best[family] = result
    if not best:
        sys.exit(f"{tuner_dir}: no tuner result (clblast_xgemm_direct_*_32.json, "
                 "clblast_gemm_routine_32.json)")
    os.makedirs(out_dir, exist_ok=True)
    for family, (_, name, doc, _) in sorted(best.items()):
        doc.pop("results", None)
        if family == "gemm_routine":
            doc["best_kernel"] = "GemmRoutine"
        slug = re.sub(r"[^a-z0-9]+", "-", doc.get("device", "device").lower()).strip("-")
        doc["note"] = (f"{name} of bench/device-check.sh's run on {doc.get('device')} "
                       f"(platform {doc.get('platform_version', '?')})")
        path = os.path.join(out_dir, f"{slug}-{KERNELS[name][1]}.json")
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"{path}: {doc['best_kernel']} {doc['best_parameters']}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "match":
        sys.exit(match(sys.argv[2], sys.argv[3:]))
    if len(sys.argv) == 3 and sys.argv[1] == "direct-best":
        sys.exit(direct_best(sys.argv[2]))
    if len(sys.argv) == 4 and sys.argv[1] == "ship":
        sys.exit(ship(sys.argv[2], sys.argv[3]))
    sys.exit(__doc__)
