"""Read a .safetensors file as read-only numpy arrays over a memory map.

The format is 8 bytes of header length, a JSON header, then raw little-endian tensors, so a
few lines replace the `safetensors` package, and the weights are paged in from the file
instead of being copied onto the heap.
"""

from __future__ import annotations

import json
import math
import mmap
import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


def load_safetensors(path: Path) -> dict[str, npt.NDArray[Any]]:
    """Every tensor in `path`, as read-only arrays backed by a memory map of the file.

    Raises ValueError for a truncated or malformed file, or a dtype numpy cannot hold (BF16).
    """
    with path.open("rb") as file:
        size = path.stat().st_size
        if size < 8:
            raise ValueError(f"{path} is too short to be a safetensors file")
        memory = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    (header_len,) = struct.unpack_from("<Q", memory, 0)
    base = 8 + header_len
    if base > size:
        raise ValueError(f"{path} is truncated: its header claims {header_len} bytes")
    header = json.loads(memory[8:base])
    tensors: dict[str, npt.NDArray[Any]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        start, end = (int(offset) for offset in info["data_offsets"])
        shape = tuple(int(dim) for dim in info["shape"])
        count = math.prod(shape)
        if base + end > size or end - start != count * np.dtype(dtype).itemsize:
            raise ValueError(f"{path} is truncated or corrupt at tensor {name}")
        flat = np.frombuffer(memory, dtype=dtype, count=count, offset=base + start)
        tensors[name] = flat.reshape(shape)
    return tensors
