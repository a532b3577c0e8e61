"""What the trained drafters (Medusa, Hydra, EAGLE, EAGLE-2) share on the command line.

- The artifacts shipped for the embedded model live in ``data/drafters/<model>/<kind>/``; on any
  other model the user names a folder, and a missing one is a clear error, never a traceback.
- Medusa and Hydra offer the same lossy typical acceptance, with the same three options.
- A drafter records where its weights came from; the shipped ones by their repository path, so
  that the record is the same on every machine.
"""

from __future__ import annotations

import argparse
import functools
import math
from pathlib import Path

from methods.core.acceptance import accept_typical
from methods.core.drafter import resolve_options
from methods.core.static_tree import StaticTree, parse_choices
from methods.core.model_loading import EMBEDDED, EMBEDDED_MODEL_ID
from methods.core.paths import REPO_ROOT, SHIPPED_DRAFTERS
from methods.heads.artifact import ArtifactError

SHIPPED = SHIPPED_DRAFTERS / EMBEDDED_MODEL_ID


def train_command(kind: str) -> str:
    return f"python -m training.train_drafter --method {kind} --model-path embedded --out data/drafters/{EMBEDDED_MODEL_ID}/{kind}"


def check_folder_option(args, flag: str, what: str) -> None:
    """Refuse a given folder option that names no folder, before the model loads."""
    path = getattr(args, flag.lstrip("-").replace("-", "_"), None)
    if path is not None and not Path(path).is_dir():
        raise ValueError(f"{flag} {path}: no such folder ({what})")


def artifact_folder(args, method: str, kind: str, flag: str, shipped: Path | None = None) -> Path:
    """The folder given with ``flag``, else the one shipped for the embedded model."""
    path = getattr(args, flag.lstrip("-").replace("-", "_"), None)
    if path is not None:
        return Path(path)
    if getattr(args, "model_path", EMBEDDED) not in (EMBEDDED, "", None):
        raise ArtifactError(f"--method {method} on {args.model_path}: give its {kind} folder with {flag}; "
                            f"trained {kind} weights ship only for the embedded model")
    folder = shipped if shipped is not None else SHIPPED / kind
    if not folder.is_dir():
        raise ArtifactError(f"--method {method}: no {kind} weights for the embedded model yet (expected in "
                            f"{folder}); train them with `{train_command(kind)}` or give {flag}")
    return folder


def recorded_source(weights) -> str:
    source = Path(getattr(weights, "source", "in memory"))
    if source.is_absolute() and source.is_relative_to(REPO_ROOT):
        source = source.relative_to(REPO_ROOT)
    return str(source)


# ---------------------------------------------------------------------- typical acceptance (lossy)
def add_typical_arguments(group, prefix: str) -> None:
    group.add_argument(f"--{prefix}-typical", action=argparse.BooleanOptionalAction, default=False,
                       help="typical acceptance at temperature > 0 instead of lossless rejection "
                            "sampling; LOSSY, the run is recorded as lossy")
    group.add_argument(f"--{prefix}-posterior-threshold", type=float, default=0.09,
                       help="typical acceptance: epsilon, the hard probability threshold")
    group.add_argument(f"--{prefix}-posterior-alpha", type=float, default=0.3,
                       help="typical acceptance: delta, the entropy-scaled threshold factor")


def check_typical_options(args, prefix: str) -> None:
    """Refuse typical-acceptance thresholds outside their range (NaN included) before the model
    loads: epsilon is a probability, delta a non-negative factor."""
    threshold = getattr(args, f"{prefix}_posterior_threshold", 0.09)
    alpha = getattr(args, f"{prefix}_posterior_alpha", 0.3)
    if not 0 <= threshold <= 1:  # false for NaN as well
        raise ValueError(f"--{prefix}-posterior-threshold {threshold}: must be a probability in [0, 1]")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"--{prefix}-posterior-alpha {alpha}: must be a finite number >= 0")


def typical_options(args, prefix: str) -> dict:
    check_typical_options(args, prefix)
    return {"typical": bool(getattr(args, f"{prefix}_typical", False)),
            "posterior_threshold": getattr(args, f"{prefix}_posterior_threshold", 0.09),
            "posterior_alpha": getattr(args, f"{prefix}_posterior_alpha", 0.3)}


class TypicalAcceptance:
    """Mixin: sets the drafter's lossy typical rule when asked for, and records it."""

    def set_typical(self, typical: bool, posterior_threshold: float, posterior_alpha: float) -> None:
        self.typical, self.posterior_threshold, self.posterior_alpha = typical, posterior_threshold, posterior_alpha
        self.lossy = typical
        if typical:
            self.sampling_acceptance = functools.partial(
                accept_typical, posterior_threshold=posterior_threshold, posterior_alpha=posterior_alpha)

    def typical_params(self) -> dict:
        return {"typical": self.typical,
                **({"posterior_threshold": self.posterior_threshold, "posterior_alpha": self.posterior_alpha}
                   if self.typical else {})}


# ---------------------------------------------------------------------- static trees (choices lists)
class ChoicesOption:
    """A static-tree drafter's ``--PREFIX-choices``: the published tree (the GPU default), ``cpu``
    (the CPU default, sized for the embedded model) or a literal list of rank paths."""

    def __init__(self, prefix: str, published_name: str, published: list, cpu: list, published_text: str):
        self.prefix, self.published_text = prefix, published_text
        self.named = {published_name: published, "cpu": cpu}
        self.gpu_defaults, self.cpu_defaults = {"choices": published_name}, {"choices": "cpu"}

    def add_argument(self, group) -> None:
        published = next(iter(self.named))
        group.add_argument(f"--{self.prefix}-choices", default=None,
                           help=f"candidate tree: '{published}' ({self.published_text}, GPU default), 'cpu' "
                                f"({len(self.named['cpu'])} nodes, CPU default, sized for the embedded model) or a "
                                f"literal list of rank paths such as '[[0], [0, 0], [1]]'")

    def check(self, args) -> None:
        """Refuse a malformed literal tree before the model loads."""
        value = getattr(args, f"{self.prefix}_choices", None)
        if value is not None and value not in self.named:
            try:
                StaticTree(parse_choices(value))
            except ValueError as exc:
                raise ValueError(f"--{self.prefix}-choices: {exc}") from None

    def resolve(self, args, model) -> tuple[list, str]:
        """The tree and the name recorded with the answers ("custom" for a literal)."""
        name = resolve_options(args, self.prefix, model, self.cpu_defaults, self.gpu_defaults)["choices"]
        if name in self.named:
            return self.named[name], name
        return parse_choices(name), "custom"
