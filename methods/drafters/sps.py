"""SpS: speculative sampling with a small draft model that shares the target's tokenizer.

Each step the draft model extends the context by gamma tokens, one at a time, keeping its own KV
cache; the engine verifies them as a chain. Greedy drafts are the draft model's argmax; at
temperature > 0 they are sampled from the draft's processed distribution q (the same
temperature/top-k/top-p pipeline as the target), and q travels with the tree so acceptance can
apply min(1, p/q).

gamma is fixed (``constant``) or follows transformers 4.37's ``heuristic`` schedule that
Spec-Bench ran: start at 5, +2 after a step where every draft was accepted, else -1 (floor 1).

``--drafter-path`` takes a model path/id, a draft trained here (``python -m
training.train_drafter --method sps``: K layers of their own on the target's embeddings, final norm
and lm_head, methods/heads/sps_draft.py), or ``self:N``: the target's own first N layers with its
embeddings, final norm and lm_head (no copy, no training). ``self:N`` makes SpS runnable on any
llama-family target out of the box. On the embedded model the default is the trained draft shipped
in data/drafters/ when there is one, else ``self:8``.

Where the target runs on the lean backend, so does the draft (its own LeanTarget and LeanCache,
weights shared, logits of the last row only); on hf it is the transformers forward with a
DynamicCache. Either way a greedy draft is the draft model's argmax and a sampled one is drawn
from its q.

A trained draft may carry a draft vocabulary (the corpus's most frequent answer tokens): it then
scores only those rows of the shared lm_head, and its q is zero on every other id. Verification
needs nothing more: acceptance min(1, p/q) and the residual max(0, p - q) are exact for any q, and
a greedy draft outside the vocabulary is simply never proposed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from transformers import DynamicCache

from methods.core.drafter import Drafter, DraftSession, StepResult, check_options, resolve_options
from methods.core.sampling import sample, target_probs
from methods.core.tree import DraftTree
from methods.heads.sps_draft import decoder_layers, draft_with_layers, is_sps_draft, load_sps_draft

# CPU: one draft token a step. The shipped 2-layer draft is right 31% of the time at depth 1 but
# only 10% two deep (held-out), and a draft token costs ~10% of a lean verification; the sweep
# (docs/methods.md, SpS) measured gamma 1 fastest, 2-4 ever slower.
CPU_DEFAULTS = {"gamma": 1}
GPU_DEFAULTS = {"gamma": 5}
MINIMUM = {"gamma": 1}
# Without --drafter-path on the embedded model, when no trained draft ships.
FALLBACK_DRAFT = "self:8"


class TokenizerMismatchError(ValueError):
    pass


def check_same_tokenizer(target_tokenizer, draft_tokenizer) -> None:
    """Drafts are token ids: both models must map text to the same ids."""
    if target_tokenizer is None or draft_tokenizer is None:
        return
    target_vocab = target_tokenizer.get_vocab()
    draft_vocab = draft_tokenizer.get_vocab()
    if target_vocab != draft_vocab:
        only_target = len(set(target_vocab.items()) - set(draft_vocab.items()))
        raise TokenizerMismatchError(
            f"the draft model's tokenizer differs from the target's ({only_target} of "
            f"{len(target_vocab)} target tokens map differently); SpS needs a draft model "
            f"trained with the same tokenizer"
        )


def truncated_self_draft(model, num_layers: int):
    """A draft model made of the target's first ``num_layers`` decoder layers (weights shared)."""
    layers = decoder_layers(model)
    if not 1 <= num_layers < len(layers):
        raise ValueError(f"self:N needs 1 <= N < {len(layers)} (the target's layer count)")
    return draft_with_layers(model, list(layers)[:num_layers])


def shipped_draft() -> Path:
    from methods.drafters.trained import SHIPPED

    return SHIPPED / "sps"


def default_drafter_path(args) -> Optional[str]:
    """--drafter-path as given; on the embedded model without one, the shipped trained draft when
    it exists, else self:8; on any other model None (the user must name one)."""
    from methods.core.model_loading import EMBEDDED

    path = getattr(args, "drafter_path", None)
    if path:
        return path
    if getattr(args, "model_path", EMBEDDED) not in (EMBEDDED, "", None):
        return None
    folder = shipped_draft()
    return str(folder) if (folder / "config.json").is_file() else FALLBACK_DRAFT


def recorded_path(path: str) -> str:
    """The draft as the answers record it: a folder inside the checkout relative to it, so that
    the shipped draft's record is the same on every machine."""
    from methods.core.paths import REPO_ROOT

    folder = Path(path)
    if folder.is_absolute() and folder.is_relative_to(REPO_ROOT):
        return str(folder.relative_to(REPO_ROOT))
    return path


def lean_draft(draft_model):
    """The draft run by the lean backend, or None where it cannot run it (then transformers runs
    it). Its weights stay where they are: they are the target's, or few."""
    from methods.core.backends.lean import LeanTarget, unsupported_reason

    if unsupported_reason(draft_model) is not None:
        return None
    from methods.heads.row_scores import layers_in_half, row_scores

    lean = LeanTarget(draft_model, move_weights=False)
    lean.half_layers = layers_in_half  # its decoder layers read half-precision copies while drafting
    vocab = getattr(draft_model, "draft_vocab", None)
    if vocab is not None:
        # Its draft vocabulary's rows through the heads' product, which reads them in half
        # precision while drafting: 9.4 MB a draft token instead of 18.9 (8,192 rows).
        lean.restrict_output(vocab, scores=row_scores)
    return lean


class DraftModelDrafter(Drafter):
    name = "sps"

    def __init__(self, draft_model, gamma: int = 5, schedule: str = "constant", drafter_path: str = "") -> None:
        if gamma < 1:
            raise ValueError("--sps-gamma must be at least 1")
        if schedule not in ("constant", "heuristic"):
            raise ValueError("--sps-schedule must be constant or heuristic")
        self.draft_model = draft_model
        self.initial_gamma = gamma
        self.schedule = schedule
        self.drafter_path = drafter_path
        self.gamma = gamma
        self._lean = None  # the draft's LeanTarget, made on the first turn on the lean backend
        self._lean_tried = False
        # Target ids the draft scores, in the order of its logits (None: the whole vocabulary).
        self.draft_vocab = getattr(draft_model, "draft_vocab", None)
        self.vocab_size = int(draft_model.get_output_embeddings().weight.shape[0])

    def _lean_runner(self):
        if not self._lean_tried:
            # Made after the engine's own target (a turn begins after it exists), so that the
            # layers self:N shares are already in the target's lean form and are not moved twice.
            self._lean_tried = True
            self._lean = lean_draft(self.draft_model)
        return self._lean

    # ------------------------------------------------------------------ per turn
    def begin(self, prompt_ids: list[int], session: DraftSession) -> None:
        super().begin(prompt_ids, session)
        self.lean = self._lean_runner() if session.backend == "lean" else None
        self.cache = self.lean.new_cache() if self.lean is not None else DynamicCache(config=self.draft_model.config)
        self.cached: list[int] = []  # tokens whose KV the draft cache holds
        self.gamma = self.initial_gamma  # like transformers 4.37: every turn starts afresh
        self.device = next(self.draft_model.parameters()).device

    @torch.inference_mode()
    def _forward(self, tokens: list[int]) -> torch.Tensor:
        """The draft's logits after ``tokens``: over its draft vocabulary where it has one."""
        if self.lean is not None:
            logits = self.lean.extend(self.cache, tokens)
            self.cached.extend(tokens)
            return logits
        start = len(self.cached)
        ids = torch.tensor([tokens], dtype=torch.long, device=self.device)
        out = self.draft_model(input_ids=ids, cache=self.cache, use_cache=True, logits_to_keep=1,
                               position_ids=torch.arange(start, start + len(tokens), device=self.device).unsqueeze(0))
        self.cached.extend(tokens)
        logits = out.logits[0, -1]
        return logits if self.draft_vocab is None else logits[self.draft_vocab]

    def _token(self, column: int) -> int:
        return column if self.draft_vocab is None else int(self.draft_vocab[column])

    def _full_q(self, q: torch.Tensor) -> torch.Tensor:
        """q over the draft vocabulary as a distribution over every target id (zero elsewhere)."""
        if self.draft_vocab is None:
            return q
        full = q.new_zeros(self.vocab_size)
        full[self.draft_vocab.to(q.device)] = q
        return full

    def propose(self, context: list[int], max_depth: int) -> DraftTree:
        gamma = min(int(self.gamma), max_depth)
        if gamma < 1:
            return DraftTree.empty()
        config = self.session.config
        logits = self._forward(context[len(self.cached):])
        drafts: list[int] = []
        q_rows: list[torch.Tensor] = []
        for i in range(gamma):
            if config.greedy:
                token = self._token(int(logits.argmax()))
            else:
                q = target_probs(logits, config)
                token = self._token(sample(q, self.session.generator))
                q_rows.append(self._full_q(q))
            drafts.append(token)
            if i + 1 < gamma:
                logits = self._forward([token])
        probs = torch.stack(q_rows) if q_rows else None
        return DraftTree.chain(drafts, draft_probs=probs)

    def accept(self, step: StepResult) -> None:
        # Keep the draft cache only for tokens that are still part of the context.
        keep = 0
        limit = min(len(self.cached), len(step.context))
        while keep < limit and self.cached[keep] == step.context[keep]:
            keep += 1
        if keep < len(self.cached):
            if self.lean is not None:
                self.cache.length = keep  # rows past it are written over by the next forward
            else:
                self.cache.crop(keep - len(self.cached))
            del self.cached[keep:]
        if self.schedule == "heuristic" and len(step.tree):
            if len(step.accepted_nodes) == len(step.tree):
                self.gamma += 2
            else:
                self.gamma = max(1, self.gamma - 1)

    def end(self) -> None:
        self.cache = None
        self.cached = []

    def max_draft_length(self) -> Optional[int]:
        # The heuristic schedule lengthens gamma by 2 after every fully accepted draft: no bound.
        return None if self.schedule == "heuristic" else self.initial_gamma

    def params(self) -> dict:
        return {"drafter": self.drafter_path, "gamma": self.initial_gamma, "schedule": self.schedule,
                "draft_vocab": None if self.draft_vocab is None else int(len(self.draft_vocab))}

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--drafter-path", default=None,
                           help="SpS draft model: a local folder, hub id or .gguf file sharing the "
                                "target's tokenizer, a draft trained by training/train_drafter.py --method "
                                "sps, or self:N for the target's first N layers (default on the embedded "
                                f"model: the trained draft shipped for it, else {FALLBACK_DRAFT})")
        group.add_argument("--sps-gamma", type=int, default=None,
                           help=f"draft tokens per step (default: {CPU_DEFAULTS['gamma']} on CPU, "
                                f"{GPU_DEFAULTS['gamma']} on GPU; the start value for the heuristic schedule)")
        group.add_argument("--sps-schedule", choices=["constant", "heuristic"], default="constant",
                           help="constant gamma, or transformers 4.37's heuristic (+2 when all "
                                "drafts are accepted, else -1)")

    @classmethod
    def check_args(cls, args) -> None:
        from methods.core.model_loading import check_model_source

        check_options(args, "sps", MINIMUM)
        path = default_drafter_path(args)
        if not path:
            raise ValueError("method sps needs --drafter-path (a draft model, or self:N); a trained draft "
                             "ships only for the embedded model")
        if path.startswith("self:"):
            self_layers(path)
        else:
            check_model_source(path, option="--drafter-path")

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "DraftModelDrafter":
        from methods.core.model_loading import load_model

        cls.check_args(args)
        path: str = default_drafter_path(args)
        if path.startswith("self:"):
            draft = truncated_self_draft(model, self_layers(path))
        elif is_sps_draft(path):
            draft = load_sps_draft(path, model)
        else:
            device = next(model.parameters()).device
            dtype = next(model.parameters()).dtype
            dtype_name = str(dtype).replace("torch.", "")
            loaded = load_model(path, dtype=dtype_name, device=str(device))
            check_same_tokenizer(tokenizer, loaded.tokenizer)
            draft = loaded.model
        options = resolve_options(args, "sps", model, CPU_DEFAULTS, GPU_DEFAULTS, MINIMUM)
        return cls(draft, gamma=options["gamma"], schedule=getattr(args, "sps_schedule", "constant"),
                   drafter_path=recorded_path(path))


def self_layers(path: str) -> int:
    """N of ``--drafter-path self:N`` (checked against the target's layer count when it loads)."""
    try:
        layers = int(path.split(":", 1)[1])
    except ValueError:
        raise ValueError(f"--drafter-path {path!r}: expected self:N with N an integer") from None
    if layers < 1:
        raise ValueError(f"--drafter-path {path!r}: N must be at least 1")
    return layers
