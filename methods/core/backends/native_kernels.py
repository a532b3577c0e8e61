"""The lean backend's native code, built on first use: the few-row matrix product
(skinny_gemm.c) and the element-wise parts of a decoder layer (lean_ops.c), in one library.

The C files are compiled once per machine with the local C compiler (``-O3 -march=native
-fopenmp``) into the cache folder, keyed by the sources, the compiler and the CPU's model and
flags, so a home folder shared between machines never loads a library built for another CPU.
It needs an x86-64 CPU with AVX2 and FMA and a C compiler; where either is missing, or
``SDBENCH_NATIVE_KERNEL=0`` is set, ``load()`` returns None with the reason in ``why_not()`` and
the lean backend runs on torch ops instead (same results up to float rounding, slower), and
says so once on stderr.

A cached library is loaded only when it matches the size and SHA-256 recorded beside it when it
was built (``lean-KEY.so.json``): loading a truncated shared library kills the process with a bus
error, so a damaged or unrecorded entry is rebuilt instead of trusted.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Optional

import torch

from methods.core.paths import cache_root

SOURCES = (Path(__file__).with_name("skinny_gemm.c"), Path(__file__).with_name("lean_ops.c"))
HEADER = Path(__file__).with_name("lean_native.h")  # included by both; part of the cache key
DISABLE_ENV = "SDBENCH_NATIVE_KERNEL"

_state: dict = {}


def _cpu_description() -> tuple[str, set[str]]:
    model, flags = platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == platform.machine():
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return model, flags


def _compiler() -> Optional[str]:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _build(compiler: str, cpu: str, flags: set[str], extra: tuple[str, ...] = ()) -> Path:
    """The compiled library's path; ``extra`` compiler options (e.g. ``-mno-avx512f``, to build
    the AVX2 version on an AVX-512 CPU) are part of the cache key."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    key = hashlib.sha256("|".join([*(source.read_text() for source in (*SOURCES, HEADER)), compiler, *version, cpu,
                                   " ".join(sorted(flags)), *extra]).encode()).hexdigest()[:16]
    target = cache_root() / "kernels" / f"lean-{key}.so"
    damage = _cache_damage(target)
    if damage is None:
        return target
    if target.exists():
        warnings.warn(f"{target}: the cached native library cannot be trusted ({damage}); rebuilding it", RuntimeWarning)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    # -ffp-contract=off: every C expression rounds as written, in every copy the compiler makes of
    # a loop (vectorised body, scalar remainder), which the kernels' row independence relies on.
    cmd = [compiler, "-O3", "-march=native", "-ffp-contract=off", *extra, "-fopenmp", "-shared", "-fPIC",
           *map(str, SOURCES),
           "-o", str(tmp), "-lm"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        said = "; ".join(line.strip() for line in done.stderr.splitlines() if line.strip())  # one line
        raise RuntimeError(f"compiling {' and '.join(s.name for s in SOURCES)} failed: {said[:500]}")
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


def _cache_damage(library: Path) -> Optional[str]:
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


_INT, _PTR, _FLOAT = ctypes.c_int, ctypes.c_void_p, ctypes.c_float
SIGNATURES = {  # argument types of every exported function of lean_native.h (all return void)
    "skinny_sgemm": [_INT, _INT, _INT, _PTR, _PTR, _PTR, _INT],
    "rms_norm": [_INT, _INT, _PTR, _PTR, _PTR, _FLOAT, _PTR],
    "rope_store": [_INT, _INT, _INT, _INT, _PTR, _PTR, _PTR, _PTR, _PTR, _INT, _INT],
    "attend": [_INT, _INT, _INT, _INT, _PTR, _PTR, _PTR, _INT, _INT, _INT, _PTR, _FLOAT, _PTR, _INT],
    "silu_mul": [_INT, _INT, _PTR, _PTR, _INT],
    "attend_rows": [_INT, _INT, _INT, _INT, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _FLOAT, _PTR, _INT],
    "lean_layer": [_PTR, _INT, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _INT, _INT, _INT, _PTR, _INT],
}


class LayerWeights(ctypes.Structure):
    """lean_native.h's lean_layer_t: one decoder layer's sizes and weight addresses. It holds raw
    addresses: whoever builds it keeps the tensors alive."""
    _fields_ = [(name, ctypes.c_int) for name in ("width", "in_width", "heads", "kv_heads", "hd", "inter")] + \
               [(name, ctypes.c_float) for name in ("eps_in", "eps_post", "scale")] + \
               [(name, ctypes.c_void_p) for name in ("norm_in", "norm_post", "wqkv", "bqkv", "wo", "bo", "wgu", "bgu",
                                                     "wdown", "bdown")]


VERSIONS = ("skinny_sgemm_version", "skinny_sgemm_vector_bits", "lean_ops_version")  # int f(void)


def _bind(library_path: Path) -> ctypes.CDLL:
    library = ctypes.CDLL(str(library_path))
    for name, argtypes in SIGNATURES.items():
        fn = getattr(library, name)
        fn.argtypes, fn.restype = argtypes, None
    for name in VERSIONS:
        fn = getattr(library, name)
        fn.argtypes, fn.restype = [], ctypes.c_int
    return library


def describe(library) -> str:
    """Which native code ran, for the answers' environment: its versions and vector width."""
    bits = library.skinny_sgemm_vector_bits()
    return (f"skinny_gemm v{library.skinny_sgemm_version()} ({'AVX-512' if bits == 512 else 'AVX2'}), "
            f"lean_ops v{library.lean_ops_version()}")


def build_variant(*extra: str) -> Optional[ctypes.CDLL]:
    """The library compiled with ``extra`` options (tests build the AVX2 version this way), or
    None where no compiler or no AVX2 is there."""
    cpu, flags = _cpu_description()
    compiler = _compiler()
    if compiler is None or not {"avx2", "fma"} <= flags:
        return None
    return _bind(_build(compiler, cpu, flags, tuple(extra)))


def load() -> Optional[ctypes.CDLL]:
    """The compiled library (functions as in ``SIGNATURES``), or None (see ``why_not``)."""
    if "library" in _state:
        return _state["library"]
    library, reason = None, None
    cpu, flags = _cpu_description()
    compiler = _compiler()
    if os.environ.get(DISABLE_ENV, "1") == "0":
        reason = f"{DISABLE_ENV}=0"
    elif platform.machine() not in ("x86_64", "AMD64") or not {"avx2", "fma"} <= flags:
        reason = "the CPU has no AVX2+FMA (or is not x86-64)"
    elif compiler is None:
        reason = "no C compiler (cc, gcc or clang) on PATH"
    else:
        try:
            library = _bind(_build(compiler, cpu, flags))
        except (OSError, RuntimeError) as exc:
            reason = str(exc)
    _state["library"], _state["why_not"] = library, reason
    if library is None:  # once per process: load() answers from _state from now on
        warnings.warn(f"the lean backend runs on torch ops instead of its native code ({reason}): the same "
                      f"results up to float rounding, slower", RuntimeWarning)
    return library


def why_not() -> Optional[str]:
    load()
    return _state["why_not"]


def skinny_matmul(library, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [M, K] @ weight[N, K]^T with the native kernel; both float32 and on the CPU."""
    x = x.contiguous()
    out = torch.empty(x.shape[0], weight.shape[0], dtype=torch.float32)
    library.skinny_sgemm(x.shape[0], weight.shape[0], weight.shape[1], x.data_ptr(), weight.data_ptr(),
                         out.data_ptr(), torch.get_num_threads())
    return out
