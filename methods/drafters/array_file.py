"""One file of flat numpy arrays behind a small JSON header, memory-mapped when read.

The retrieval drafters' prebuilt indexes (REST's suffix array, SAM-Decoding's static automaton)
are written once and read by every run, so they share one layout:

    magic (8 bytes) | version, header length (2 x little-endian u32) | JSON header | pad to 64
    | array 0 | pad to 64 | array 1 | pad to 64 | ...

Arrays are little-endian with the dtypes the caller names; their lengths come from the header.
Files are written to a unique temporary name and renamed, so a reader never sees half a file and
two runs building the same index at once do not collide. A reader checks that the file holds
every byte its header describes before mapping it: a file cut short (a full disk, a killed copy)
is a ``DamagedIndexError`` naming it, and a cached index in that state is built again
(``read_or_build``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np

ALIGN = 64  # array starts aligned for fast, vectorised reads
T = TypeVar("T")


class DamagedIndexError(ValueError):
    """An index file that is cut short or whose header is unreadable; the message names it."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}; build it again")
        self.path, self.reason = path, reason

    def __reduce__(self):  # picklable (Ray sends a worker's exceptions back to the driver)
        return type(self), (self.path, self.reason)


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
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename makes it the index
    tmp.replace(path)


def read_header(path: Path, magic: bytes, version: int, what: str) -> tuple[dict, int]:
    """The JSON header and the offset where the arrays begin; clear errors for another file."""
    path = Path(path)
    with open(path, "rb") as f:
        start = f.read(len(magic))
        if start != magic:
            if magic.startswith(start):  # empty, or cut inside the magic
                raise DamagedIndexError(path, f"cut short ({len(start)} bytes): not a complete {what}")
            raise ValueError(f"{path} is not an sdbench {what} (bad magic)")
        fields = f.read(8)
        if len(fields) < 8:
            raise DamagedIndexError(path, f"cut short inside its header: not a complete {what}")
        found, size = np.frombuffer(fields, dtype="<u4").tolist()
        if found != version:
            raise ValueError(f"{path}: {what} format version {found}, this code reads {version}")
        try:
            header = json.loads(f.read(size).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise DamagedIndexError(path, f"its header is cut short or damaged: not a complete {what}") from None
        return header, f.tell()


def read_arrays(path: Path, offset: int, specs: Sequence[tuple[str, int]], mmap: bool = True) -> list[np.ndarray]:
    """Arrays of the given (dtype, length) in order from ``offset``: plain ndarray views of a
    memory map (numpy's memmap subclass makes every slice slower), or copies in memory."""
    end = offset
    for dtype, count in specs:
        end += -end % ALIGN + count * np.dtype(dtype).itemsize
    size = Path(path).stat().st_size
    if size < end:
        raise DamagedIndexError(path, f"cut short ({size} bytes; its header describes {end})")
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


def read_or_build(path: Path, read: Callable[[Path], T], build: Callable[[Path], object], what: str) -> T:
    """A cached index: read from ``path``, or built there first (``build(path)`` writes it) when
    it is missing or damaged. A damaged one is replaced, never trusted."""
    path = Path(path)
    if path.is_file():
        try:
            return read(path)
        except DamagedIndexError as exc:
            print(f"{exc.path}: {exc.reason}; building the {what} again", file=sys.stderr)
    else:
        print(f"Building the {what} once; cached in {path}", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    build(path)
    return read(path)


def read_named_arrays(path: Path, magic: bytes, version: int, what: str,
                      specs: Sequence[tuple[str, str, str]], mmap: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and the arrays of a file whose layout is ``specs``: (name, dtype, length key),
    the key naming a header count, or ``"count+1"`` for one more."""
    header, offset = read_header(path, magic, version, what)
    lengths = []
    for _, _, key in specs:
        count, _, extra = key.partition("+")
        lengths.append(header[count] + int(extra or 0))
    arrays = read_arrays(path, offset, [(dtype, n) for (_, dtype, _), n in zip(specs, lengths)], mmap)
    return header, {name: array for (name, _, _), array in zip(specs, arrays)}
