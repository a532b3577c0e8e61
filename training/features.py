"""Teacher-forced target features over a distillation corpus, cached on disk.

Every trained drafter learns from the same thing: the frozen target run once over each corpus
conversation (prompt + the target's own answer). This module does that forward, keeps per
position the token id, whether the position is an answer token (the loss mask), and the hidden
states the method asks for (``HiddenStateRequest``: the final normed feature, inputs of given
layers), stored as float16 numpy memmaps under ``<cache>/features/`` (``$SDBENCH_CACHE`` or
``~/.cache/sdbench``). The cache key is the base model's weight fingerprint, the corpus file's
sha256 and the extraction settings, so a second training run starts at once; a run over a new
corpus copies the states of the sequences it shares with earlier runs on the same base.

Corpus lines (gzip JSONL) are conversations as written by training/make_corpus.py. The answer is
taken from ``answer_token_ids`` when the line has it (the exact tokens the target generated;
``prompt_token_ids`` likewise for the prompt, else the chat template of the user turn), else the
assistant text is tokenised through the chat template. ``split`` ("train" / "heldout") is used
when present; otherwise a fixed hash of the conversation id puts about ``heldout_fraction`` of
the conversations in the held-out split.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from methods.core.file_hash import file_sha256
from methods.core.hidden_states import HiddenStateRequest
from methods.core.paths import cache_root
from methods.heads.artifact import base_fingerprint
from training.target_states import TargetStates

FORMAT_VERSION = 1


class CorpusError(ValueError):
    pass


@dataclass
class Sequence:
    tokens: list[int]
    answer_start: int  # index of the first answer token
    heldout: bool


@dataclass
class Features:
    """Flat arrays over all positions of all sequences (``starts`` delimits sequences)."""

    tokens: np.ndarray  # int32 [N]
    answer: np.ndarray  # bool [N]: the token is part of an answer (a training label)
    starts: np.ndarray  # int64 [S + 1]
    heldout: np.ndarray  # bool [S]
    final: Optional[np.ndarray]  # float16 [N, H]
    layer_inputs: dict[int, np.ndarray]  # float16 [N, H] per requested layer
    folder: Path

    @property
    def sequence_of_position(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.heldout)), np.diff(self.starts))


def is_heldout(conversation_id: str, fraction: float) -> bool:
    """Deterministic held-out rule for corpora without a ``split`` field."""
    h = int(hashlib.sha256(str(conversation_id).encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def read_corpus(path: Path, limit: Optional[int] = None) -> list[dict]:
    if not path.is_file():
        raise CorpusError(f"corpus not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}:{number}: not JSON ({exc})") from None
            if limit is not None and len(records) >= limit:
                break
    if not records:
        raise CorpusError(f"{path}: no conversations")
    return records


def _chat_ids(tokenizer, messages, add_generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # BatchEncoding in some versions
        ids = ids["input_ids"]
    return list(ids)


def to_sequence(record: dict, tokenizer, heldout_fraction: float, where: str) -> Sequence:
    messages = record.get("conversations")
    if not isinstance(messages, list) or not messages or messages[-1].get("role") != "assistant":
        raise CorpusError(f"{where}: 'conversations' must end with an assistant message")
    split = record.get("split")
    if split is None:
        heldout = is_heldout(record.get("id", where), heldout_fraction)
    elif split in ("train", "heldout"):
        heldout = split == "heldout"
    else:
        raise CorpusError(f"{where}: split {split!r} is neither 'train' nor 'heldout'")
    eos = tokenizer.eos_token_id
    if "answer_token_ids" in record:
        answer = [int(t) for t in record["answer_token_ids"]]
        if record.get("finished") and eos is not None and (not answer or answer[-1] != eos):
            answer.append(eos)  # the target stopped with its end token: drafters must predict it too
        prompt = record.get("prompt_token_ids")
        prompt = [int(t) for t in prompt] if prompt is not None else _chat_ids(tokenizer, messages[:-1], True)
    else:
        prompt = _chat_ids(tokenizer, messages[:-1], True)
        full = _chat_ids(tokenizer, messages, False)
        if full[: len(prompt)] != prompt:
            raise CorpusError(f"{where}: the chat template of the whole conversation does not start with the prompt's")
        answer = full[len(prompt):]
        # Up to and including the end-of-turn token; what the template adds after it is not generated.
        if eos in answer:
            answer = answer[: answer.index(eos) + 1]
    if not answer:
        raise CorpusError(f"{where}: empty answer")
    return Sequence(tokens=prompt + answer, answer_start=len(prompt), heldout=heldout)


def _cache_key(model, corpus_sha: str, request: HiddenStateRequest, limit, max_length, heldout_fraction) -> str:
    fingerprint = base_fingerprint(model)
    text = json.dumps({"v": FORMAT_VERSION, "base": fingerprint["tensors"], "corpus": corpus_sha,
                       "layers": list(request.layer_inputs), "final": request.final, "limit": limit,
                       "max_length": max_length, "heldout": heldout_fraction}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _base_key(model) -> str:
    """The base weights' identity as the cache keys use it (probes of named tensors, exact)."""
    text = json.dumps({"v": FORMAT_VERSION, "base": base_fingerprint(model)["tensors"]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _family_key(model, corpus_sha: str, limit, max_length, heldout_fraction) -> str:
    """What fixes the positions of a run, whatever states it keeps: runs of one family share their
    tokens and differ only in which layers they stored, so one that stored more serves a request
    for less."""
    fingerprint = base_fingerprint(model)
    text = json.dumps({"v": FORMAT_VERSION, "base": fingerprint["tensors"], "corpus": corpus_sha, "limit": limit,
                       "max_length": max_length, "heldout": heldout_fraction}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def union(*requests: HiddenStateRequest) -> HiddenStateRequest:
    """One request for everything several drafters read (one target run serves them all)."""
    layers = sorted({i for r in requests for i in r.layer_inputs})
    return HiddenStateRequest(layer_inputs=tuple(layers), final=any(r.final for r in requests))


def _covers(meta: dict, request: HiddenStateRequest) -> bool:
    return (meta["final"] or not request.final) and set(request.layer_inputs) <= set(meta["layers"])


def _find_superset(family: str, request: HiddenStateRequest) -> Optional[tuple[Path, dict]]:
    """A finished run of the same family that stored at least what ``request`` asks for."""
    root = cache_root() / "features"
    if not root.is_dir():
        return None
    for meta_file in sorted(root.glob("*/meta.json")):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if meta.get("family") == family and _covers(meta, request):
            return meta_file.parent, meta
    return None


def _same_base(meta: dict, base: str, model, max_length, heldout_fraction, shas: dict) -> bool:
    """Whether a cached run was made on this base: its recorded base key, or, for a run from before
    that was recorded, its family key recomputed from its corpus (when that file is still there)."""
    if "base" in meta:
        return meta["base"] == base
    corpus = Path(meta.get("corpus", ""))
    if "family" not in meta or not corpus.is_file():
        return False
    if corpus not in shas:
        shas[corpus] = file_sha256(corpus)
    return meta["family"] == _family_key(model, shas[corpus], None, max_length, heldout_fraction)


def _reusable_states(model, request: HiddenStateRequest, max_length: int, heldout_fraction: float,
                     skip: Path) -> dict[bytes, tuple[Features, int, int]]:
    """States already computed for the same token sequences in other finished runs on this base:
    ``{token bytes: (their run, start, end)}``. A sequence is run alone, so its states depend only
    on its tokens and the base, and a larger corpus (the whole corpus after a subset of it, a
    subset after a smaller one) need not run the target again over the sequences it shares."""
    root = cache_root() / "features"
    if not root.is_dir():
        return {}
    base, shas, found = _base_key(model), {}, {}
    for meta_file in sorted(root.glob("*/meta.json")):
        if meta_file.parent == skip:
            continue
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if meta.get("version") != FORMAT_VERSION or not _covers(meta, request):
            continue
        if not _same_base(meta, base, model, max_length, heldout_fraction, shas):
            continue
        run = _open(meta_file.parent, meta, request=request)
        for a, b in zip(run.starts[:-1].tolist(), run.starts[1:].tolist()):
            found.setdefault(run.tokens[a:b].tobytes(), (run, a, b))
    return found


def _open(folder: Path, meta: dict, request: Optional[HiddenStateRequest] = None) -> Features:
    """The run in ``folder``: every state it stored, or only those ``request`` asks for."""
    n, h = meta["positions"], meta["hidden"]
    final = meta["final"] if request is None else request.final
    layers = meta["layers"] if request is None else request.layer_inputs

    def mm(name, dtype, shape):
        return np.memmap(folder / name, dtype=dtype, mode="r", shape=shape)

    return Features(
        tokens=np.load(folder / "tokens.npy"), answer=np.load(folder / "answer.npy"),
        starts=np.load(folder / "starts.npy"), heldout=np.load(folder / "heldout.npy"),
        final=mm("final.f16", np.float16, (n, h)) if final else None,
        layer_inputs={i: mm(f"layer{i}.f16", np.float16, (n, h)) for i in layers},
        folder=folder,
    )


@torch.inference_mode()
def build_features(model, tokenizer, corpus: Path, request: HiddenStateRequest, limit: Optional[int] = None,
                   max_length: int = 1024, heldout_fraction: float = 0.1, cache: bool = True,
                   progress: bool = True, save_every_s: float = 60.0, backend: str = "auto",
                   both_splits: bool = True) -> Features:
    """Run the frozen ``model`` over the corpus once (or reuse the cached run, or a cached run of
    the same corpus that stored more states). An interrupted run resumes where it was last saved
    (every ``save_every_s`` seconds), so a corpus of millions of positions survives a stop. A
    sequence some other cached run on this base already holds (a subset's pass before the whole
    corpus's) is copied from it instead of run again; ``cache=False`` runs everything. ``backend``:
    the engine backend the target runs on (training/target_states.py; ``auto`` as the engine
    resolves it: lean on the CPU where it runs the model, else hf; the same states up to float32
    rounding). ``both_splits``: refuse a corpus whose conversations are all in one split (a
    training run needs both; a measurement of held-out figures only does not)."""
    corpus = Path(corpus)
    corpus_sha = file_sha256(corpus)
    key = _cache_key(model, corpus_sha, request, limit, max_length, heldout_fraction)
    family = _family_key(model, corpus_sha, limit, max_length, heldout_fraction)
    folder = cache_root() / "features" / key
    if cache:
        if (folder / "meta.json").is_file():
            return _open(folder, json.loads((folder / "meta.json").read_text()))
        found = _find_superset(family, request)
        if found is not None:
            return _open(*found, request=request)

    sequences, _ = corpus_sequences(read_corpus(corpus, limit), tokenizer, corpus, max_length, heldout_fraction,
                                    both_splits)
    starts = np.concatenate([[0], np.cumsum([len(s.tokens) for s in sequences])]).astype(np.int64)
    n = int(starts[-1])
    hidden = int(model.config.get_text_config().hidden_size)
    tmp, final, layers, done = _new_folder(folder, sequences, starts, request, hidden, resume=cache)
    # A recipe that asks for no states (SPACE runs the frozen target in its loss) needs the tokens
    # and the answer mask only: no forward at all.
    work = list(zip(sequences, starts[:-1]))[done:] if request else []
    if done and work:
        print(f"target features: resuming after {done} of {len(sequences)} sequences", flush=True)
    arrays = ([final] if final is not None else []) + list(layers.values())
    reusable = _reusable_states(model, request, max_length, heldout_fraction, folder) if cache and work else {}
    saved_at, completed, reused = time.monotonic(), done, 0
    with (TargetStates(model, request, backend) if work else contextlib.nullcontext()) as target_states:
        if work and progress:
            print(f"target features: {len(work)} sequences on the {target_states.name} backend", flush=True)
        bar = tqdm(work, desc="target features", unit="seq", disable=not progress, initial=done if work else 0,
                   total=len(sequences) if work else 0)
        try:
            for s, start in bar:
                end = start + len(s.tokens)
                source = reusable.get(np.asarray(s.tokens, dtype=np.int32).tobytes())
                if source is not None:  # computed before, in another run on this base
                    run, a, b = source
                    if final is not None:
                        final[start:end] = run.final[a:b]
                    for i, array in layers.items():
                        array[start:end] = run.layer_inputs[i][a:b]
                    reused += 1
                else:
                    states = target_states(s.tokens)
                    if final is not None:
                        final[start:end] = states.final.float().cpu().numpy()
                    for i, array in layers.items():
                        array[start:end] = states.layer_inputs[i].float().cpu().numpy()
                completed += 1
                if time.monotonic() - saved_at >= save_every_s:
                    _save_progress(tmp, arrays, key, completed)
                    saved_at = time.monotonic()
        except BaseException:  # Ctrl-C or an error: keep what is done for the next run
            if completed > done:
                _save_progress(tmp, arrays, key, completed)
            raise
    if reused:
        print(f"target features: {reused} of {len(work)} sequences taken from earlier runs on this base", flush=True)
    return _finish_folder(folder, tmp, final, layers, request, corpus, len(sequences), n, hidden, family,
                          _base_key(model))


def _save_progress(tmp: Path, arrays: list, key: str, done: int) -> None:
    """Flush the states written so far, then record how many sequences they hold (in that order,
    so the record never claims states that are not on disk)."""
    for array in arrays:
        array.flush()
    (tmp / "progress.tmp").write_text(json.dumps({"key": key, "done": done}))
    (tmp / "progress.tmp").replace(tmp / "progress.json")


def corpus_sequences(records: list[dict], tokenizer, corpus: Path, max_length: int,
                     heldout_fraction: float, both_splits: bool = True) -> tuple[list[Sequence], list[int]]:
    """The sequences features are built from (cut at ``max_length``; a record whose prompt fills
    it is left out) and, for each, the index of its record."""
    sequences, kept = [], []
    for i, r in enumerate(records):
        s = to_sequence(r, tokenizer, heldout_fraction, f"{corpus} conversation {i}")
        del s.tokens[max_length:]
        if s.answer_start < len(s.tokens):
            sequences.append(s)
            kept.append(i)
    if not sequences:
        raise CorpusError(f"{corpus}: every conversation's prompt fills --max-length {max_length}")
    if both_splits and (not any(s.heldout for s in sequences) or all(s.heldout for s in sequences)):
        raise CorpusError(f"{corpus}: training needs conversations in both the train and the held-out "
                          f"split ({sum(s.heldout for s in sequences)} of {len(sequences)} held out)")
    return sequences, kept


def _new_folder(folder: Path, sequences: list[Sequence], starts: np.ndarray, request: HiddenStateRequest,
                hidden: int, resume: bool = False):
    """A temporary folder beside ``folder`` with the token arrays written and the state memmaps
    open, and how many sequences already hold their states: with ``resume``, an interrupted run's
    folder of the same key is continued (its arrays kept), anything else starts afresh."""
    n = int(starts[-1])
    tmp = folder.with_name(folder.name + ".tmp")
    done = 0
    progress = tmp / "progress.json"
    if resume and progress.is_file():
        try:
            record = json.loads(progress.read_text())
        except (OSError, json.JSONDecodeError):
            record = {}
        if record.get("key") == folder.name and 0 < int(record.get("done", 0)) <= len(sequences):
            done = int(record["done"])
    if not done:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    tokens = np.concatenate([np.array(s.tokens, dtype=np.int32) for s in sequences])
    answer = np.zeros(n, dtype=bool)
    for s, start in zip(sequences, starts[:-1]):
        answer[start + s.answer_start: start + len(s.tokens)] = True
    np.save(tmp / "tokens.npy", tokens)
    np.save(tmp / "answer.npy", answer)
    np.save(tmp / "starts.npy", starts)
    np.save(tmp / "heldout.npy", np.array([s.heldout for s in sequences], dtype=bool))
    mode = "r+" if done else "w+"
    final = np.memmap(tmp / "final.f16", dtype=np.float16, mode=mode, shape=(n, hidden)) if request.final else None
    layers = {i: np.memmap(tmp / f"layer{i}.f16", dtype=np.float16, mode=mode, shape=(n, hidden))
              for i in request.layer_inputs}
    return tmp, final, layers, done


def _finish_folder(folder, tmp, final, layers, request, corpus, sequences: int, n: int, hidden: int,
                   family: Optional[str] = None, base: Optional[str] = None) -> Features:
    for array in ([final] if final is not None else []) + list(layers.values()):
        array.flush()
    meta = {"version": FORMAT_VERSION, "positions": n, "hidden": hidden, "sequences": sequences,
            "final": request.final, "layers": list(request.layer_inputs), "corpus": str(corpus)}
    if family is not None:
        meta["family"] = family
    if base is not None:
        meta["base"] = base
    (tmp / "progress.json").unlink(missing_ok=True)
    (tmp / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return _open(folder, meta)


def subset_features(model, tokenizer, corpus: Path, subset: Path, request: HiddenStateRequest,
                    max_length: int = 1024, heldout_fraction: float = 0.1, progress: bool = True) -> Features:
    """The features of ``subset``, a corpus whose records are all records of ``corpus``, cut out
    of ``corpus``'s (built or read from the cache) and cached under ``subset``'s own key, so that
    ``build_features(subset)`` then finds them: the target runs once over the whole corpus
    however many subsets are trained on. Each sequence is run alone, so its states do not depend
    on which other sequences share the corpus."""
    subset = Path(subset)
    key = _cache_key(model, file_sha256(subset), request, None, max_length, heldout_fraction)
    folder = cache_root() / "features" / key
    if (folder / "meta.json").is_file():
        return _open(folder, json.loads((folder / "meta.json").read_text()))
    full = build_features(model, tokenizer, corpus, request, max_length=max_length,
                          heldout_fraction=heldout_fraction, progress=progress)
    records = read_corpus(Path(corpus))
    _, kept = corpus_sequences(records, tokenizer, corpus, max_length, heldout_fraction)
    sequence_of_record = {i: j for j, i in enumerate(kept)}
    index_of_id = {}
    for i, r in enumerate(records):
        if "id" not in r or r["id"] in index_of_id:
            raise CorpusError(f"{corpus}: record {i + 1} has no id or a repeated one; subsets are matched by id")
        index_of_id[r["id"]] = i
    chosen = []  # sequences of ``corpus``, in ``subset``'s order
    for i, r in enumerate(read_corpus(subset)):
        full_index = index_of_id.get(r.get("id"))
        if full_index is None or records[full_index] != r:
            raise CorpusError(f"{subset}: record {i + 1} (id {r.get('id')!r}) is not a record of {corpus}")
        if full_index in sequence_of_record:
            chosen.append(sequence_of_record[full_index])
    if len(kept) != len(full.heldout):
        raise CorpusError(f"the cached features of {corpus} hold {len(full.heldout)} sequences, its records give "
                          f"{len(kept)}: delete {full.folder} to rebuild them")
    spans = [(int(full.starts[j]), int(full.starts[j + 1])) for j in chosen]
    sequences = [Sequence(tokens=full.tokens[a:b].tolist(), answer_start=int(np.argmax(full.answer[a:b])),
                          heldout=bool(full.heldout[j])) for (a, b), j in zip(spans, chosen)]
    starts = np.concatenate([[0], np.cumsum([b - a for a, b in spans])]).astype(np.int64)
    hidden = int(model.config.get_text_config().hidden_size)
    tmp, final, layers, _ = _new_folder(folder, sequences, starts, request, hidden)
    for (a, b), start in zip(spans, starts[:-1]):
        end = int(start) + b - a
        if final is not None:
            final[start:end] = full.final[a:b]
        for i, array in layers.items():
            array[start:end] = full.layer_inputs[i][a:b]
    return _finish_folder(folder, tmp, final, layers, request, subset, len(sequences), int(starts[-1]), hidden,
                          base=_base_key(model))
