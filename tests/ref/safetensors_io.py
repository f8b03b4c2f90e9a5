"""Minimal safetensors reader/writer on plain torch.

Debian ships no python3-safetensors, so the format is written here directly:
8-byte little-endian header length N, N bytes of JSON header
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
then the raw little-endian tensor bytes. Offsets are relative to the end of
the header. Tensors are stored in sorted name order, back to back, and the
header is padded with spaces to a multiple of 8 bytes, as the Rust library
does, so the files are byte-for-byte deterministic.
"""
import json
import os
import struct

import torch

_DTYPE_TO_NAME = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_NAME_TO_DTYPE = {v: k for k, v in _DTYPE_TO_NAME.items()}


def _tensor_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype not in _DTYPE_TO_NAME:
        raise TypeError(f"unsupported dtype {t.dtype}")
    if t.numel() == 0:
        return b""
    # Reinterpret as bytes; this machine (x86-64) is little-endian, as the format.
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def save_file(tensors, path, metadata=None):
    """Write {name: tensor} (and optional {str: str} metadata) to path."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        data = _tensor_bytes(t)
        header[name] = {
            "dtype": _DTYPE_TO_NAME[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("safetensors metadata must map str to str")
        header["__metadata__"] = dict(sorted(metadata.items()))
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def load_file(path):
    """Return ({name: tensor}, metadata dict). Tensors are copies (writable)."""
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", buf[:8])
    if 8 + n > len(buf):
        raise ValueError(f"{path}: header length {n} runs past the file")
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    data = buf[8 + n:]
    out = {}
    for name, info in header.items():
        dtype = _NAME_TO_DTYPE.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name}: unknown dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= len(data):
            raise ValueError(f"{path}: tensor {name}: offsets out of range")
        shape = info["shape"]
        count = 1
        for s in shape:
            count *= s
        itemsize = torch.tensor([], dtype=dtype).element_size()
        if count * itemsize != end - begin:
            raise ValueError(f"{path}: tensor {name}: shape {shape} needs "
                             f"{count * itemsize} bytes, offsets give {end - begin}")
        raw = bytearray(data[begin:end])
        if count == 0:
            t = torch.empty(shape, dtype=dtype)
        else:
            t = torch.frombuffer(raw, dtype=torch.uint8).view(dtype).reshape(shape).clone()
        out[name] = t
    return out, metadata


def write_or_check(files, fixture_dir, check):
    """Writes each (stem, tensors, metadata) as fixture_dir/stem.safetensors,
    or with check compares it with the committed file: the same names,
    shapes and metadata, every element within 1e-6. Returns the number of
    files that differ (0 when writing)."""
    bad = 0
    for stem, tensors, md in files:
        path = os.path.join(fixture_dir, stem + ".safetensors")
        if check:
            old, old_md = load_file(path)
            same = set(old) == set(tensors) and old_md == md and all(
                old[k].shape == tensors[k].shape and
                float((old[k].double() - tensors[k].double()).abs().max()) <= 1e-6
                for k in tensors)
            bad += not same
            print(f"{stem}: {'ok' if same else 'DIFFERS'}")
        else:
            save_file(tensors, path, md)
            print(f"wrote {path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")
    return bad
