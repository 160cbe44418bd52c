"""Read a .safetensors file as memory-mapped tensors, validating it first.

The format is an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
[begin, end) byte offsets into the data that follows) and the raw data. Mapping the data instead
of reading it means loading a 5B checkpoint costs nothing until a tensor is used, and a file that
is truncated or not safetensors at all is caught from its header with a message saying so. The
pages of a tensor leave the process's resident memory when the tensor is freed (a fast CPU mode
converts layer by layer and frees the fp32 originals), so converting never holds the whole file
resident beside the converted model.
"""

from __future__ import annotations

import ctypes
import json
import math
import mmap
import os
import weakref
from pathlib import Path

import numpy as np
import torch

from engine.errors import CheckpointError

# safetensors dtype -> (torch dtype, numpy dtype of the same width used to map the bytes)
DTYPES = {
    "F64": (torch.float64, np.float64),
    "F32": (torch.float32, np.float32),
    "F16": (torch.float16, np.float16),
    "BF16": (torch.bfloat16, np.int16),
    "I64": (torch.int64, np.int64),
    "I32": (torch.int32, np.int32),
    "I16": (torch.int16, np.int16),
    "I8": (torch.int8, np.int8),
    "U8": (torch.uint8, np.uint8),
    "BOOL": (torch.bool, np.bool_),
}
MAX_HEADER_BYTES = 100 * 1024 * 1024


def read_header(path: Path) -> tuple[dict, int]:
    """Return (tensor entries, byte offset of the data) after checking the file's structure."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes)")
        n = int.from_bytes(head, "little")
        if n <= 0 or n > MAX_HEADER_BYTES or 8 + n > size:
            raise CheckpointError(
                f"{path}: not a safetensors file, or truncated (header length {n} does not fit "
                f"in {size} bytes)"
            )
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: not a safetensors file (unreadable header: {exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (header is not a JSON object)")
    header.pop("__metadata__", None)
    data_start, data_size = 8 + n, size - 8 - n
    end_max = 0
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: malformed safetensors entry for {name!r}") from None
        if dtype not in DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
        itemsize = np.dtype(DTYPES[dtype][1]).itemsize
        if end - begin != math.prod(shape) * itemsize or begin < 0:
            raise CheckpointError(f"{path}: tensor {name!r} has inconsistent size in its header")
        end_max = max(end_max, end)
    if end_max > data_size:
        raise CheckpointError(
            f"{path}: truncated: the header describes {end_max} bytes of tensor data but the file "
            f"holds {data_size} (an interrupted download? fetch it again)"
        )
    return header, data_start


def load_mmap(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, backed by a private copy-on-write memory map.

    Each tensor's file pages leave this process's resident memory as soon as the tensor is freed
    (release_pages_when_freed), not only when the last tensor of the file is: a model converted
    to another format layer by layer (engine.runtime.cpu_modes) then holds the pages of about one
    layer of the file at a time beside what it converted, not the whole file.
    """
    path = Path(path)
    header, data_start = read_header(path)
    if not header:
        return {}
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    tensors = {}
    for name, entry in header.items():
        torch_dtype, np_dtype = DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        if end == begin:
            raw = np.empty(0, np.uint8)
        else:
            raw = np.frombuffer(release_pages_when_freed(mapped, data_start + begin, data_start + end), np.uint8)
        if (data_start + begin) % np.dtype(np_dtype).itemsize:
            raw = raw.copy()  # unaligned tensor data (files not written by safetensors itself)
        t = torch.from_numpy(raw.view(np_dtype).reshape(entry["shape"]))
        tensors[name] = t.view(torch_dtype) if torch_dtype == torch.bfloat16 else t
    return tensors


def release_pages_when_freed(mapped: mmap.mmap, begin: int, end: int):
    """Bytes [begin, end) of `mapped` as a buffer whose death gives the pages wholly inside it back.

    The buffer is a ctypes array over the map: numpy keeps it (not a copy of the view) as the base
    of the array made from it, and torch.from_numpy keeps that array, so it dies with the last
    tensor that uses these bytes. Then MADV_DONTNEED drops the pages from this process's resident
    set: they were only read (a private map's pages nobody wrote are the file's), so the page
    cache keeps them and nothing is lost. Pages shared with a neighbouring tensor stay until the
    map is closed. Without madvise (Windows) the pages go when the whole map does.
    """
    view = (ctypes.c_ubyte * (end - begin)).from_buffer(mapped, begin)
    page = mmap.PAGESIZE
    first, last = -(-begin // page) * page, end // page * page
    if last > first and hasattr(mapped, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        weakref.finalize(view, _drop_pages, mapped, first, last - first).atexit = False
    return view


def _drop_pages(mapped: mmap.mmap, start: int, length: int) -> None:
    try:
        mapped.madvise(mmap.MADV_DONTNEED, start, length)
    except (OSError, ValueError):   # the map already closed, or the kernel refused: pages go with the map
        pass
