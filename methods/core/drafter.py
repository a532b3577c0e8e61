"""The drafter contract: a drafter proposes, the engine verifies.

A method is a small class with three calls per turn:

    begin(prompt_ids, session)     once, after the engine has prefilled the target on the prompt
    propose(context, max_depth)    -> DraftTree hanging under context[-1] (the root)
    accept(step)                   what the target accepted, with the logits it computed

The engine owns everything else (masks, positions, cache, acceptance, stopping, timing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from methods.core.hidden_states import HiddenStateRequest, HiddenStates
from methods.core.tree import DraftTree


def device_defaults(model, cpu: dict, gpu: dict) -> dict:
    """A drafter's defaults for where the target runs: on a CPU every extra token in a forward
    costs time, on a GPU it is nearly free, so the two sets differ (see docs/methods.md)."""
    return gpu if next(model.parameters()).device.type == "cuda" else cpu


def option_flag(prefix: str, name: str) -> str:
    """The command-line spelling of a method option: ("pld", "num_pred") -> --pld-num-pred."""
    return f"--{prefix}-{name}".replace("_", "-")


def check_options(args, prefix: str, minimum: dict) -> None:
    """Refuse a given option below its minimum, naming it (``minimum``: option name -> least
    allowed value). Only options that were given are checked; the defaults are valid."""
    for name, least in minimum.items():
        value = getattr(args, f"{prefix}_{name}", None)
        if value is not None and value < least:
            raise ValueError(f"{option_flag(prefix, name)} {value}: must be at least {least}")


def resolve_options(args, prefix: str, model, cpu: dict, gpu: dict, minimum: dict | None = None) -> dict:
    """A drafter's options from the command line, each one not given (None) taken from the
    defaults for the target's device. A given value is used as it is, 0 included, or refused
    if it is below ``minimum`` (never silently replaced, as ``args.x or default`` would)."""
    check_options(args, prefix, minimum or {})
    resolved = {}
    for name, default in device_defaults(model, cpu, gpu).items():
        value = getattr(args, f"{prefix}_{name}", None)
        resolved[name] = default if value is None else value
    return resolved


@dataclass
class DecodingConfig:
    """One target distribution for every method: temperature, then top-k, then top-p."""

    max_new_tokens: int = 1024
    temperature: float = 0.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    stop_token_ids: frozenset[int] = frozenset()
    stop_strings: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class DraftSession:
    """What a drafter may use during one turn. Created by the engine."""

    model: Any  # the target model (for drafters that reuse its embeddings / lm_head)
    config: DecodingConfig
    device: torch.device
    dtype: torch.dtype
    vocab_size: int
    generator: Optional[torch.Generator] = None  # the engine's RNG for sampled drafts
    # What the drafter's hidden_state_request asked for, over the prefilled prompt, i.e.
    # prompt[:-1] (None for a drafter that asks for nothing).
    prompt_features: Optional[HiddenStates] = None
    # How the target's forwards run ("hf" or "lean"): a drafter with a model of its own (SpS) runs
    # it the same way, so the draft gets the lean loop's savings where the target does.
    backend: str = "hf"


def path_rows(accepted_nodes: list[int]) -> list[int]:
    """The logits/feature rows of the root and the accepted path, root first: node j is row
    j + 1, since row 0 is the root. Accepted nodes [0, 2, 5] -> rows [0, 1, 3, 6]; the last row
    chose the step's own next token."""
    return [0] + [node + 1 for node in accepted_nodes]


@dataclass
class StepResult:
    """One verification step, as the engine tells it to the drafter."""

    tree: DraftTree
    accepted_nodes: list[int]  # accepted draft nodes, the root's child first
    committed: list[int]  # tokens committed by this step: accepted drafts + the target's own token
    logits: torch.Tensor  # raw target logits, rows [root, node 0, ..., node n-1]
    context: list[int]  # the whole sequence after this step (prompt + generated)
    finished: bool = False  # the turn ends with this step (stop token, stop string or cap)
    # Everything the drafter's hidden_state_request asked for, rows aligned with ``logits``.
    features: Optional[HiddenStates] = None

    @property
    def path_rows(self) -> list[int]:
        """Rows of the root and the accepted path (see path_rows)."""
        return path_rows(self.accepted_nodes)


class Drafter:
    """Base class. Subclasses set ``name`` and override what they need."""

    name: str = "drafter"
    # Target hidden states the drafter reads (methods/core/hidden_states.py); None = nothing.
    hidden_state_request: Optional[HiddenStateRequest] = None
    # A rule replacing the engine's lossless sampling acceptance at T > 0, called as
    # rule(tree, logits, config, generator) -> Acceptance. Only lossy options set it.
    sampling_acceptance = None
    # True only for options that knowingly change the output distribution (e.g. typical
    # acceptance); such runs are marked lossy in their records.
    lossy: bool = False

    def begin(self, prompt_ids: list[int], session: DraftSession) -> None:
        self.session = session

    def propose(self, context: list[int], max_depth: int) -> DraftTree:
        raise NotImplementedError

    def accept(self, step: StepResult) -> None:
        pass

    def end(self) -> None:
        """The turn is over (release per-turn state such as a draft model's cache)."""

    def params(self) -> dict[str, Any]:
        """The method's parameters, recorded with every answer."""
        return {}

    # ---- the longest draft: every drafter declares it (the runner records it with the
    # method's parameters; system efficiency and the verification cost curve read it) ----
    def max_draft_length(self) -> Optional[int]:
        """The longest chain of draft tokens one step may propose (the tree's depth, root not
        counted), as configured: the most tokens a step can accept before the target's own.
        None only where no maximum exists (a schedule that lengthens the draft without bound).
        Every drafter must say: there is no safe default, and a guess would overstate or hide
        its system efficiency."""
        raise NotImplementedError(f"{type(self).__name__} does not declare max_draft_length()")

    def max_draft_tokens(self) -> Optional[int]:
        """The most draft nodes one verification forward may carry besides the root (a tree's
        size, auxiliary nodes such as lookahead's window or SPACE's masks included). A chain
        drafter's is its max_draft_length, the default; tree drafters override it."""
        return self.max_draft_length()

    def turn_stats(self) -> dict[str, int]:
        """Counts of the turn just generated that only the drafter knows (e.g. which source
        supplied each draft); the runner records them per turn as ``drafter_stats``. Empty: none."""
        return {}

    # ---- command line: the runner asks every method for its options ----
    @classmethod
    def add_arguments(cls, group) -> None:
        """Add this method's options to an argparse argument group (names unique per method)."""

    @classmethod
    def check_args(cls, args) -> None:
        """Cheap checks of this method's options (values, files), run before the target model
        loads, so that a bad option is refused at once instead of after minutes of loading.
        Raises ValueError naming the option."""

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "Drafter":
        """Build the drafter from parsed options, the loaded target model and its tokenizer."""
        return cls()


@dataclass
class TurnStats:
    """Statistics of one generated turn."""

    new_tokens: int = 0
    decoding_steps: int = 0
    accept_lengths: list[int] = field(default_factory=list)
    prefill_time: float = 0.0
    draft_time: float = 0.0
    verify_time: float = 0.0
    wall_time: float = 0.0
    draft_tokens: int = 0  # candidate nodes proposed over the turn
    forward_tokens: int = 0  # tokens sent through the target in verification forwards
    # Per committed token (1:1 with the turn's tokens): the gap between the two largest raw
    # logits of the target row that chose it. A small gap is where rounding can flip an argmax.
    margins: list[float] = field(default_factory=list)
    # Why the turn ended: "stop" (a stop token or string), "max_new_tokens", or "context_limit"
    # (prompt and answer fill the model's context: the answer is cut short).
    stop_reason: str = ""
