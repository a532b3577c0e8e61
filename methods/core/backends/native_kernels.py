"""The lean backend's native code, built on first use: the few-row matrix product
(skinny_gemm.c) and the element-wise parts of a decoder layer (lean_ops.c), in one library.

The C files are compiled once per machine with the local C compiler (``-O3 -march=native
-fopenmp``) into the cache folder, keyed by the sources, the compiler and the CPU's model and
flags, so a home folder shared between machines never loads a library built for another CPU.
It needs an x86-64 CPU with AVX2, FMA and F16C and a C compiler; where either is missing, or
``SDBENCH_NATIVE_KERNEL=0`` is set, ``load()`` returns None with the reason in ``why_not()`` and
the lean backend runs on torch ops instead (same results up to float rounding, slower), and
says so once on stderr.

A cached library is loaded only when it matches the size and SHA-256 recorded beside it when it
was built (``lean-KEY.so.json``; methods/core/native_build.py): loading a truncated shared library
kills the process with a bus error, so a damaged or unrecorded entry is rebuilt instead of trusted.
"""

from __future__ import annotations

import ctypes
import os
import platform
import warnings
from pathlib import Path
from typing import Optional

import torch

from methods.core.native_build import cache_damage as _cache_damage  # noqa: F401 (tests read it here)
from methods.core.native_build import compile_cached, find_compiler as _compiler

SOURCES = (Path(__file__).with_name("skinny_gemm.c"), Path(__file__).with_name("lean_ops.c"))
HEADER = Path(__file__).with_name("lean_native.h")  # included by both; part of the cache key
DISABLE_ENV = "SDBENCH_NATIVE_KERNEL"
# What the code is built for (-march=native): AVX2 and FMA, and F16C for half-precision weights
# (every CPU with AVX2 and FMA has it).
NEEDED_FLAGS = {"avx2", "fma", "f16c"}

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


def _build(compiler: str, cpu: str, flags: set[str], extra: tuple[str, ...] = ()) -> Path:
    """The compiled library's path; ``extra`` compiler options (e.g. ``-mno-avx512f``, to build
    the AVX2 version on an AVX-512 CPU) are part of the cache key."""
    # -ffp-contract=off: every C expression rounds as written, in every copy the compiler makes of
    # a loop (vectorised body, scalar remainder), which the kernels' row independence relies on.
    options = ["-O3", "-march=native", "-ffp-contract=off", *extra, "-fopenmp"]
    return compile_cached(compiler, "lean", SOURCES, (HEADER,), options, (cpu, " ".join(sorted(flags))))


_INT, _PTR, _FLOAT = ctypes.c_int, ctypes.c_void_p, ctypes.c_float
SIGNATURES = {  # argument types of every exported function of lean_native.h (all return void)
    "skinny_sgemm": [_INT, _INT, _INT, _PTR, _PTR, _PTR, _INT],
    "skinny_hgemm": [_INT, _INT, _INT, _PTR, _PTR, _PTR, _INT],
    "rms_norm": [_INT, _INT, _PTR, _PTR, _PTR, _FLOAT, _PTR],
    "rope_store": [_INT, _INT, _INT, _INT, _PTR, _PTR, _PTR, _PTR, _PTR, _INT, _INT],
    "attend": [_INT, _INT, _INT, _INT, _PTR, _PTR, _PTR, _INT, _INT, _INT, _PTR, _FLOAT, _PTR, _INT],
    "silu_mul": [_INT, _INT, _PTR, _PTR, _INT],
    "attend_rows": [_INT, _INT, _INT, _INT, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _FLOAT, _PTR, _INT],
    "lean_layer": [_PTR, _INT, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _INT, _INT, _INT, _PTR, _INT],
    "lean_kv": [_PTR, _INT, _PTR, _PTR, _PTR, _PTR, _PTR, _INT, _INT, _INT],
}


class LayerWeights(ctypes.Structure):
    """lean_native.h's lean_layer_t: one decoder layer's sizes and weight addresses. It holds raw
    addresses: whoever builds it keeps the tensors alive."""
    _fields_ = [(name, ctypes.c_int) for name in ("width", "in_width", "heads", "kv_heads", "hd", "inter")] + \
               [(name, ctypes.c_float) for name in ("eps_in", "eps_post", "scale")] + \
               [(name, ctypes.c_void_p) for name in ("norm_in", "norm_post", "wqkv", "wo", "wgu", "wdown", "bqkv", "bo",
                                                     "bgu", "bdown", "q_norm", "k_norm")] + \
               [("eps_qk", ctypes.c_float), ("half", ctypes.c_int)]


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
    if compiler is None or not NEEDED_FLAGS <= flags:
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
    elif platform.machine() not in ("x86_64", "AMD64") or not NEEDED_FLAGS <= flags:
        reason = "the CPU has no AVX2+FMA+F16C (or is not x86-64)"
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
    """x [M, K] (float32) @ weight[N, K]^T with the native kernel, both on the CPU: a float32 weight
    through skinny_sgemm, a float16 one through skinny_hgemm (each weight widened to float32 as it
    is read; every product and sum in float32)."""
    x = x.contiguous()
    out = torch.empty(x.shape[0], weight.shape[0], dtype=torch.float32)
    kernel = library.skinny_hgemm if weight.dtype == torch.float16 else library.skinny_sgemm
    kernel(x.shape[0], weight.shape[0], weight.shape[1], x.data_ptr(), weight.data_ptr(), out.data_ptr(),
           torch.get_num_threads())
    return out
