"""Training recipes: one per trained method, all driven by training/train_drafter.py.

A recipe says which target hidden states it learns from, builds the trainable module on the frozen
base, computes the loss of a batch of corpus positions, measures held-out accuracy and saves the
artifact. The trainer owns everything else (corpus features, optimiser, schedule, seeds, progress,
epochs). Entries are "module:Class" strings, imported on first use.
"""

from __future__ import annotations

import importlib
import math

from tqdm.auto import tqdm

RECIPES: dict[str, str] = {
    "medusa": "training.recipes.medusa:MedusaRecipe",
    "hydra": "training.recipes.hydra:HydraRecipe",
    "eagle": "training.recipes.eagle:EagleRecipe",
    "eagle3": "training.recipes.eagle3:Eagle3Recipe",
    "space": "training.recipes.space:SpaceRecipe",
    "dflash": "training.recipes.dflash:DFlashRecipe",
    "sps": "training.recipes.sps:SpsRecipe",
}


def exact_batches(pieces, batch_size: int):
    """Batches of exactly ``batch_size`` items (the last one may be short) from ``pieces``, pairs
    (conversation, array of its items) taken in order; a conversation's items may be cut across
    two batches, so that an epoch has a known number of steps."""
    batch, size = [], 0
    for sequence, items in pieces:
        while len(items):
            part, items = items[: batch_size - size], items[batch_size - size:]
            batch.append((int(sequence), part))
            size += len(part)
            if size == batch_size:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def recipe_class(name: str):
    try:
        module_name, class_name = RECIPES[name].split(":")
    except KeyError:
        raise ValueError(f"no training recipe for {name!r}; available: {', '.join(RECIPES)}") from None
    return getattr(importlib.import_module(module_name), class_name)


class Recipe:
    """Interface of a recipe (see training/recipes/medusa.py for a complete one)."""

    name = "recipe"
    # Defaults the trainer uses when the command line does not override them.
    defaults: dict = {}
    betas = (0.9, 0.999)  # AdamW's
    clip_value = None  # clip gradients by value (EAGLE's recipe); None = no clipping
    # How the held-out "top1" list reads (README and progress lines).
    metric_label = "Held-out top-1 accuracy per head (head k guesses the token k + 2 ahead)"
    metric_names: tuple = ()
    # Scalar held-out metrics beside "top1" worth a column: key -> label.
    extra_metrics: dict = {}
    # Whether "top1"[k] is the share of positions whose first k + 1 drafted tokens are ALL right
    # (a chain draft's acceptance, as EAGLE's, EAGLE-3's, DFlash's and SpS's measure it) rather
    # than one head's accuracy on its own; the heads' recipes give the joint figure as "chain".
    top1_is_chain = False
    # What the artifact takes from the base instead of storing it (its README says so).
    shared_note = "the base's embeddings and lm_head are shared and not stored here."

    def metric_names_for(self, count: int) -> list[str]:
        return list(self.metric_names[:count]) or [f"head {k}" for k in range(count)]

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimiser steps in one pass over the training positions."""
        return math.ceil(len(self.train_positions) / batch_size)

    @classmethod
    def add_arguments(cls, group) -> None:
        """The method's own options (prefixed with --<method>-)."""

    def __init__(self, args) -> None:
        self.args = args

    def prepare(self, base) -> None:
        """Settle what depends on the base before its features are built (e.g. which layers)."""

    def request(self):
        """The HiddenStateRequest of the features this method learns from."""
        raise NotImplementedError

    def build(self, base, features, generator):
        """Create the trainable module (base frozen) and the training/held-out position sets."""
        raise NotImplementedError

    def train_batches(self, rng, batch_size: int):
        """Yield batches over the training positions for one epoch, in an order drawn from rng."""
        raise NotImplementedError

    def loss(self, batch):
        raise NotImplementedError

    def evaluate(self) -> dict:
        """Held-out metrics, e.g. {"top1": [per head]}."""
        raise NotImplementedError

    def heldout_progress(self, items, unit: str, total=None):
        """``items`` under a progress bar while ``evaluate`` measures them: SPACE's and SpS's
        held-out pass runs the target over every held-out conversation, many minutes on a CPU.
        The bar goes away when the pass ends (the epoch's line reports the figures)."""
        return tqdm(items, total=total, desc="held-out", unit=unit, leave=False,
                    disable=getattr(self.args, "no_progress", False))

    # The artifact's weights file (what --init-from reads back).
    weights_file = "model.safetensors"
    # The draft vocabulary of the artifact a run starts from (--init-from), which ``build`` keeps
    # instead of ranking the corpus's tokens again; the trainer sets it before ``build``.
    inherited_vocab = None

    def artifact_tensors(self) -> dict:
        """The tensors ``save`` writes, by the names it writes them under: the module's own (live:
        writing into them sets the module, which is how --init-from starts a run from an artifact)
        and the integer maps of its vocabulary. One list for saving and reading back."""
        raise NotImplementedError

    def start_as_identity(self, missing: set[str]) -> bool:
        """Called by --init-from when the artifact lacks exactly the tensors ``missing`` of this
        run's module (a deeper draft than the artifact's): set the layers they make up so that each
        passes its input through unchanged and return True, so that the run starts out computing
        what the artifact computed; False (the default) where this recipe cannot grow, and the run
        is refused."""
        return False

    def save(self, out, meta: dict) -> None:
        raise NotImplementedError
