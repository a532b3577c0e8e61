"""Trained-head artifacts: a folder with ``config.json`` and fp16 safetensors, tied to one base.

Heads reuse the base model's embeddings and lm_head, which are not saved, so an artifact is only
meaningful on the base it was trained on. The config records that base's name and a fingerprint
of its weights; loading onto another base is refused with an error that says so.

The fingerprint is cheap and survives a change of dtype or device: the names and shapes of a few
fixed tensors (the embeddings, the first and a middle parameter, the last one) plus 16 values read
at fixed positions of each. Shapes must match exactly; values within a tolerance that float16 or
bfloat16 rounding stays inside and a different model does not.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"  # an SpS draft's record beside its model config.json
PROBES = 16


class ArtifactError(ValueError):
    pass


class BaseMismatchError(ArtifactError):
    pass


def _probe_tensors(model) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())  # tied weights appear once
    names = list(params)
    picks = [names[0], names[1], names[len(names) // 2], names[-1]]
    out = {}
    for name in dict.fromkeys(picks):  # de-duplicated, order kept
        out[name] = params[name]
    embed = model.get_input_embeddings()
    if embed is not None:
        out["<input_embeddings>"] = embed.weight
    return out


def base_fingerprint(model) -> dict:
    tensors = {}
    for name, weight in _probe_tensors(model).items():
        flat = weight.detach().reshape(-1)
        index = torch.tensor([i * (flat.numel() - 1) // (PROBES - 1) for i in range(PROBES)], device=flat.device)
        tensors[name] = {"shape": list(weight.shape),
                         "probe": [round(float(v), 6) for v in flat[index].float().cpu()]}
    coarse = json.dumps({n: (t["shape"], [round(v, 2) for v in t["probe"]]) for n, t in tensors.items()},
                        sort_keys=True)
    return {
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "tensors": tensors,
        "digest": hashlib.sha256(coarse.encode()).hexdigest()[:16],  # for display only
    }


def check_base(saved: dict, model, where: str) -> None:
    """Refuse to use an artifact on a base whose fingerprint differs from the one it was made on."""
    current = base_fingerprint(model)
    problems = []
    if saved.get("parameters") != current["parameters"]:
        problems.append(f"{saved.get('parameters')} parameters, this model has {current['parameters']}")
    for name, entry in saved.get("tensors", {}).items():
        mine = current["tensors"].get(name)
        if mine is None:
            problems.append(f"tensor {name} missing")
        elif mine["shape"] != entry["shape"]:
            problems.append(f"tensor {name} is {entry['shape']}, here {mine['shape']}")
        elif not torch.allclose(torch.tensor(mine["probe"]), torch.tensor(entry["probe"]), rtol=2e-2, atol=2e-3):
            problems.append(f"tensor {name} holds different values")
    if problems:
        raise BaseMismatchError(
            f"{where} was trained for another base model ({'; '.join(problems[:3])}); its heads share "
            f"the base's embeddings and lm_head, so they cannot be used with this model. Train heads "
            f"for this model (python -m training.train_drafter --model-path ...) or pick its own folder."
        )


def save_artifact(folder: str | Path, config: dict, tensors: dict[str, torch.Tensor], weights_file: str) -> Path:
    """Write ``config.json`` and ``weights_file`` (floating tensors as fp16) into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stored = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous().cpu()
              for k, v in tensors.items()}
    save_file(stored, str(folder / weights_file))
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def read_config(folder: str | Path) -> dict:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise ArtifactError(f"{folder}: no {CONFIG_FILE} (is this a head folder?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None


def training_record(folder: str | Path) -> dict:
    """The ``training`` record a trained artifact keeps ({} if none): in config.json for the heads,
    in ``METADATA_FILE`` for an SpS draft model, whose config.json is the model's own."""
    for name in (CONFIG_FILE, METADATA_FILE):
        try:
            record = json.loads((Path(folder) / name).read_text())["training"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(record, dict):
            return record
    return {}


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, or from a torch pickle read with weights_only=True. A file
    that is empty, cut short or not of its format is refused with an error that names it."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        from methods.core.safetensors_header import DamagedFileError, read_header

        try:
            read_header(path)
            return load_file(str(path))
        except DamagedFileError as exc:
            raise ArtifactError(f"{exc}; replace it (download the head again, or train it again)") from None
        except Exception as exc:  # what the header check cannot see, e.g. an unsupported dtype
            raise ArtifactError(f"{path}: cannot read it as safetensors ({exc})") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(f"{path}: cannot read it as a torch state dict ({exc})") from None
    if not isinstance(state, dict):
        raise ArtifactError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def check_trained_base(config: dict, model, what: str, folder) -> None:
    """An artifact of ours shares the base's tensors, so it records the base it was trained on:
    refuse one that does not say, and one made on another base."""
    if "base_fingerprint" not in config:
        raise ArtifactError(f"{folder}/config.json shares the base's tensors but records no base_fingerprint")
    check_base(config["base_fingerprint"], model, f"{what} {folder}")


def find_weights(folder: Path, names: tuple[str, ...], what: str) -> Path:
    """The first of ``names`` present in ``folder`` (formats accept safetensors or a torch pickle)."""
    for name in names:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    raise ArtifactError(f"{folder}: no {what} weights ({' or '.join(names)})")


def check_draft_vocab(draft_vocab, vocab_size: int, where) -> None:
    """A trained artifact's draft vocabulary must name ids the target has."""
    if draft_vocab is not None and (draft_vocab.min() < 0 or draft_vocab.max() >= vocab_size):
        raise ArtifactError(f"{where}: draft_vocab holds ids outside the target's vocabulary of {vocab_size}")


def ready_for_drafting(module, base_model, folder, config: dict):
    """A loaded drafter module as every method uses it: on the base's device and dtype, frozen, in
    eval mode, bound to the base's shared tensors, and labelled with the folder it came from."""
    param = next(base_model.parameters())
    module.to(device=param.device, dtype=param.dtype)
    module.eval()
    module.requires_grad_(False)
    module.bind(base_model)
    module.source = str(folder)
    module.config = config
    return module
