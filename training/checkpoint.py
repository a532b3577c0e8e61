"""A training run's checkpoint, so that a run longer than one sitting is not lost.

The trainer (training/train_drafter.py) writes ``<out>/training-checkpoint.pt`` (or into
``--checkpoint-dir``) every few minutes and after every epoch: the trainable weights, the optimiser and schedule, the step and epoch, the
held-out metrics so far, and every random state the run draws from (the batch-order generator as
it was when the epoch began, torch's, and any generator the recipe keeps). ``--resume`` restores
all of it and replays the epoch's batch order up to where the run stopped, so a resumed run ends
with the same weights as one that never stopped (on the same machine and thread count). The file
goes once the artifact is written.

A checkpoint belongs to one command: resuming with other settings (another corpus, learning rate,
method option, ...) is refused, naming them. It is written to a temporary file and renamed, so a
crash while writing leaves the previous checkpoint intact. It holds only tensors, numbers,
strings and lists, and is read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

FILE = "training-checkpoint.pt"
# Options that do not change what is computed: they may differ on resume.
FREE_OPTIONS = ("resume", "threads", "no_progress", "checkpoint_minutes", "checkpoint_dir", "no_cache")


class CheckpointError(ValueError):
    pass


def settings_of(args) -> dict:
    return {k: v for k, v in sorted(vars(args).items()) if k not in FREE_OPTIONS}


def generator_states(recipe) -> dict:
    """Random generators the recipe keeps (e.g. EAGLE's feature noise), by attribute name."""
    states = {}
    for name, value in vars(recipe).items():
        if isinstance(value, torch.Generator):
            states[name] = value.get_state()
        elif isinstance(value, np.random.Generator):
            states[name] = json.dumps(value.bit_generator.state)
    return states


def restore_generators(recipe, states: dict) -> None:
    for name, state in states.items():
        value = getattr(recipe, name)
        if isinstance(value, torch.Generator):
            value.set_state(state)
        else:
            value.bit_generator.state = json.loads(state)


class Checkpoint:
    def __init__(self, out: Path, args, minutes: float):
        self.path = Path(out) / FILE
        self.settings = json.dumps(settings_of(args), default=str)
        self.interval = 60.0 * minutes
        self.last = time.monotonic()

    def exists(self) -> bool:
        return self.path.is_file()

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.interval

    def save(self, state: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        torch.save({**state, "settings": self.settings}, temporary)
        os.replace(temporary, self.path)
        self.last = time.monotonic()

    def load(self) -> dict:
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{self.path}: cannot read the checkpoint ({exc})") from None
        saved, mine = json.loads(state["settings"]), json.loads(self.settings)
        changed = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
        if changed:
            detail = ", ".join(f"--{k.replace('_', '-')} {saved.get(k)!r} -> {mine.get(k)!r}" for k in changed[:4])
            raise CheckpointError(f"{self.path} was written by a run with other settings ({detail}); resume with "
                                  f"the same command, or delete the checkpoint to start over")
        return state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
