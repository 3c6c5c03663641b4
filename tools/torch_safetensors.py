"""Converts PyTorch checkpoints to and from safetensors, the format tapegrad's checkpoints use.

Needs only torch (Debian's python3-torch). Keys are the state_dict's own, so weights move between
PyTorch and tapegrad both ways:

    /usr/bin/python3 tools/torch_safetensors.py to-safetensors model.pt model.safetensors
    /usr/bin/python3 tools/torch_safetensors.py to-torch model.safetensors model.pt

A .pt file may hold a state_dict or a dict with a "state_dict" / "model" entry (the usual training
checkpoint layouts).
"""
import json
import struct
import sys

import torch

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.bool: "BOOL"}
BACK = {v: k for k, v in DTYPES.items()}


def save_safetensors(state, path, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for key, t in state.items():
        t = t.detach().cpu().contiguous()
        if t.dtype not in DTYPES:
            raise SystemExit(f"{key}: dtype {t.dtype} is not supported by tapegrad (float32, float64, int64, bool)")
        data = t.numpy().tobytes() if t.dtype != torch.bool else t.to(torch.uint8).numpy().tobytes()
        header[key] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    state = {}
    for key, e in header.items():
        if key == "__metadata__":
            continue
        b, end = e["data_offsets"]
        dtype = BACK[e["dtype"]]
        raw = bytearray(body[b:end])
        t = torch.frombuffer(raw, dtype=torch.uint8 if dtype == torch.bool else dtype) if raw else torch.empty(0, dtype=dtype)
        state[key] = (t.to(torch.bool) if dtype == torch.bool else t).reshape(e["shape"]).clone()
    return state


def main(argv):
    if len(argv) != 4 or argv[1] not in ("to-safetensors", "to-torch"):
        raise SystemExit(__doc__)
    if argv[1] == "to-safetensors":
        obj = torch.load(argv[2], map_location="cpu")
        for k in ("state_dict", "model"):
            if isinstance(obj, dict) and k in obj and isinstance(obj[k], dict):
                obj = obj[k]
        save_safetensors(obj, argv[3], {"format": "pt"})
    else:
        torch.save(load_safetensors(argv[2]), argv[3])


if __name__ == "__main__":
    main(sys.argv)
