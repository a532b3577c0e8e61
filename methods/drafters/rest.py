"""REST: retrieval-based speculative decoding (He et al., 2024).

Each step takes the newest tokens of the context (root included), longest first from
``max_token_span`` down to 2, and looks them up in a datastore of text (a suffix array, see
methods/drafters/rest_datastore.py). For the first span that occurs, up to ``k`` occurrences are read with
the ``long`` tokens that followed each; the ``num_draft`` most frequent prefixes of those
continuations form a trie, which is the draft tree. No match means an empty draft (a plain
1-token step; Spec-Bench verifies a dummy token instead, which only costs time).

Without ``--rest-datastore`` the drafter uses the datastore of the corpus the project generated
with the embedded model (data/corpus/), tokenized with the target's tokenizer, built on first use
and cached under the sdbench cache folder.

At T > 0 the engine's lossless multi-candidate acceptance is used (REST's own top-p path matching
is not distribution-preserving for trees).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from methods.core.drafter import Drafter, check_options, resolve_options
from methods.drafters.rest_datastore import Datastore, default_datastore, read_datastore, retrieve
from methods.core.tree import DraftTree

# Spec-Bench: num_draft 64, spans 16 -> 2, k 5000, long 10. On the 2-core CPU a 64-node tree
# costs ~2x a 1-token forward and the accepted length hardly grows with the trie, so the CPU
# default is a small, shallow one (measured, see docs/methods.md).
GPU_DEFAULTS = {"num_draft": 64, "max_token_span": 16, "k": 5000, "long": 10}
CPU_DEFAULTS = {"num_draft": 4, "max_token_span": 16, "k": 5000, "long": 4}
MIN_TOKEN_SPAN = 2  # REST never retrieves on a single token
MINIMUM = {"num_draft": 1, "max_token_span": MIN_TOKEN_SPAN, "k": 1, "long": 1}


class RestDrafter(Drafter):
    name = "rest"

    def __init__(self, datastore: Datastore, num_draft: int = 64, max_token_span: int = 16,
                 k: int = 5000, long: int = 10, datastore_name: str = "") -> None:
        if num_draft < 1 or long < 1 or k < 1 or max_token_span < MIN_TOKEN_SPAN:
            raise ValueError("REST needs --rest-num-draft, --rest-long, --rest-k >= 1 and "
                             f"--rest-max-token-span >= {MIN_TOKEN_SPAN}")
        self.datastore = datastore
        self.num_draft, self.max_token_span, self.k, self.long = num_draft, max_token_span, k, long
        self.datastore_name = datastore_name
        self.last_span = 0  # span of the last successful look-up (0: none), for diagnostics

    def propose(self, context: list[int], max_depth: int) -> DraftTree:
        if max_depth < 1:
            return DraftTree.empty()
        self.last_span, paths = retrieve(self.datastore, context, max_span=self.max_token_span,
                                         min_span=MIN_TOKEN_SPAN, k=self.k, choices=self.num_draft,
                                         long=min(self.long, max_depth))
        return DraftTree.from_paths(paths)

    def max_draft_length(self) -> int:
        return self.long

    def max_draft_tokens(self) -> int:
        return self.num_draft

    def params(self) -> dict[str, Any]:
        return {"num_draft": self.num_draft, "max_token_span": self.max_token_span, "k": self.k,
                "long": self.long, "datastore": self.datastore_name,
                "datastore_tokens": self.datastore.n_tokens}

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--rest-datastore", type=Path, default=None,
                           help="datastore file built by `python -m methods.drafters.rest_datastore build` "
                                "(default: the bundled corpus's, built once and cached)")
        group.add_argument("--rest-num-draft", type=int, default=None,
                           help=f"trie nodes per step, REST's 'choices' (CPU default "
                                f"{CPU_DEFAULTS['num_draft']}, GPU {GPU_DEFAULTS['num_draft']})")
        group.add_argument("--rest-max-token-span", type=int, default=None,
                           help=f"longest context suffix looked up; shorter ones down to {MIN_TOKEN_SPAN} "
                                f"are tried next (default {GPU_DEFAULTS['max_token_span']})")
        group.add_argument("--rest-k", type=int, default=None,
                           help=f"occurrences read per look-up (default {GPU_DEFAULTS['k']})")
        group.add_argument("--rest-long", type=int, default=None,
                           help=f"continuation length, hence tree depth (CPU default {CPU_DEFAULTS['long']}, "
                                f"GPU {GPU_DEFAULTS['long']})")

    @classmethod
    def check_args(cls, args) -> None:
        check_options(args, "rest", MINIMUM)
        path = getattr(args, "rest_datastore", None)
        if path is not None and not Path(path).is_file():
            raise ValueError(f"--rest-datastore {path}: no such file (build one with "
                             f"`python -m methods.drafters.rest_datastore build`)")

    @classmethod
    def from_args(cls, args, model, tokenizer) -> "RestDrafter":
        cls.check_args(args)
        options = resolve_options(args, "rest", model, CPU_DEFAULTS, GPU_DEFAULTS, MINIMUM)
        path: Optional[Path] = getattr(args, "rest_datastore", None)
        if path is not None:
            store, name = read_datastore(path), Path(path).name
        else:
            if tokenizer is None:
                raise ValueError("REST without --rest-datastore needs the target's tokenizer")
            store = default_datastore(tokenizer)
            name = "bundled:" + store.meta.get("source", "")
        return cls(store, **options, datastore_name=name)
