"""SAM-Decoding (Hu et al., 2024): drafts from the longest suffix match of two suffix automata,
another drafter where neither matches well.

Two automata (methods/drafters/suffix_automaton.py) follow the text:

- dynamic: the current turn's text (prompt, then every committed token), rebuilt each turn;
- static: a corpus (by default the one the project generated with the embedded model, its train
  split, tokenized with the target's tokenizer: the documents of REST's default datastore), built
  once, cached and memory-mapped; only its match state is reset each turn and fed every token.

Each step, as the paper's hybrid does (its published draft.py):

    m_dyn    = length of the longest suffix of the text that occurred earlier in the text
    m_static = length of the longest suffix of the text that occurs in the corpus - STATIC_BIAS
    if max(m_dyn, m_static) >= threshold:
        chain draft = the tokens that followed the match's occurrence, from the dynamic automaton
                      when m_dyn >= m_static (ties prefer the text itself), else from the static one
    else:
        the fallback drafter's draft (Token Recycling by default; EAGLE-2 in Spec-Bench's SAMD[EAGLE2])

The chain is at most ``max_draft`` tokens (the paper's n_predicts, which counts the root too). The
fallback drafter is told begin/accept/end on every step, whoever drafted, so stateful fallbacks
(Recycling's matrix, EAGLE's draft cache) see the whole text; SAM-Decoding updates its tree model
from every step in the same way. The drafts are deterministic, so greedy output is the target's
and at T > 0 the engine's multi-candidate rejection sampling (q one-hot) is lossless.

Where the paper pads a short chain with token 0 to a fixed length (for its fixed-shape kernels), we
verify the chain as it is; a retrieval that yields no token at all falls back instead of
verifying nothing. The draft sources of each turn are counted (``turn_stats``) and the runner
records them with the answer.
"""

from __future__ import annotations

from typing import Any, Optional

from methods.core.drafter import DraftSession, Drafter, StepResult, check_options, resolve_options
from methods.core.hidden_states import request_of
from methods.core.tree import DraftTree
from methods.drafters.rest_datastore import NO_CORPUS, check_corpus_option, load_corpus_option
from methods.drafters.suffix_automaton import (MAGIC, StaticMatcher, StaticSuffixAutomaton, SuffixAutomaton,
                                               corpus_automaton, read_static)

# SAM-Decoding's published configuration, run by Spec-Bench: n_predicts 40 (root + 39 drafted
# tokens), len_threshold 5, len_bias 5.
GPU_DEFAULTS = {"max_draft": 39, "threshold": 5}
# Measured on the 2-core CPU, lean backend (training/sweep_drafter.py, docs/methods.md): with a short
# chain the verify stays cheap, and a match of 2 tokens already predicts well enough to beat the
# fallback (threshold 2: 1.46x with eagle2 behind it, threshold 3: 1.29x).
CPU_DEFAULTS = {"max_draft": 8, "threshold": 2}
MINIMUM = {"max_draft": 1, "threshold": 1}
# The paper's len_bias: a static match must be this much longer than a dynamic one to be used
# (the text's own earlier words predict it better than another document does).
STATIC_BIAS = 5
# The fallback when none is named: EAGLE-2 wherever an EAGLE draft is at hand (the embedded
# model's shipped one, or --eagle-path), as in Spec-Bench's SAMD[EAGLE2]; else Token Recycling,
# which needs no training and so works on any target.
TRAINED_FALLBACK = "eagle2"
DEFAULT_FALLBACK = "recycling"
NO_FALLBACK = "none"
SOURCES = ("dynamic", "static", "fallback", "none")


def _longest(own: int, fallback: Optional[Drafter], of: str) -> Optional[int]:
    """The larger of the automaton's bound and the fallback's (None: the fallback has none)."""
    if fallback is None:
        return own
    theirs = getattr(fallback, of)()
    return None if theirs is None else max(own, theirs)


class SamdDrafter(Drafter):
    name = "samd"

    def __init__(self, static: Optional[StaticSuffixAutomaton] = None, fallback: Optional[Drafter] = None,
                 max_draft: int = 39, threshold: int = 5, static_bias: int = STATIC_BIAS,
                 fallback_name: str = "", corpus_name: str = "") -> None:
        if max_draft < 1 or threshold < 1:
            raise ValueError("samd needs --samd-max-draft >= 1 and --samd-threshold >= 1")
        self.static = static
        self.fallback = fallback
        self.max_draft, self.threshold, self.static_bias = max_draft, threshold, static_bias
        self.fallback_name = fallback_name or (fallback.name if fallback is not None else NO_FALLBACK)
        self.corpus_name = corpus_name or (NO_CORPUS if static is None else "in memory")
        self.dynamic = SuffixAutomaton()
        self.matcher = StaticMatcher(static) if static is not None else None
        # The fallback's needs become ours: the hidden states it reads, and a lossy acceptance rule
        # it was asked for (applied to every step, whoever drafted, and recorded as lossy).
        self.hidden_state_request = request_of(fallback) if fallback is not None else None
        self.sampling_acceptance = getattr(fallback, "sampling_acceptance", None)
        self.lossy = bool(getattr(fallback, "lossy", False))
        self.counts = dict.fromkeys(SOURCES, 0)  # this turn
        self.last_source = "none"

    # ------------------------------------------------------------------ per turn
    def begin(self, prompt_ids: list[int], session: DraftSession) -> None:
        super().begin(prompt_ids, session)
        self.dynamic = SuffixAutomaton()
        self.dynamic.extend(prompt_ids)
        if self.matcher is not None:
            self.matcher.reset()
            self.matcher.feed(prompt_ids)
        self.counts = dict.fromkeys(SOURCES, 0)
        if self.fallback is not None:
            self.fallback.begin(prompt_ids, session)

    def accept(self, step: StepResult) -> None:
        self.dynamic.extend(step.committed)
        if self.matcher is not None:
            self.matcher.feed(step.committed)
        if self.fallback is not None:
            self.fallback.accept(step)

    def end(self) -> None:
        if self.fallback is not None:
            self.fallback.end()

    # ------------------------------------------------------------------ drafting
    def propose(self, context: list[int], max_depth: int) -> DraftTree:
        self._catch_up(context)
        tree, source = self._draft(context, max_depth)
        self.last_source = source
        self.counts[source] += 1
        return tree

    def _catch_up(self, context: list[int]) -> None:
        """Feed whatever of the context the automata have not seen (only when a caller skipped
        accept); they always stand for the whole context, root included."""
        seen = len(self.dynamic)
        if seen < len(context):
            self.dynamic.extend(context[seen:])
            if self.matcher is not None:
                self.matcher.feed(context[seen:])

    def match_lengths(self) -> tuple[int, int]:
        """(dynamic match length, static match length before the bias)."""
        return self.dynamic.match_length, (self.matcher.length if self.matcher is not None else 0)

    def _draft(self, context: list[int], max_depth: int) -> tuple[DraftTree, str]:
        if max_depth < 1:
            return DraftTree.empty(), "none"
        limit = min(self.max_draft, max_depth)
        dynamic_length, static_length = self.match_lengths()
        static_score = static_length - self.static_bias if self.matcher is not None else -1
        if max(dynamic_length, static_score) >= self.threshold:
            if dynamic_length >= static_score:
                tokens, source = self.dynamic.continuation(limit), "dynamic"
            else:
                tokens, source = self.matcher.continuation(limit), "static"
            tokens = self._in_vocabulary(tokens)
            if tokens:
                return DraftTree.chain(tokens), source
        if self.fallback is not None:
            tree = self.fallback.propose(context, max_depth)
            if len(tree):
                return tree, "fallback"
        return DraftTree.empty(), "none"

    def _in_vocabulary(self, tokens: list[int]) -> list[int]:
        """Cut a corpus continuation at an id the target has no embedding for (a tokenizer's
        added tokens can lie beyond the model's vocabulary)."""
        vocab = getattr(getattr(self, "session", None), "vocab_size", None)
        if vocab is None:
            return tokens
        for i, token in enumerate(tokens):
            if token >= vocab:
                return tokens[:i]
        return tokens

    # ------------------------------------------------------------------ records
    def turn_stats(self) -> dict[str, int]:
        """Steps of the last turn by draft source (they add up to its decoding steps)."""
        return dict(self.counts)

    def max_draft_length(self) -> Optional[int]:
        # A step drafts from the automaton or, failing that, from the fallback.
        return _longest(self.max_draft, self.fallback, "max_draft_length")

    def max_draft_tokens(self) -> Optional[int]:
        return _longest(self.max_draft, self.fallback, "max_draft_tokens")

    def params(self) -> dict[str, Any]:
        return {"max_draft": self.max_draft, "threshold": self.threshold, "static_bias": self.static_bias,
                "corpus": self.corpus_name,
                "static_tokens": self.static.n_tokens if self.static is not None else 0,
                "fallback": self.fallback_name,
                "fallback_params": self.fallback.params() if self.fallback is not None else {}}

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--samd-max-draft", type=int, default=None,
                           help=f"longest retrieved chain, in tokens after the root (GPU default "
                                f"{GPU_DEFAULTS['max_draft']}, the paper's n_predicts 40; CPU default "
                                f"{CPU_DEFAULTS['max_draft']})")
        group.add_argument("--samd-threshold", type=int, default=None,
                           help=f"shortest suffix match drafted from; shorter ones use --samd-fallback "
                                f"(default {GPU_DEFAULTS['threshold']}; a corpus match counts "
                                f"{STATIC_BIAS} tokens less)")
        group.add_argument("--samd-fallback", default=None,
                           help=f"registered method that drafts when no match is long enough, built from "
                                f"its own options (default: {TRAINED_FALLBACK} where an EAGLE draft is at hand, "
                                f"the embedded model's or --eagle-path, as in Spec-Bench's SAMD[EAGLE2]; else "
                                f"{DEFAULT_FALLBACK}; '{NO_FALLBACK}': no draft then)")
        group.add_argument("--samd-corpus", default=None,
                           help=f"static automaton: a conversation corpus (JSONL or JSONL.gz, as for REST; "
                                f"its automaton is built once and cached), a built .sdbsam file, or "
                                f"'{NO_CORPUS}' (default: the bundled corpus data/corpus/)")

    @classmethod
    def fallback_of(cls, args) -> str:
        name = getattr(args, "samd_fallback", None)
        if name is not None:
            return name
        from methods.core.model_loading import EMBEDDED
        from methods.drafters.eagle import EMBEDDED_DRAFT

        on_embedded = getattr(args, "model_path", EMBEDDED) in (EMBEDDED, "", None)
        has_draft = getattr(args, "eagle_path", None) is not None or (on_embedded and EMBEDDED_DRAFT.is_dir())
        return TRAINED_FALLBACK if has_draft else DEFAULT_FALLBACK

    @classmethod
    def check_args(cls, args) -> None:
        from methods.registry import available_methods, drafter_class

        check_options(args, "samd", MINIMUM)
        fallback = cls.fallback_of(args)
        if fallback == cls.name:
            raise ValueError("--samd-fallback samd: the fallback must be another method")
        if fallback != NO_FALLBACK:
            if fallback not in available_methods():
                raise ValueError(f"--samd-fallback {fallback}: unknown method; available: "
                                 f"{', '.join(m for m in available_methods() if m != cls.name)} or {NO_FALLBACK}")
            drafter_class(fallback).check_args(args)
        check_corpus_option(getattr(args, "samd_corpus", None), "--samd-corpus", "a .sdbsam file")

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "SamdDrafter":
        from methods.registry import drafter_class

        cls.check_args(args)
        options = resolve_options(args, "samd", model, CPU_DEFAULTS, GPU_DEFAULTS, MINIMUM)
        fallback_name = cls.fallback_of(args)
        fallback = None if fallback_name == NO_FALLBACK else drafter_class(fallback_name).from_args(args, model, tokenizer)
        static, corpus_name = load_corpus_option(getattr(args, "samd_corpus", None), "--samd-corpus", tokenizer,
                                                 MAGIC, read_static, corpus_automaton)
        return cls(static, fallback, **options, fallback_name=fallback_name, corpus_name=corpus_name)
