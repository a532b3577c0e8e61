"""``--init-from``: start a training run from a trained artifact's weights instead of from scratch.

A trainer's checkpoint lives in a cache that may not outlive the machine, while a shipped artifact
is committed: starting from the artifact lets a later run train a drafter further (more epochs, a
larger corpus) without repeating what it already learned. The optimiser, schedule and batch order
start afresh (a warm restart of the cosine schedule); only the module's weights are taken.

The artifact must be this method's, made for this base (weight fingerprint), with exactly the
tensors the recipe would write, of the same shapes; its integer tensors (draft vocabulary, d2t,
t2d) must equal the recipe's, since they come from the corpus and the options: weights learned for
another vocabulary would score the wrong tokens. Anything else is refused with the reason.
"""

from __future__ import annotations

from pathlib import Path

import torch

from methods.core.file_hash import file_sha256
from methods.heads.artifact import ArtifactError, base_fingerprint, load_state, read_config, training_record


class WarmStartError(ValueError):
    """The artifact cannot start this run."""


def _names(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def warm_start(recipe, base, folder: str | Path) -> dict:
    """Copy the artifact in ``folder`` into the recipe's module (after ``recipe.build``); returns
    what the new artifact records of it. Raises WarmStartError with the reason."""
    folder = Path(folder)
    try:
        config = read_config(folder)
    except ArtifactError as exc:
        raise WarmStartError(f"--init-from {folder}: {exc}") from None
    if config.get("method") != recipe.name:
        found = config.get("method") or "no method of ours"
        raise WarmStartError(f"--init-from {folder}: holds {found!r}, not a {recipe.name} artifact trained here")
    if config.get("base_fingerprint") != base_fingerprint(base):
        raise WarmStartError(f"--init-from {folder}: made for another base model (weight fingerprint differs)")
    expected = recipe.artifact_tensors()
    path = folder / recipe.weights_file
    if not path.is_file():
        raise WarmStartError(f"--init-from {folder}: no {recipe.weights_file}")
    try:
        stored = load_state(path)
    except ArtifactError as exc:
        raise WarmStartError(f"--init-from {folder}: {exc}") from None
    missing, extra = set(expected) - set(stored), set(stored) - set(expected)
    if missing or extra:
        parts = ([f"lacks {_names(missing)}"] if missing else []) + ([f"has no place for {_names(extra)}"] if extra else [])
        raise WarmStartError(f"--init-from {folder}: {' and '.join(parts)} (trained with other {recipe.name} options?)")
    for name, live in expected.items():
        value = stored[name]
        if tuple(value.shape) != tuple(live.shape):
            raise WarmStartError(f"--init-from {folder}: {name} is {tuple(value.shape)}, this run's is "
                                 f"{tuple(live.shape)} (trained with other {recipe.name} options?)")
        if not live.is_floating_point() and not torch.equal(value.to(live.dtype).cpu(), live.cpu()):
            raise WarmStartError(f"--init-from {folder}: its {name} differs from this run's (another corpus, or "
                                 f"another draft vocabulary size): its weights would score other tokens")
    with torch.no_grad():
        for name, live in expected.items():
            if live.is_floating_point():
                live.copy_(stored[name].to(device=live.device, dtype=live.dtype))
    prior = training_record(folder)
    return {"weights_sha256": file_sha256(path),
            "corpus_sha256": prior.get("corpus_sha256"), "steps": prior.get("steps"), "epochs": prior.get("epochs")}
