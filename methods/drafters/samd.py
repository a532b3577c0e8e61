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
from methods.core.tree import DraftTree
from methods.drafters.fallback import WithFallback, build_fallback, check_fallback, fallback_name, help_text
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
SOURCES = ("dynamic", "static", "fallback", "none")


class SamdDrafter(WithFallback, Drafter):
    name = "samd"

    def __init__(self, static: Optional[StaticSuffixAutomaton] = None, fallback: Optional[Drafter] = None,
                 max_draft: int = 39, threshold: int = 5, static_bias: int = STATIC_BIAS,
                 fallback_name: str = "", corpus_name: str = "") -> None:
        if max_draft < 1 or threshold < 1:
            raise ValueError("samd needs --samd-max-draft >= 1 and --samd-threshold >= 1")
        self.static = static
        self._adopt_fallback(fallback, fallback_name)
        self.max_draft, self.threshold, self.static_bias = max_draft, threshold, static_bias
        self.corpus_name = corpus_name or (NO_CORPUS if static is None else "in memory")
        self.dynamic = SuffixAutomaton()
        self.matcher = StaticMatcher(static) if static is not None else None
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
        self._fallback_begin(prompt_ids, session)

    def accept(self, step: StepResult) -> None:
        self.dynamic.extend(step.committed)
        if self.matcher is not None:
            self.matcher.feed(step.committed)
        self._fallback_accept(step)

    def end(self) -> None:
        self._fallback_end()

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
        return self._longest(self.max_draft, "max_draft_length")

    def max_draft_tokens(self) -> Optional[int]:
        return self._longest(self.max_draft, "max_draft_tokens")

    def params(self) -> dict[str, Any]:
        return {"max_draft": self.max_draft, "threshold": self.threshold, "static_bias": self.static_bias,
                "corpus": self.corpus_name,
                "static_tokens": self.static.n_tokens if self.static is not None else 0,
                **self._fallback_params()}

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
                           help=help_text("no match is long enough") + " (SAMD[EAGLE2] in Spec-Bench)")
        group.add_argument("--samd-corpus", default=None,
                           help=f"static automaton: a conversation corpus (JSONL or JSONL.gz, as for REST; "
                                f"its automaton is built once and cached), a built .sdbsam file, or "
                                f"'{NO_CORPUS}' (default: the bundled corpus data/corpus/)")

    @classmethod
    def fallback_of(cls, args) -> str:
        return fallback_name(args, "samd_fallback")

    @classmethod
    def check_args(cls, args) -> None:
        check_options(args, "samd", MINIMUM)
        check_fallback(args, "samd_fallback", cls.name)
        check_corpus_option(getattr(args, "samd_corpus", None), "--samd-corpus", "a .sdbsam file")

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "SamdDrafter":
        cls.check_args(args)
        options = resolve_options(args, "samd", model, CPU_DEFAULTS, GPU_DEFAULTS, MINIMUM)
        fallback, name = build_fallback(args, "samd_fallback", model, tokenizer)
        static, corpus_name = load_corpus_option(getattr(args, "samd_corpus", None), "--samd-corpus", tokenizer,
                                                 MAGIC, read_static, corpus_automaton)
        return cls(static, fallback, **options, fallback_name=name, corpus_name=corpus_name)
