"""The lean backend's native layer when something is wrong: a damaged cached library is rebuilt,
not loaded; every fallback (no native code, no weight arena) says once what it falls back to and
why, and the forwards still run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from methods.core.backends import native_kernels, weight_arena
from methods.core.backends.lean import LeanTarget
from tests.test_backends import VOCAB, assert_same, run_steps
from tests.tiny_model import make_tiny_llama

ROOT = Path(__file__).resolve().parents[1]

LOAD_AND_RUN = textwrap.dedent("""
    import torch
    from methods.core.backends import native_kernels
    library = native_kernels.load()
    assert library is not None, native_kernels.why_not()
    x, w = torch.randn(3, 40), torch.randn(24, 40)
    assert torch.allclose(native_kernels.skinny_matmul(library, x, w), x @ w.T, atol=1e-4)
    print(native_kernels.describe(library))
""")


def needs_native_build():
    cpu, flags = native_kernels._cpu_description()
    if native_kernels._compiler() is None or not native_kernels.NEEDED_FLAGS <= flags:
        pytest.skip("no C compiler or no AVX2+FMA+F16C here")
    return cpu, flags


@pytest.mark.parametrize("damage", ["truncated", "empty", "unrecorded"])
def test_a_damaged_cached_library_is_rebuilt_not_loaded(tmp_path, monkeypatch, damage):
    cpu, flags = needs_native_build()
    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path))
    library = native_kernels._build(native_kernels._compiler(), cpu, flags)
    good = library.read_bytes()
    if damage == "truncated":  # a copy cut short (disk full, a killed copy): dlopen maps past its end
        library.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        library.write_bytes(b"")
    else:  # a library whose build left no record cannot be told from a damaged one
        for record in tmp_path.rglob("*.so.json"):
            record.unlink()
        library.write_bytes(good[: len(good) // 2])
    done = subprocess.run([sys.executable, "-c", LOAD_AND_RUN], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "SDBENCH_CACHE": str(tmp_path)}, timeout=120)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert "skinny_gemm" in done.stdout
    assert "rebuilding" in done.stderr and str(library) in done.stderr
    assert native_kernels._cache_damage(library) is None  # rebuilt, and recorded again


def test_a_library_built_once_is_loaded_again_without_a_rebuild(tmp_path, monkeypatch):
    cpu, flags = needs_native_build()
    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path))
    first = native_kernels._build(native_kernels._compiler(), cpu, flags)
    built_at = first.stat().st_mtime_ns
    assert native_kernels._build(native_kernels._compiler(), cpu, flags) == first
    assert first.stat().st_mtime_ns == built_at


@pytest.mark.parametrize("cause", ["disabled", "no compiler", "failing compiler"])
def test_the_fallback_to_torch_ops_says_once_what_and_why(tmp_path, monkeypatch, cause):
    monkeypatch.setattr(native_kernels, "_state", {})
    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path))
    if cause == "disabled":
        monkeypatch.setenv("SDBENCH_NATIVE_KERNEL", "0")
        why = "SDBENCH_NATIVE_KERNEL=0"
    else:
        needs_native_build()  # without AVX2 the CPU is the reason, not the compiler
        monkeypatch.delenv("SDBENCH_NATIVE_KERNEL", raising=False)
        if cause == "no compiler":
            monkeypatch.delenv("CC", raising=False)
            monkeypatch.setenv("PATH", str(tmp_path / "empty"))
            why = "no C compiler"
        else:
            failing = tmp_path / "cc"
            failing.write_text("#!/bin/sh\necho 'cc: internal error' >&2\necho 'compilation terminated.' >&2\nexit 1\n")
            failing.chmod(0o755)
            monkeypatch.setenv("CC", str(failing))
            why = "failed: cc: internal error; compilation terminated"
    with pytest.warns(RuntimeWarning, match=f"torch ops instead of its native code.*{why}") as said:
        assert native_kernels.load() is None
    assert "\n" not in str(said[0].message)  # one line, whatever the compiler printed
    model = make_tiny_llama(vocab_size=VOCAB, layers=2, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: a second target says nothing
        lean = LeanTarget(model)
        LeanTarget(model)
    assert not lean.native_kernel and lean.native_code == "torch ops"


# ----------------------------------------------------------------------------- the weight arena

def test_under_a_memory_limit_the_arena_falls_back_to_ordinary_memory():
    """A real limit (RLIMIT_AS) in a child process: the arena's memory request fails and is
    answered with None and one warning, not an OSError."""
    script = textwrap.dedent("""
        import resource, warnings
        import torch
        from methods.core.backends import weight_arena
        def mapped():
            for line in open("/proc/self/status"):
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mapped() + (256 << 20), resource.RLIM_INFINITY))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            arena = weight_arena.reserve(1 << 30, torch.float32)  # 4 GiB
        assert arena is None
        assert len(caught) == 1 and "ordinary memory" in str(caught[0].message), [str(w.message) for w in caught]
        print("fell back")
    """)
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs /proc to size the limit")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "fell back" in done.stdout, done.stderr[-2000:]


def test_a_lean_target_whose_arena_is_refused_runs_on_ordinary_memory(monkeypatch):
    if native_kernels.load() is None:
        pytest.skip(f"the arena is only used with the native kernel: {native_kernels.why_not()}")

    def refused(self, numel, dtype):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(weight_arena.WeightArena, "__init__", refused)
    model = make_tiny_llama(vocab_size=VOCAB, layers=2, dtype=torch.float32)
    expected = run_steps(LeanTarget(make_tiny_llama(vocab_size=VOCAB, layers=2, dtype=torch.float32),
                                    native_kernel=False), [4, 9, 17, 33, 2])
    with pytest.warns(RuntimeWarning, match="ordinary memory"):
        lean = LeanTarget(model)
    assert lean.native_kernel and getattr(model, "_lean_arena", None) is None
    assert_same(run_steps(lean, [4, 9, 17, 33, 2]), expected, 2e-4)
