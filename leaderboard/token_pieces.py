"""Token ids as the text pieces they decode to, for the drill-down's per-step view.

Decoded when a run is imported (leaderboard/store.py), so that the app shows text without a
tokenizer, and a database viewed on another machine shows it too. The tokenizer is the one
of the model the run's environment names (`model_path`), when it is on this machine: the
`tokenizer.json` of a local folder, of the embedded model's (or a .gguf file's) converted copy,
or of the Hugging Face cache (never downloaded). Only the `tokenizers` library reads it: no
model code, torch or transformers is loaded for this.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Iterable, Optional

TOKENIZER_FILE = "tokenizer.json"
_REPLACEMENT = "\ufffd"  # what a token that ends inside a UTF-8 character decodes to

Decoder = Callable[[list[int]], str]


def tokenizer_file(model_path: Optional[str]) -> Optional[Path]:
    """This machine's tokenizer.json of the model a run names; None where there is none."""
    if not isinstance(model_path, str) or not model_path:
        return None
    if model_path.startswith("embedded") or model_path.endswith(".gguf"):
        from methods.core.model_loading import converted_folder  # imports torch: only for these

        folder = converted_folder(model_path)  # None: not converted on this machine
        path = None if folder is None else folder / TOKENIZER_FILE
        return path if path is not None and path.is_file() else None
    local = Path(model_path).expanduser()
    if local.is_dir():
        path = local / TOKENIZER_FILE
        return path if path.is_file() else None
    # Otherwise a hub id (a folder of another machine is refused by the hub's id check).
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model_path, TOKENIZER_FILE)  # reads the cache, no network
    except Exception:  # not a valid hub id, no huggingface_hub: no tokenizer
        return None
    return Path(cached) if isinstance(cached, str) else None


@functools.lru_cache(maxsize=8)
def decoder_for(model_path: Optional[str]) -> Optional[tuple[Decoder, int]]:
    """(decode, vocabulary size) of the run's tokenizer, or None where it is not available."""
    path = tokenizer_file(model_path)
    if path is None:
        return None
    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
    except Exception:  # a damaged or unsupported file: the page falls back to the ids
        return None
    return (lambda ids: tokenizer.decode(ids, skip_special_tokens=False),
            tokenizer.get_vocab_size(with_added_tokens=True))


def pieces_of(token_ids: list[int], decode: Decoder) -> list[str]:
    """One text piece per token id; joined, they read as the decoded turn.

    Each piece is what decoding up to the token adds to decoding up to the one before, over a
    short window (so a tokenizer that strips a leading space, or merges bytes, is read in
    context). A token that ends inside a multi-byte character gets an empty piece, and the
    character goes to the token that completes it."""
    pieces: list[str] = []
    prefix = read = 0  # decode(ids[prefix:read]) is text already given out
    for end in range(1, len(token_ids) + 1):
        before = decode(token_ids[prefix:read])
        after = decode(token_ids[prefix:end])
        if len(after) > len(before) and after.startswith(before) and not after.endswith(_REPLACEMENT):
            pieces.append(after[len(before):])
            prefix, read = read, end
        else:
            pieces.append("")
    if read < len(token_ids) and pieces:  # ends inside a character: keep what it decodes to
        before = decode(token_ids[prefix:read])
        pieces[-1] += decode(token_ids[prefix:])[len(before):]
    return pieces


def run_decoder(model_path: Optional[str], token_ids: Iterable[Optional[list[list[int]]]]
                ) -> Optional[Decoder]:
    """The decode function for a run's answers (their token ids per answer); None without a
    tokenizer, or when an id of the run lies outside its vocabulary: then it is not the
    tokenizer the run used, and no answer of the run is decoded with it."""
    found = decoder_for(model_path)
    if found is None:
        return None
    decode, vocabulary = found
    if any(not 0 <= t < vocabulary for turns in token_ids for turn in turns or [] for t in turn):
        return None
    return decode


def answer_pieces(token_ids: Optional[list[list[int]]], decode: Optional[Decoder]
                  ) -> Optional[list[list[str]]]:
    """Per turn, the pieces of its token ids; None without ids or without a decoder."""
    if not token_ids or decode is None:
        return None
    try:
        return [pieces_of(list(turn), decode) for turn in token_ids]
    except Exception:  # a tokenizer that fails on these ids: the page shows the ids
        return None
