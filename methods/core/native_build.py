"""Compile a C file into a shared library once per machine, cached and checked before loading.

Used by the lean backend's kernels (methods/core/backends/native_kernels.py) and by the suffix
automaton builder (methods/drafters/native_automaton.py). A library lives in
``<cache>/kernels/<stem>-KEY.so``, KEY hashing the sources, the headers, the compiler and its
version, the options and whatever else the caller names (the CPU, for ``-march=native``). It is
written to a temporary name and renamed, and its size and SHA-256 are recorded beside it
(``<stem>-KEY.so.json``): loading a truncated shared library kills the process with a bus error,
so a damaged or unrecorded entry is rebuilt instead of trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Optional, Sequence

from methods.core.paths import cache_root


def find_compiler() -> Optional[str]:
    """$CC, else cc, gcc or clang on PATH; None when there is none."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def compile_cached(compiler: str, stem: str, sources: Sequence[Path], headers: Sequence[Path],
                   options: Sequence[str], key_parts: Sequence[str] = ()) -> Path:
    """The path of the library built from ``sources`` with ``options``; compiled only when no
    trustworthy cached copy exists. A failed compilation raises RuntimeError with the compiler's
    message on one line."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    text = [source.read_text() for source in (*sources, *headers)]
    key = hashlib.sha256("|".join([*text, compiler, *version, *key_parts, *options]).encode()).hexdigest()[:16]
    target = cache_root() / "kernels" / f"{stem}-{key}.so"
    damage = cache_damage(target)
    if damage is None:
        return target
    if target.exists():
        warnings.warn(f"{target}: the cached native library cannot be trusted ({damage}); rebuilding it", RuntimeWarning)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    cmd = [compiler, *options, "-shared", "-fPIC", *map(str, sources), "-o", str(tmp), "-lm"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        said = "; ".join(line.strip() for line in done.stderr.splitlines() if line.strip())  # one line
        raise RuntimeError(f"compiling {' and '.join(s.name for s in sources)} failed: {said[:500]}")
    record = _record_of(tmp)
    os.replace(tmp, target)  # atomic: a half-written library is never loaded
    _write_atomically(_record_path(target), json.dumps(record))  # last: the entry is complete
    return target


def _record_path(library: Path) -> Path:
    return library.with_name(library.name + ".json")


def _record_of(library: Path) -> dict:
    data = library.read_bytes()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def cache_damage(library: Path) -> Optional[str]:
    """Why the cached library cannot be trusted (missing, no record of its build, another size or
    checksum than recorded), or None when it is the file that was built."""
    if not library.is_file():
        return "not built yet"
    try:
        record = json.loads(_record_path(library).read_text())
        expected = (int(record["size"]), str(record["sha256"]))
    except (OSError, ValueError, KeyError, TypeError):
        return f"no valid record of its build in {_record_path(library).name}"
    found = _record_of(library)
    if found["size"] != expected[0]:
        return f"{found['size']} bytes, {expected[0]} were written"
    if found["sha256"] != expected[1]:
        return "its checksum differs from the one recorded when it was built"
    return None
