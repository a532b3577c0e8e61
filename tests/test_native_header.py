"""lean_native.h is the one declaration of the native layer: the C files define what it declares
(the compiler checks them against it), and native_kernels.py's ctypes mirror matches it."""

import ctypes
import re
import shutil
import subprocess

import pytest

from methods.core.backends import native_kernels

HEADER = native_kernels.HEADER
C_TYPES = {"int": ctypes.c_int, "float": ctypes.c_float}


def _without_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/", " ", text, flags=re.S)


def header_prototypes() -> dict[str, tuple[str, list]]:
    """name -> (return type, ctypes argument types) of every function the header declares."""
    text = _without_comments(HEADER.read_text())
    text = re.sub(r"typedef struct \{.*?\}\s*\w+;", " ", text, flags=re.S)
    prototypes = {}
    for ret, name, args in re.findall(r"\b(void|int)\s+(\w+)\s*\(([^)]*)\)\s*;", text):
        types = []
        for arg in (a.strip() for a in args.split(",")):
            if arg == "void":
                continue
            types.append(ctypes.c_void_p if "*" in arg else C_TYPES[arg.split()[0]])
        prototypes[name] = (ret, types)
    return prototypes


def header_struct_fields() -> list[tuple[str, type]]:
    """lean_layer_t's fields in order, as (name, ctypes type)."""
    body = re.search(r"typedef struct \{(.*?)\}\s*lean_layer_t;", _without_comments(HEADER.read_text()), re.S)
    fields = []
    for declaration in body.group(1).split(";"):
        declaration = declaration.strip()
        if not declaration:
            continue
        kind = declaration.split()[0] if not declaration.startswith("const") else "const"
        for name in declaration.split(None, 2 if kind == "const" else 1)[-1].split(","):
            name = name.strip()
            pointer = name.startswith("*") or kind == "const"
            fields.append((name.lstrip("* "), ctypes.c_void_p if pointer else C_TYPES[kind]))
    return fields


def test_the_ctypes_signatures_are_the_headers_prototypes():
    prototypes = header_prototypes()
    assert set(prototypes) == set(native_kernels.SIGNATURES) | set(native_kernels.VERSIONS)
    for name, argtypes in native_kernels.SIGNATURES.items():
        assert prototypes[name] == ("void", argtypes), name
    for name in native_kernels.VERSIONS:
        assert prototypes[name] == ("int", []), name


def test_layer_weights_is_the_headers_lean_layer_t():
    assert header_struct_fields() == list(native_kernels.LayerWeights._fields_)


def test_both_c_files_include_the_header_and_define_only_what_it_declares():
    declared = set(header_prototypes())
    for source in native_kernels.SOURCES:
        text = _without_comments(source.read_text())
        assert '#include "lean_native.h"' in text, source.name
        assert not re.search(r"\}\s*lean_layer_t\s*;", text), f"{source.name} defines lean_layer_t again"
        exported = set(re.findall(r"^(?:void|int)\s+(\w+)\s*\(", text, flags=re.M))
        assert exported <= declared, f"{source.name} exports {sorted(exported - declared)} undeclared"


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
@pytest.mark.parametrize("extra", [[], ["-mno-avx512f"]], ids=["native", "avx2"])
def test_the_c_files_compile_against_the_header(extra):
    """A definition that differs from its prototype is a compile error, in either version."""
    done = subprocess.run(["cc", "-fsyntax-only", "-march=native", "-fopenmp", "-Wall", "-Werror", *extra,
                           *map(str, native_kernels.SOURCES)], capture_output=True, text=True)
    if done.returncode and "unrecognized" in done.stderr:
        pytest.skip(f"this compiler cannot build the native layer here: {done.stderr[:200]}")
    assert done.returncode == 0, done.stderr


def test_the_mirror_check_fails_on_a_drifted_header(tmp_path, monkeypatch):
    drifted = HEADER.read_text().replace("float eps, float *out", "double eps, float *out")
    drifted = drifted.replace("float eps_in, eps_post, scale;", "float eps_in, scale;")
    (tmp_path / "lean_native.h").write_text(drifted.replace("double", "int"))
    monkeypatch.setattr(native_kernels, "HEADER", tmp_path / "lean_native.h")
    monkeypatch.setitem(globals(), "HEADER", tmp_path / "lean_native.h")
    with pytest.raises(AssertionError):
        test_the_ctypes_signatures_are_the_headers_prototypes()
    with pytest.raises(AssertionError):
        test_layer_weights_is_the_headers_lean_layer_t()
