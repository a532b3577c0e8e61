"""A safetensors file's header, read and checked without reading its tensors.

The format: an 8-byte little-endian header length N, N bytes of JSON (per tensor its dtype,
shape and ``data_offsets`` [begin, end) into the data that follows; an optional
``__metadata__``), then the data. A complete file ends exactly where its last tensor does, so a
file cut short (a full disk, a killed copy), an empty one or one of random bytes is told apart
here, in a sentence that names the file, instead of as a reader's traceback; and the tensors'
shapes are known before anything is allocated for them.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

MAX_HEADER = 100_000_000  # the safetensors library refuses longer headers too
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}


class DamagedFileError(ValueError):
    """A file that is not a complete safetensors file; the message names it."""


def read_header(path: str | Path) -> dict[str, dict]:
    """The tensor entries of ``path`` ({name: {"dtype", "shape", "data_offsets"}}), after
    checking that the file holds all the data its header describes."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            if size < 8:
                raise DamagedFileError(f"{path}: {'empty' if size == 0 else f'only {size} bytes'}, "
                                       f"not a safetensors file")
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER or 8 + length > size:
                raise DamagedFileError(f"{path}: not a safetensors file, or cut short (its header would be "
                                       f"{length} bytes, the file has {size})")
            raw = f.read(length)
    except OSError as exc:
        raise DamagedFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DamagedFileError(f"{path}: its header is not JSON: not a safetensors file, or damaged") from None
    if not isinstance(header, dict):
        raise DamagedFileError(f"{path}: its header is not a JSON object: not a safetensors file")
    header.pop("__metadata__", None)
    end = 0
    for name, entry in header.items():
        try:
            begin, stop = (int(v) for v in entry["data_offsets"])
            count = math.prod(int(d) for d in entry["shape"])
            itemsize = DTYPE_BYTES.get(entry["dtype"])  # None: a dtype newer than this table
        except (KeyError, TypeError, ValueError):
            raise DamagedFileError(f"{path}: the header's entry for {name!r} is malformed") from None
        expected = stop - begin if itemsize is None else count * itemsize
        if not 0 <= begin <= stop or stop - begin != expected:
            raise DamagedFileError(f"{path}: the header's entry for {name!r} is malformed "
                                   f"(offsets {begin}..{stop} for {expected} bytes)")
        end = max(end, stop)
    data = size - 8 - length
    if data < end:
        raise DamagedFileError(f"{path}: cut short: its tensors need {end} bytes of data, the file holds {data}")
    if data > end:
        raise DamagedFileError(f"{path}: {data - end} bytes after its last tensor: damaged, or not safetensors")
    return header

