"""One file of flat numpy arrays behind a small JSON header, memory-mapped when read.

The retrieval drafters' prebuilt indexes (REST's suffix array, SAM-Decoding's static automaton)
are written once and read by every run, so they share one layout:

    magic (8 bytes) | version, header length (2 x little-endian u32) | JSON header | pad to 64
    | array 0 | pad to 64 | array 1 | pad to 64 | ...

Arrays are little-endian with the dtypes the caller names; their lengths come from the header.
Files are written to a unique temporary name and renamed, so a reader never sees half a file and
two runs building the same index at once do not collide.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

ALIGN = 64  # array starts aligned for fast, vectorised reads


def _padding(offset: int) -> bytes:
    return b"\0" * (-offset % ALIGN)


def write_arrays(path: Path, magic: bytes, version: int, header: dict,
                 arrays: Sequence[tuple[np.ndarray, str]]) -> None:
    """Write ``arrays`` (each with its on-disk dtype) after ``header``; atomic."""
    path = Path(path)
    blob = json.dumps(header, sort_keys=True).encode("utf-8")
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(magic)
        f.write(np.array([version, len(blob)], dtype="<u4").tobytes())
        f.write(blob)
        f.write(_padding(f.tell()))
        for array, dtype in arrays:
            f.write(np.ascontiguousarray(array, dtype=dtype).tobytes())
            f.write(_padding(f.tell()))
    tmp.replace(path)


def read_header(path: Path, magic: bytes, version: int, what: str) -> tuple[dict, int]:
    """The JSON header and the offset where the arrays begin; clear errors for another file."""
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(len(magic)) != magic:
            raise ValueError(f"{path} is not an sdbench {what} (bad magic)")
        found, size = np.frombuffer(f.read(8), dtype="<u4").tolist()
        if found != version:
            raise ValueError(f"{path}: {what} format version {found}, this code reads {version}")
        header = json.loads(f.read(size).decode("utf-8"))
        return header, f.tell()


def read_arrays(path: Path, offset: int, specs: Sequence[tuple[str, int]], mmap: bool = True) -> list[np.ndarray]:
    """Arrays of the given (dtype, length) in order from ``offset``: plain ndarray views of a
    memory map (numpy's memmap subclass makes every slice slower), or copies in memory."""
    out = []
    for dtype, count in specs:
        offset += -offset % ALIGN
        size = count * np.dtype(dtype).itemsize
        if mmap and count:
            out.append(np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(count,)).view(np.ndarray))
        else:
            with open(path, "rb") as f:
                f.seek(offset)
                out.append(np.frombuffer(f.read(size), dtype=dtype))
        offset += size
    return out
