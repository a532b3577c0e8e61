"""``--init-from``: start a training run from a trained artifact's weights instead of from scratch.

A trainer's checkpoint lives in a cache that may not outlive the machine, while a shipped artifact
is committed: starting from the artifact lets a later run train a drafter further (more epochs, a
larger corpus) without repeating what it already learned. The optimiser, schedule and batch order
start afresh (a warm restart of the cosine schedule); only the module's weights are taken.

The artifact must be this method's, made for this base (weight fingerprint), with exactly the
tensors the recipe would write, of the same shapes; its integer tensors (draft vocabulary, d2t,
t2d) must equal the recipe's: weights learned for another vocabulary would score the wrong tokens.
The trainer therefore hands the artifact's vocabulary (``artifact_vocabulary``) to the recipe,
which keeps it instead of ranking the new corpus's tokens (a run on the next slice of the corpus
would rank a slightly different set); a run asking for another vocabulary size is refused.
A recipe may let a deeper draft start from a shallower one (``Recipe.start_as_identity``: DFlash's
added layers start as identities, so the run begins where the artifact was). Anything else is
refused with the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from methods.core.file_hash import file_sha256
from methods.heads.artifact import ArtifactError, base_fingerprint, load_state, read_config, training_record


class WarmStartError(ValueError):
    """The artifact cannot start this run."""


def artifact_vocabulary(recipe_cls, base, folder: str | Path) -> np.ndarray | None:
    """The ascending target ids an artifact of ``recipe_cls`` made for ``base`` scores (its
    ``draft_vocab`` ids, or the true entries of EAGLE-3's ``t2d`` mask), for the new run to keep;
    None when it stores none, or is not such an artifact, or cannot be read (``warm_start`` then
    says why)."""
    path = Path(folder) / recipe_cls.weights_file
    try:
        config = read_config(Path(folder))
        if config.get("method") != recipe_cls.name or config.get("base_fingerprint") != base_fingerprint(base):
            return None
        stored = load_state(path) if path.is_file() else {}
    except ArtifactError:
        return None
    if "draft_vocab" in stored:
        return stored["draft_vocab"].to(torch.int64).numpy()
    if "t2d" in stored and stored["t2d"].dtype == torch.bool:
        return torch.nonzero(stored["t2d"]).flatten().numpy()
    return None


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
    # A deeper draft than the artifact's: the recipe starts the added layers as identities.
    grown = bool(missing) and not extra and recipe.start_as_identity(missing)
    if grown:
        expected = {name: live for name, live in expected.items() if name not in missing}
    elif missing or extra:
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
    record = {"weights_sha256": file_sha256(path),
              "corpus_sha256": prior.get("corpus_sha256"), "steps": prior.get("steps"), "epochs": prior.get("epochs")}
    if grown:
        record["started_as_identity"] = len(missing)  # tensors of the added layers
    return record
