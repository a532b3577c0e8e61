"""The native few-row matrix product of the lean backend (skinny_gemm.c), built on first use.

The C file is compiled once per machine with the local C compiler (``-O3 -march=native
-fopenmp``) into the cache folder, keyed by the source, the compiler and the CPU's model and
flags, so a home folder shared between machines never loads a library built for another CPU.
It needs an x86-64 CPU with AVX2 and FMA and a C compiler; where either is missing, or
``SDBENCH_NATIVE_KERNEL=0`` is set, ``load()`` returns None with the reason in ``why_not()`` and
the lean backend multiplies with torch instead (same results up to float rounding, slower at 2+
rows).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import torch

from methods.core.model_loading import cache_root

SOURCE = Path(__file__).with_name("skinny_gemm.c")
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
    key = hashlib.sha256("|".join([SOURCE.read_text(), compiler, *version, cpu, " ".join(sorted(flags)),
                                   *extra]).encode()).hexdigest()[:16]
    target = cache_root() / "kernels" / f"skinny_gemm-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    cmd = [compiler, "-O3", "-march=native", *extra, "-fopenmp", "-shared", "-fPIC", str(SOURCE), "-o", str(tmp)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"compiling {SOURCE.name} failed: {done.stderr.strip()[:500]}")
    os.replace(tmp, target)  # atomic: a half-written library is never loaded
    return target


def _bind(library_path: Path):
    fn = ctypes.CDLL(str(library_path)).skinny_sgemm
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                   ctypes.c_void_p, ctypes.c_int]
    fn.restype = None
    return fn


def build_variant(*extra: str):
    """The kernel compiled with ``extra`` options (tests build the AVX2 version this way), or None
    where no compiler or no AVX2 is there."""
    cpu, flags = _cpu_description()
    compiler = _compiler()
    if compiler is None or not {"avx2", "fma"} <= flags:
        return None
    return _bind(_build(compiler, cpu, flags, tuple(extra)))


def load():
    """The compiled ``skinny_sgemm`` function, or None (see ``why_not``)."""
    if "fn" in _state:
        return _state["fn"]
    fn, reason = None, None
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
            fn = _bind(_build(compiler, cpu, flags))
        except (OSError, RuntimeError) as exc:
            reason = str(exc)
    _state["fn"], _state["why_not"] = fn, reason
    return fn


def why_not() -> Optional[str]:
    load()
    return _state["why_not"]


def skinny_matmul(fn, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [M, K] @ weight[N, K]^T with the native kernel; both float32 and on the CPU."""
    x = x.contiguous()
    out = torch.empty(x.shape[0], weight.shape[0], dtype=torch.float32)
    fn(x.shape[0], weight.shape[0], weight.shape[1], x.data_ptr(), weight.data_ptr(), out.data_ptr(),
       torch.get_num_threads())
    return out
