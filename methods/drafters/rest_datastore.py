"""REST's datastore: a token corpus with its suffix array, and retrieval of continuations.

Retrieval (REST, He et al., 2024): find the corpus positions where the newest tokens of the
context occur (a binary search over the suffix array), read the tokens that followed each
occurrence, count how often every prefix of those continuations was seen, and keep the most
frequent prefixes: they form a trie, REST's draft tree.

File format (version 1, little-endian, our own; the arrays can be memory-mapped):

    offset 0   8 bytes  magic b"SDBREST\\0"
               u32      format version (1)
               u32      header length H
               H bytes  JSON header: {"vocab_size", "n_tokens", "n_entries", "sa_dtype",
                        "tokenizer", "source", ...}
    (zero padding to a multiple of 64 bytes, then each array padded to 64 bytes the same way)
               int32    tokens[n_tokens]        the entries, concatenated without separators
               int32|int64 suffix_array[n_tokens]  (int64 once n_tokens >= 2**31)
               int64    entry_starts[n_entries + 1]  token offset of every entry, then n_tokens

Unlike DraftRetriever's format (u16 tokens) ids up to 2**31 - 1 are stored as they are, so
vocabularies above 65,535 work. Entry boundaries are kept: a match never spans two entries and a
continuation stops at the end of its entry (DraftRetriever lets both run into the next entry).

Building from a conversation corpus (JSONL; our corpus format, ShareGPT's "conversations" with
"from"/"value", or UltraChat's "data" list of strings):

    python -m methods.drafters.rest_datastore build --corpus data/corpus/smollm2_corpus.jsonl.gz \
        --model-path embedded --out datastore.sdbrest

With a chat template each conversation becomes one entry rendered through the template, so the
datastore holds exactly the token sequences the model sees while decoding (the assistant header
followed by the first words of an answer included); a record of our own corpus that carries its
token ids (training/make_corpus.py) contributes those ids instead, the prompt as formatted and
the answer as generated, whenever the tokenizer formats the prompt to the same ids. Without a
chat template each message is an entry, tokenized with the tokenizer's special tokens, as
Spec-Bench's datastore scripts do. Conversations of the corpus's held-out split are left out
(``--include-heldout`` adds them).
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from methods.core.paths import BUNDLED_CORPUS
from methods.drafters.array_file import read_arrays, read_header, read_or_build, write_arrays

MAGIC = b"SDBREST\0"
FORMAT_VERSION = 1

# The corpus the project generates with the embedded model (training/make_corpus.py).


@dataclass
class Datastore:
    tokens: np.ndarray  # int32 [n]
    suffix_array: np.ndarray  # int32 or int64 [n]
    entry_starts: np.ndarray  # int64 [entries + 1]
    meta: dict = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_entries(self) -> int:
        return int(self.entry_starts.shape[0]) - 1


# ---------------------------------------------------------------------------------- building
def build_datastore(entries: Iterable[Sequence[int]], vocab_size: Optional[int] = None,
                    meta: Optional[dict] = None) -> Datastore:
    """Concatenate the entries and sort their suffixes (pydivsufsort, linear-time SA-IS family)."""
    from pydivsufsort import divsufsort

    arrays = [np.asarray(e, dtype=np.int64) for e in entries if len(e)]
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    tokens64 = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    if tokens64.size and (tokens64.min() < 0 or tokens64.max() >= 2**31 - 1):
        raise ValueError("token ids must lie in [0, 2**31 - 1)")
    tokens = tokens64.astype(np.int32)
    entry_starts = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum(lengths, out=entry_starts[1:])
    suffix_array = divsufsort(tokens) if tokens.size else np.zeros(0, dtype=np.int32)
    sa_dtype = np.int32 if tokens.size < 2**31 else np.int64
    info = dict(meta or {})
    info["vocab_size"] = int(vocab_size) if vocab_size is not None else int(tokens.max(initial=-1)) + 1
    return Datastore(tokens, np.asarray(suffix_array, dtype=sa_dtype), entry_starts, info)


def write_datastore(store: Datastore, path: Path) -> None:
    header = dict(store.meta)
    header.update(n_tokens=store.n_tokens, n_entries=store.n_entries,
                  sa_dtype=np.dtype(store.suffix_array.dtype).name)
    sa_dtype = "<" + np.dtype(store.suffix_array.dtype).str[1:]
    write_arrays(path, MAGIC, FORMAT_VERSION, header,
                 [(store.tokens, "<i4"), (store.suffix_array, sa_dtype), (store.entry_starts, "<i8")])


def read_datastore(path: Path, mmap: bool = True) -> Datastore:
    path = Path(path)
    header, offset = read_header(path, MAGIC, FORMAT_VERSION, "REST datastore")
    n, entries = header["n_tokens"], header["n_entries"]
    tokens, suffix_array, entry_starts = read_arrays(
        path, offset, [("<i4", n), ("<" + np.dtype(header["sa_dtype"]).str[1:], n), ("<i8", entries + 1)], mmap)
    return Datastore(tokens, suffix_array, entry_starts, header)


# ---------------------------------------------------------------------------------- retrieval
class _SuffixColumn:
    """The token at offset ``j`` of every suffix, in suffix-array order (-1 past the corpus end),
    as a lazy sequence so that ``bisect`` can binary-search it without materialising it."""

    def __init__(self, store: Datastore, j: int) -> None:
        self.tokens, self.sa, self.j, self.n = store.tokens, store.suffix_array, j, store.n_tokens

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        p = int(self.sa[i]) + self.j
        return int(self.tokens[p]) if p < self.n else -1


def match_range(store: Datastore, query: Sequence[int]) -> tuple[int, int]:
    """[lo, hi) of the suffix array whose suffixes start with ``query``. Suffixes sharing the
    first j query tokens are contiguous and sorted by their token j, so narrow column by column."""
    lo, hi = 0, store.n_tokens
    for j, token in enumerate(query):
        column = _SuffixColumn(store, j)
        lo = bisect.bisect_left(column, int(token), lo, hi)
        hi = bisect.bisect_right(column, int(token), lo, hi)
        if lo >= hi:
            return lo, lo
    return lo, hi


def continuations(store: Datastore, query: Sequence[int], k: int, long: int) -> np.ndarray:
    """Up to ``k`` continuations (the ``long`` tokens after each occurrence of ``query``),
    int64 [m, long], -1 where a continuation stops at the end of its entry."""
    lo, hi = match_range(store, query)
    if hi <= lo or long <= 0:
        return np.zeros((0, max(long, 0)), dtype=np.int64)
    if hi - lo > k:
        # Evenly spaced over the range, not its lexicographic head as DraftRetriever takes: the
        # head over-represents continuations that start with small token ids and skews the counts.
        picks = lo + (np.arange(k, dtype=np.int64) * (hi - lo)) // k
    else:
        picks = np.arange(lo, hi, dtype=np.int64)
    starts = np.asarray(store.suffix_array[picks], dtype=np.int64)
    entry_end = store.entry_starts[np.searchsorted(store.entry_starts, starts, side="right")]
    begin = starts + len(query)
    keep = begin < entry_end  # the match lies in one entry and something follows it
    begin, entry_end = begin[keep], entry_end[keep]
    positions = begin[:, None] + np.arange(long, dtype=np.int64)[None, :]
    inside = positions < entry_end[:, None]
    out = np.full(positions.shape, -1, dtype=np.int64)
    out[inside] = store.tokens[positions[inside]]
    return out


def top_prefixes(conts: np.ndarray, choices: int) -> list[tuple[int, ...]]:
    """The ``choices`` most frequent prefixes of the continuations, most frequent first.

    Ties go to the shorter prefix, then to the lexicographically smaller one, so a prefix always
    ranks before its extensions (it is at least as frequent): the result is closed under taking
    prefixes, i.e. it is a trie of exactly min(choices, distinct prefixes) nodes, and siblings
    come most frequent first.
    """
    if conts.shape[0] == 0 or choices <= 0:
        return []
    rows = conts[np.lexsort(conts.T[::-1])]  # lexicographic order: equal prefixes are adjacent
    m, long = rows.shape
    counts, depths, firsts = [], [], []  # one entry per distinct prefix
    new_group = np.zeros(m, dtype=bool)
    new_group[0] = True
    for depth in range(long):
        new_group[1:] |= rows[1:, depth] != rows[:-1, depth]  # differs somewhere in columns 0..depth
        starts = np.flatnonzero(new_group)
        sizes = np.diff(np.append(starts, m))
        valid = rows[starts, depth] >= 0  # -1: the continuation had already ended
        counts.append(sizes[valid])
        depths.append(np.full(int(valid.sum()), depth))
        firsts.append(starts[valid])
    counts, depths, firsts = np.concatenate(counts), np.concatenate(depths), np.concatenate(firsts)
    order = np.lexsort((firsts, depths, -counts))[:choices]  # most frequent, then shorter, then smaller
    return [tuple(rows[firsts[i], : depths[i] + 1].tolist()) for i in order]


def retrieve(store: Datastore, context: Sequence[int], max_span: int = 16, min_span: int = 2,
             k: int = 5000, choices: int = 64, long: int = 10) -> tuple[int, list[tuple[int, ...]]]:
    """REST's look-up: the longest context suffix (max_span down to min_span tokens) that occurs
    in the datastore, and the trie of its most frequent continuations. Returns (span, paths);
    (0, []) when nothing matched."""
    for span in range(min(max_span, len(context)), min_span - 1, -1):
        conts = continuations(store, context[len(context) - span:], k, long)
        if conts.shape[0]:
            return span, top_prefixes(conts, choices)
    return 0, []


# ---------------------------------------------------------------------------------- corpora
HELDOUT = "heldout"  # make_corpus's held-out split: kept out of datastores by default


def read_records(path: Path) -> Iterator[dict]:
    """The JSON records of a (gzipped) JSONL corpus."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                record = json.loads(line)
                record.setdefault("_line", number)
                yield record


def record_turns(record: dict, path: Path) -> list[dict]:
    """A corpus record's conversation as [{"role", "content"}, ...]."""
    if "conversations" in record:  # ours ({role, content}) or ShareGPT ({from, value})
        turns = []
        for msg in record["conversations"]:
            role = msg.get("role") or {"human": "user", "gpt": "assistant"}.get(msg.get("from"), msg.get("from"))
            turns.append({"role": role, "content": msg.get("content", msg.get("value", ""))})
        return turns
    if "data" in record:  # UltraChat: alternating user / assistant strings
        return [{"role": "user" if i % 2 == 0 else "assistant", "content": text}
                for i, text in enumerate(record["data"])]
    raise ValueError(f"{path}:{record.get('_line')}: a line has neither 'conversations' nor 'data'")


def conversation_entries(conversation: list[dict], tokenizer, mode: str) -> list[list[int]]:
    if mode == "chat":
        return [list(tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=False))]
    return [tokenizer.encode(turn["content"]) for turn in conversation if turn["content"]]


def generated_entry(record: dict, tokenizer) -> Optional[list[int]]:
    """A make_corpus record as the exact ids the model saw and produced: the chat-formatted
    prompt, the greedy answer, and the end-of-sequence token when the answer ended with one.
    None when the record has no ids or this tokenizer formats the prompt differently (another
    tokenizer or chat template: then the stored ids mean nothing to it)."""
    prompt_ids, answer_ids = record.get("prompt_token_ids"), record.get("answer_token_ids")
    turns = record.get("conversations") or []
    if prompt_ids is None or answer_ids is None or len(turns) != 2:
        return None
    from methods.core.conversation import Conversation

    if Conversation(tokenizer, "chat").prompt_ids(turns[0]["content"]) != prompt_ids:
        return None
    eos = [tokenizer.eos_token_id] if record.get("finished") and tokenizer.eos_token_id is not None else []
    return list(prompt_ids) + list(answer_ids) + eos


def corpus_entries(corpus: Path, tokenizer, mode: str, include_heldout: bool = False,
                   progress: bool = True) -> list[list[int]]:
    """The datastore entries of a corpus. In chat mode a record of our own corpus contributes the
    token ids the model generated (re-tokenizing the decoded answer does not always give them
    back); other records go through the chat template."""
    from tqdm import tqdm

    entries: list[list[int]] = []
    for record in tqdm(read_records(corpus), desc="tokenizing", unit="conv", disable=not progress):
        if not include_heldout and record.get("split") == HELDOUT:
            continue
        entry = generated_entry(record, tokenizer) if mode == "chat" else None
        if entry is not None:
            entries.append(entry)
        else:
            entries.extend(conversation_entries(record_turns(record, corpus), tokenizer, mode))
    return entries


NO_CORPUS = "off"  # the value of a drafter's corpus option that leaves the corpus out


def check_corpus_option(value: Optional[str], flag: str, built: str) -> None:
    """Refuse a corpus option (SAM-Decoding's, SuffixDecoding's) that names no file; not given
    (the bundled corpus) and 'off' are fine. ``built``: how the drafter's prebuilt index is called."""
    if value not in (None, NO_CORPUS) and not Path(value).is_file():
        raise ValueError(f"{flag} {value}: no such file (a JSONL corpus, {built} or '{NO_CORPUS}')")


def load_corpus_option(value: Optional[str], flag: str, tokenizer, magic: bytes, read_built, index_corpus):
    """What a corpus option names, as (index, name for the records): (None, 'off') for 'off'; a
    prebuilt index (a file starting with ``magic``) read with ``read_built(path)``; else a
    conversation corpus, the bundled one when not given, indexed with ``index_corpus(tokenizer,
    path)`` (built once and cached by the drafter's module)."""
    if value == NO_CORPUS:
        return None, NO_CORPUS
    path = Path(value) if value is not None else BUNDLED_CORPUS
    with open(path, "rb") as f:
        if f.read(len(magic)) == magic:
            return read_built(path), path.name
    if tokenizer is None:
        raise ValueError(f"a corpus needs the target's tokenizer (or {flag} {NO_CORPUS})")
    return index_corpus(tokenizer, path), ("bundled:" if value is None else "") + path.name


def default_mode(tokenizer) -> str:
    return "chat" if getattr(tokenizer, "chat_template", None) else "messages"


def tokenizer_fingerprint(tokenizer) -> str:
    """Identifies a tokenizer by what it does (vocabulary and chat template), not by its path."""
    digest = hashlib.sha256()
    digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(str(getattr(tokenizer, "chat_template", "")).encode())
    return digest.hexdigest()[:16]


def build_from_corpus(corpus: Path, tokenizer, out: Path, mode: Optional[str] = None,
                      progress: bool = True, include_heldout: bool = False) -> Datastore:
    """The datastore of a corpus. Conversations of the held-out split (make_corpus's
    ``"split": "heldout"``) are left out unless ``include_heldout``: they are kept for measuring
    drafters on prompts none of them has seen, and a REST datastore holding their answers would
    retrieve those answers word for word."""
    mode = mode or default_mode(tokenizer)
    entries = corpus_entries(corpus, tokenizer, mode, include_heldout, progress)
    vocab_size = max(len(tokenizer), max((max(e) for e in entries if e), default=-1) + 1)
    meta = {"source": Path(corpus).name, "tokenizer": Path(str(getattr(tokenizer, "name_or_path", ""))).name,
            "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer), "mode": mode,
            "include_heldout": include_heldout}
    store = build_datastore(entries, vocab_size=vocab_size, meta=meta)
    write_datastore(store, out)
    return store


def cached_corpus_index_path(corpus: Path, tokenizer, folder: str, extension: str, version: int,
                             mode: Optional[str] = None) -> Path:
    """Where an index of ``corpus`` for ``tokenizer`` is cached (outside the repository), in the
    cache's ``folder``: named by the corpus file's checksum (a changed corpus gets a new name, so a
    stale index is never read), the tokenizer's fingerprint, the entry mode, the train split (built
    without the held-out one) and the index's format version."""
    from methods.core.paths import cache_root

    mode = mode or default_mode(tokenizer)
    corpus_hash = hashlib.sha256(Path(corpus).read_bytes()).hexdigest()[:16]
    name = (f"{Path(corpus).name.split('.')[0]}-{corpus_hash}-{tokenizer_fingerprint(tokenizer)}-{mode}-train"
            f"-v{version}.{extension}")
    return cache_root() / folder / name


def cached_datastore_path(corpus: Path, tokenizer, mode: Optional[str] = None) -> Path:
    """Where the datastore of ``corpus`` for ``tokenizer`` is cached (what default_datastore builds)."""
    return cached_corpus_index_path(corpus, tokenizer, "rest", "sdbrest", FORMAT_VERSION, mode)


def default_datastore(tokenizer, corpus: Path = BUNDLED_CORPUS) -> Datastore:
    """The bundled corpus's datastore for this tokenizer (its train split), built once and cached."""
    if not Path(corpus).is_file():
        raise FileNotFoundError(f"no --rest-datastore given and the bundled corpus {corpus} is missing")
    return read_or_build(cached_datastore_path(corpus, tokenizer), read_datastore,
                         lambda path: build_from_corpus(corpus, tokenizer, path, progress=False),
                         f"REST datastore of {Path(corpus).name}")


# ---------------------------------------------------------------------------------- command line
def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m methods.drafters.rest_datastore",
                                     description="Build or inspect a REST datastore (suffix array over a token corpus).")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build a datastore from a JSONL conversation corpus")
    build.add_argument("--corpus", type=Path, required=True,
                       help="JSONL or JSONL.gz: {'conversations': [{'role','content'} or {'from','value'}]} "
                            "or UltraChat's {'data': [str, ...]}")
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument("--tokenizer", help="tokenizer folder or hub id")
    source.add_argument("--model-path", help="the target model ('embedded', a .gguf file, a folder or a hub id); "
                                             "only its tokenizer is loaded")
    build.add_argument("--out", type=Path, required=True, help="output datastore file")
    build.add_argument("--include-heldout", action="store_true",
                       help="also add the conversations of the corpus's held-out split (split=heldout), "
                            "which are left out by default so that drafters can be compared on them")
    build.add_argument("--mode", choices=["chat", "messages"], default=None,
                       help="one entry per conversation through the chat template, or one per message "
                            "(default: chat when the tokenizer has a chat template)")
    info = sub.add_parser("info", help="print a datastore's header")
    info.add_argument("path", type=Path)
    args = parser.parse_args(argv)

    if args.command == "info":
        store = read_datastore(args.path)
        print(json.dumps(store.meta, indent=2, sort_keys=True))
        return 0
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        from methods.core.model_loading import load_tokenizer

        tokenizer = load_tokenizer(args.model_path)
    if not args.corpus.is_file():
        parser.error(f"--corpus {args.corpus}: no such file")
    store = build_from_corpus(args.corpus, tokenizer, args.out, mode=args.mode, include_heldout=args.include_heldout)
    print(f"{args.out}: {store.n_entries} entries, {store.n_tokens} tokens", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
