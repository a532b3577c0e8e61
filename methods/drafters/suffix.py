"""SuffixDecoding (Oliaro et al., 2024; NeurIPS 2025): drafts from frequency statistics of what
followed the newest tokens, in this request and in everything seen before.

Two indexes of occurrence counts (methods/drafters/suffix_index.py):

- the request's own: the prompt and every token committed since, rebuilt each turn;
- the global one: a corpus (by default the project's corpus of the embedded model's answers,
  data/corpus/, the documents of REST's datastore and SAM-Decoding's automaton; built once and
  cached) plus the answers generated in this run, each added token by token as it is generated
  and kept after its turn (first in, first out beyond ``max_cached_requests``).

Each step both indexes score every match length of the context and draft under their best one,
the request's draft winning ties (methods/drafters/suffix_speculation.py has the algorithm): the
draft grows by empirical frequency, its size adapts to the match length (alpha * m, capped), its
tokens keep a path probability of at least ``min_token_prob``, and it is a best-first tree (the
paper's speculation tree) or the most frequent chain. New tokens enter both indexes before the
next draft. The drafts are deterministic, so greedy output is the target's, and at T > 0 the
engine's multi-candidate rejection sampling (q one-hot) keeps the target's distribution.

The global index makes a run's results depend on the order of its questions and on its warm-up
turns (their answers are indexed too), as the paper's response cache does; ``max_cached_requests``
0 leaves the run's answers out and ``--suffix-corpus off`` the corpus. Each turn records which
index drafted its steps (``turn_stats``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any, Optional

from methods.core.drafter import DraftSession, Drafter, StepResult, check_options, resolve_options
from methods.core.tree import DraftTree
from methods.drafters.fallback import WithFallback, build_fallback, check_fallback, fallback_name, help_text
from methods.drafters.rest_datastore import NO_CORPUS, check_corpus_option, load_corpus_option
from methods.drafters.suffix_automaton import StaticMatcher
from methods.drafters.suffix_index import (MAGIC, CorpusSuffixIndex, CountingSuffixAutomaton, corpus_index,
                                           read_corpus_index)
from methods.drafters.suffix_speculation import (IndexView, Speculation, SpeculationConfig, chain_segments,
                                                 merge_segments, speculate)

# The paper's reference cache and vLLM's integration: depth 64, alpha 1, min probability 0.1,
# up to 32 speculated tokens (vLLM's suggested num_speculative_tokens), the speculation tree.
# The request index's own cap: None = the general one (the paper has one).
GPU_DEFAULTS = {"max_depth": 64, "max_spec_tokens": 32, "request_max_spec_tokens": None, "spec_factor": 1.0,
                "spec_offset": 0.0, "min_token_prob": 0.1, "max_cached_requests": -1, "threshold": 3.0}
# On the 2-core CPU (lean backend, EAGLE-2 behind it; docs/methods.md has the sweeps): EAGLE-2
# drafts the steps whose suffix draft scores below 2, a match of m tokens may draft 4 * m, and a
# draft from the global index holds at most 4 tokens, one from the request's own index 12. The
# request's long matches are the prompt or the answer repeating itself (about half of its drafts
# after a match of 5 tokens or more were accepted whole at a cap of 6), while the global index's
# drafts were accepted 0.5-1.5 tokens deep whatever their score, and a forward over more than 6-8
# tokens costs visibly more than one over a single token here. On the development prompts this
# pair of caps ran at 1.73-1.75x against 1.59-1.68x for alpha 2 with the same caps (12 and 6), and
# that at 1.54-1.62x against 1.46-1.53x for the single cap of 6 with alpha 4 before it.
CPU_DEFAULTS = dict(GPU_DEFAULTS, max_spec_tokens=4, request_max_spec_tokens=12, spec_factor=4.0, threshold=2.0)
MINIMUM = {"max_depth": 2, "max_spec_tokens": 1, "request_max_spec_tokens": 1, "spec_factor": 0.0,
           "min_token_prob": 0.0, "max_cached_requests": -1, "threshold": 0.0}
SHAPES = ("tree", "chain")
SOURCES = ("request", "global", "fallback", "none")


class SuffixDrafter(WithFallback, Drafter):
    name = "suffix"

    def __init__(self, corpus: Optional[CorpusSuffixIndex] = None, max_depth: int = 64, max_spec_tokens: int = 32,
                 spec_factor: float = 1.0, spec_offset: float = 0.0, min_token_prob: float = 0.1,
                 max_cached_requests: int = -1, shape: str = "tree", corpus_name: str = "",
                 fallback: Optional[Drafter] = None, threshold: float = 3.0, fallback_name: str = "",
                 request_max_spec_tokens: Optional[int] = None) -> None:
        if shape not in SHAPES:
            raise ValueError(f"--suffix-shape {shape}: one of {', '.join(SHAPES)}")
        if request_max_spec_tokens is None:
            request_max_spec_tokens = max_spec_tokens  # the paper's one cap
        if max_depth < 2 or max_spec_tokens < 1 or request_max_spec_tokens < 1 or spec_factor < 0 \
                or not 0 <= min_token_prob <= 1 or max_cached_requests < -1 or threshold < 0:
            raise ValueError("suffix needs --suffix-max-depth >= 2, --suffix-max-spec-tokens >= 1, "
                             "--suffix-request-max-spec-tokens >= 1, "
                             "--suffix-spec-factor >= 0, --suffix-min-token-prob in [0, 1] and "
                             "--suffix-max-cached-requests >= -1, --suffix-threshold >= 0")
        self.config = SpeculationConfig(max_depth=max_depth, max_spec_tokens=max_spec_tokens, spec_factor=spec_factor,
                                        spec_offset=spec_offset, min_token_prob=min_token_prob, tree=shape == "tree")
        # The request's own index may draft more: its long matches are the prompt or the answer
        # repeating itself, where a draft is right many tokens deep (docs/methods.md).
        self.request_config = replace(self.config, max_spec_tokens=request_max_spec_tokens)
        self.corpus = corpus
        self.corpus_name = corpus_name or (NO_CORPUS if corpus is None else "in memory")
        self.max_cached_requests = max_cached_requests
        self.threshold = threshold
        self._adopt_fallback(fallback, fallback_name)
        # The run's answers: one sequence per turn, oldest first; the automaton holds them all.
        self.answers: deque[list[int]] = deque()
        self.answer_index = CountingSuffixAutomaton() if max_cached_requests != 0 else None
        self.response: Optional[list[int]] = None  # the answer being generated (also in answer_index)
        self.request = CountingSuffixAutomaton()
        self.matcher = StaticMatcher(corpus) if corpus is not None else None
        self._make_views(None)
        self.counts = dict.fromkeys(SOURCES, 0)
        self.last: Speculation = Speculation()
        self.last_source = "none"

    # ------------------------------------------------------------------ per turn
    def begin(self, prompt_ids: list[int], session: DraftSession) -> None:
        super().begin(prompt_ids, session)
        self.request = CountingSuffixAutomaton()
        self.request.extend(prompt_ids)
        if self.matcher is not None:
            self.matcher.reset()
            self.matcher.feed(prompt_ids[-self.config.max_depth:])  # no match is ever longer
        if self.answer_index is not None:
            self._make_room()
            self.response = []
        self._make_views(session.vocab_size)
        self.counts = dict.fromkeys(SOURCES, 0)
        self._fallback_begin(prompt_ids, session)

    def _make_views(self, vocab_size: Optional[int]) -> None:
        self.request_view = IndexView(None, self.request, vocab_size)
        self.global_view = IndexView(self.corpus, self.answer_index, vocab_size)

    def accept(self, step: StepResult) -> None:
        self._add(step.committed)
        self._fallback_accept(step)

    def end(self) -> None:
        """The answer is finished: it stays in the global index for the turns to come."""
        self._fallback_end()
        if self.response is not None:
            self.answer_index.end_sequence()
            self.answers.append(self.response)
            self.response = None

    def _add(self, tokens: list[int]) -> None:
        self.request.extend(tokens)
        if self.matcher is not None:
            self.matcher.feed(tokens)
        if self.response is not None:
            self.answer_index.extend(tokens)
            self.response.extend(tokens)

    def _make_room(self) -> None:
        """First in, first out: keep at most max_cached_requests answers, the new one included.
        An automaton cannot forget a sequence, so it is rebuilt from the answers kept."""
        limit = self.max_cached_requests
        if limit < 0 or len(self.answers) < limit:
            return
        while len(self.answers) >= limit:
            self.answers.popleft()
        self.answer_index = CountingSuffixAutomaton()
        for answer in self.answers:
            self.answer_index.extend(answer)
            self.answer_index.end_sequence()

    # ------------------------------------------------------------------ drafting
    def propose(self, context: list[int], max_depth: int) -> DraftTree:
        if len(self.request) < len(context):  # a caller that skipped accept: catch up
            self._add(context[len(self.request):])
        draft, source = self._draft(context, max_depth)
        if self.fallback is not None and draft.score < self.threshold:
            # The hybrid: below the threshold the counts expect fewer accepted tokens than the
            # fallback is trusted to bring; an empty fallback draft leaves the suffix draft.
            tree = self.fallback.propose(context, max_depth)
            if len(tree):
                self.last, self.last_source = Speculation(), "fallback"
                self.counts["fallback"] += 1
                return tree
        self.last, self.last_source = draft, source
        self.counts[source] += 1
        return DraftTree(draft.tokens, draft.parents) if draft.tokens else DraftTree.empty()

    def _draft(self, context: list[int], room: int) -> tuple[Speculation, str]:
        config = self.config
        if room < 1:
            return Speculation(), "none"
        # Match lengths 1 .. len(ctx) - 1 with ctx the last D tokens (the reference's bounds).
        longest = min(config.max_depth, len(context)) - 1
        request = self.request
        segments = [(low, high, (-1, state)) for low, high, state in
                    chain_segments(request.link, request.length, request.last, len(request), longest)]
        local = speculate(self.request_view, segments, self.request_config, room, open_length=len(request))
        best = local.score if local is not None else 0.0
        glob = speculate(self.global_view, self._global_segments(context, longest), config, room, beat=best,
                         open_length=len(self.response) if self.response is not None else 0)
        if glob is not None:
            return glob, "global"
        if local is not None:  # a draft is kept only with a positive score: it has tokens
            return local, "request"
        return Speculation(), "none"

    def _global_segments(self, context: list[int], longest: int) -> list:
        corpus = []
        if self.matcher is not None:
            corpus = chain_segments(self.corpus.link, self.corpus.length, self.matcher.state, self.matcher.length,
                                    longest)
        online = []
        if self.answer_index is not None and len(self.answer_index):
            state, matched = self.answer_index.match(context[-self.config.max_depth:])
            online = chain_segments(self.answer_index.link, self.answer_index.length, state, matched, longest)
        return merge_segments(corpus, online)

    # ------------------------------------------------------------------ records
    def turn_stats(self) -> dict[str, int]:
        """Steps of the last turn by the index that drafted them (they add up to its steps)."""
        return dict(self.counts)

    def max_draft_length(self) -> Optional[int]:
        # A draft (chain or tree) holds at most its index's cap of tokens, so no path is longer;
        # max_depth bounds the matched suffix, not the draft. A step may draft from the fallback.
        return self._longest(self._largest_draft(), "max_draft_length")

    def max_draft_tokens(self) -> Optional[int]:
        return self._longest(self._largest_draft(), "max_draft_tokens")

    def _largest_draft(self) -> int:
        return max(self.config.max_spec_tokens, self.request_config.max_spec_tokens)

    def params(self) -> dict[str, Any]:
        config = self.config
        return {"max_depth": config.max_depth, "max_spec_tokens": config.max_spec_tokens,
                "request_max_spec_tokens": self.request_config.max_spec_tokens,
                "spec_factor": config.spec_factor, "spec_offset": config.spec_offset,
                "min_token_prob": config.min_token_prob, "shape": "tree" if config.tree else "chain",
                "max_cached_requests": self.max_cached_requests, "corpus": self.corpus_name,
                "corpus_tokens": self.corpus.n_tokens if self.corpus is not None else 0,
                "threshold": self.threshold, **self._fallback_params()}

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--suffix-max-depth", type=int, default=None,
                           help=f"D: the longest match plus draft depth, in tokens (default "
                                f"{GPU_DEFAULTS['max_depth']}, the paper's)")
        group.add_argument("--suffix-max-spec-tokens", type=int, default=None,
                           help=f"the most tokens one draft may hold (CPU default {CPU_DEFAULTS['max_spec_tokens']}, "
                                f"GPU {GPU_DEFAULTS['max_spec_tokens']})")
        group.add_argument("--suffix-request-max-spec-tokens", type=int, default=None,
                           help=f"the most tokens a draft from the request's own index (prompt and answer so far) "
                                f"may hold (CPU default {CPU_DEFAULTS['request_max_spec_tokens']}; GPU default: "
                                f"--suffix-max-spec-tokens, the paper's one cap)")
        group.add_argument("--suffix-spec-factor", type=float, default=None,
                           help=f"alpha: a match of m tokens may draft alpha * m + offset tokens, the adaptive "
                                f"size (GPU default {GPU_DEFAULTS['spec_factor']}, the paper's; CPU default "
                                f"{CPU_DEFAULTS['spec_factor']})")
        group.add_argument("--suffix-spec-offset", type=float, default=None,
                           help=f"the offset of that size rule (default {GPU_DEFAULTS['spec_offset']})")
        group.add_argument("--suffix-min-token-prob", type=float, default=None,
                           help=f"a drafted token's path probability (the product of the empirical "
                                f"frequencies along its path) must be at least this (default "
                                f"{GPU_DEFAULTS['min_token_prob']})")
        group.add_argument("--suffix-shape", choices=SHAPES, default=None,
                           help="tree: the paper's speculation tree, grown best first by path probability; "
                                "chain: the most frequent continuation only, as the vLLM integration (default tree)")
        group.add_argument("--suffix-max-cached-requests", type=int, default=None,
                           help="answers of this run kept in the global index, oldest dropped first; -1: all, "
                                "0: none (the corpus alone) (default -1)")
        group.add_argument("--suffix-fallback", default=None,
                           help=help_text("the suffix draft's score (its expected accepted tokens under the counts) "
                                          "is below --suffix-threshold") + " (the published hybrid with EAGLE)")
        group.add_argument("--suffix-threshold", type=float, default=None,
                           help=f"least score of a suffix draft when a fallback is there; below it the fallback "
                                f"drafts (default {GPU_DEFAULTS['threshold']}, the Spec-Bench fork's; CPU default "
                                f"{CPU_DEFAULTS['threshold']})")
        group.add_argument("--suffix-corpus", default=None,
                           help=f"the global index's corpus: a conversation corpus (JSONL or JSONL.gz, as for REST; "
                                f"indexed once and cached), a built .sdbsfx index, or '{NO_CORPUS}' (default: "
                                f"the bundled corpus data/corpus/)")

    @classmethod
    def check_args(cls, args) -> None:
        check_options(args, "suffix", MINIMUM)
        prob = getattr(args, "suffix_min_token_prob", None)
        if prob is not None and prob > 1:
            raise ValueError(f"--suffix-min-token-prob {prob}: must be at most 1")
        check_fallback(args, "suffix_fallback", cls.name)
        check_corpus_option(getattr(args, "suffix_corpus", None), "--suffix-corpus", "a .sdbsfx index")

    @classmethod
    def fallback_of(cls, args) -> str:
        return fallback_name(args, "suffix_fallback")

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "SuffixDrafter":
        cls.check_args(args)
        options = resolve_options(args, "suffix", model, CPU_DEFAULTS, GPU_DEFAULTS, MINIMUM)
        corpus, name = load_corpus_option(getattr(args, "suffix_corpus", None), "--suffix-corpus", tokenizer, MAGIC,
                                          read_corpus_index, corpus_index)
        shape = getattr(args, "suffix_shape", None) or "tree"
        fallback, which = build_fallback(args, "suffix_fallback", model, tokenizer)
        return cls(corpus, **options, shape=shape, corpus_name=name, fallback=fallback, fallback_name=which)
