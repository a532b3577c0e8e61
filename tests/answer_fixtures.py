"""Answer-file fixtures written from the documented schema (docs/answer-format.md).

Two kinds of lines: `spec_bench_answer` (only Spec-Bench's fields, as its own scripts write
them) and `our_answer` (plus our fields: token_ids, time split, draft counts, run description).
`synthetic_run` builds a whole consistent file over `QUESTIONS`, for tests that need many
questions but not hand-made numbers (the leaderboard tests may reuse it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

from evaluation.record.subtasks import MT_BENCH_CATEGORIES

# One or two questions per subtask, ids as in Spec-Bench's question file, plus an extra subtask.
QUESTIONS: list[tuple[int, str]] = [
    (81, "writing"), (82, "coding"),
    (161, "translation"), (162, "translation"),
    (241, "summarization"),
    (321, "qa"),
    (401, "math_reasoning"),
    (481, "rag"),
    (561, "law_analytics"),
]

OUR_ENVIRONMENT = {
    "device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "dtype": "float16",
    "torch": "2.13.0", "transformers": "5.23.0", "cuda": "12.8", "python": "3.11.9",
    "platform": "Linux", "model_path": "lmsys/vicuna-7b-v1.3", "attention": "sdpa",
}


def turn_count(category: str) -> int:
    return 2 if category in MT_BENCH_CATEGORIES else 1


def spec_bench_answer(question_id, category: str, turns: list[str], new_tokens: list[int],
                      wall_time: list[float], accept_lengths: Optional[list[int]] = None,
                      decoding_steps: Optional[list[int]] = None,
                      model_id: str = "vicuna-7b-v1.3-pld-float16") -> dict:
    """One line as Spec-Bench writes it (no fields of ours)."""
    if accept_lengths is None:
        accept_lengths = [1] * sum(new_tokens)
    if decoding_steps is None:
        decoding_steps = list(new_tokens)
    return {
        "question_id": question_id, "category": category,
        "answer_id": f"answer{question_id:017d}" if isinstance(question_id, int) else "answer",
        "model_id": model_id,
        "choices": [{"index": 0, "turns": turns, "decoding_steps": decoding_steps,
                     "new_tokens": new_tokens, "wall_time": wall_time,
                     "accept_lengths": accept_lengths}],
        "tstamp": 1700000000.0,
    }


def our_answer(question_id, category: str, token_ids: list[list[int]], wall_time: list[float],
               accept_lengths: list[list[int]], *, turns: Optional[list[str]] = None,
               draft_tokens: Optional[list[int]] = None, draft_time: Optional[list[float]] = None,
               verify_time: Optional[list[float]] = None,
               prefill_time: Optional[list[float]] = None,
               method: str = "pld", method_params: Optional[dict] = None,
               model_id: str = "vicuna-7b-v1.3-pld", temperature: float = 0.0,
               bench_name: str = "spec_bench", max_new_tokens: int = 1024, lossy: bool = False,
               environment: Optional[dict] = None, error: Optional[str] = None) -> dict:
    """One line of our runner. accept_lengths is given per turn and written flat, as the
    format says (each turn's entries sum to its token count)."""
    for ids, steps in zip(token_ids, accept_lengths):
        assert sum(steps) == len(ids), "fixture: accept lengths must sum to the turn's tokens"
    choice = {
        "index": 0,
        "turns": turns if turns is not None else [text_of(ids) for ids in token_ids],
        "decoding_steps": [len(steps) for steps in accept_lengths],
        "new_tokens": [len(ids) for ids in token_ids],
        "wall_time": wall_time,
        "accept_lengths": [n for steps in accept_lengths for n in steps],
        "token_ids": token_ids,
        "prompt_tokens": [30 + 10 * t for t in range(len(token_ids))],
    }
    for name, value in (("draft_tokens", draft_tokens), ("draft_time", draft_time),
                        ("verify_time", verify_time), ("prefill_time", prefill_time)):
        if value is not None:
            choice[name] = value
    record = {
        "question_id": question_id, "category": category, "answer_id": f"ours{question_id}",
        "model_id": model_id, "choices": [choice], "tstamp": 1700000000.0,
        "method": method, "method_params": method_params if method_params is not None else {},
        "bench_name": bench_name, "temperature": temperature, "top_p": 1.0, "top_k": 0,
        "max_new_tokens": max_new_tokens, "seed": 0, "lossy": lossy,
        "environment": environment if environment is not None else dict(OUR_ENVIRONMENT),
    }
    if error is not None:
        record["error"] = error
    return record


def text_of(token_ids: Iterable[int]) -> str:
    """A stand-in detokenisation: one word per token."""
    return " ".join(f"w{t}" for t in token_ids)


def write_answer_file(path: Path | str, records: Iterable[dict]) -> Path:
    """One JSON object per line, with json.dumps defaults as Spec-Bench writes them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_lines(path: Path | str, lines: Iterable[str]) -> Path:
    """Raw lines, for malformed files."""
    path = Path(path)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def synthetic_run(*, method: str = "pld", accept: int = 3, seconds_per_step: float = 0.02,
                  draft_length: int = 4, questions: list[tuple[int, str]] = QUESTIONS,
                  tokens_per_turn: int = 12, model_id: Optional[str] = None,
                  spec_bench: bool = False) -> list[dict]:
    """A consistent run: every turn commits `tokens_per_turn` tokens in steps of `accept`
    (the last step takes the rest), each step taking `seconds_per_step` seconds. The baseline
    is method="vanilla", accept=1, draft_length=0. Token ids are the same for every method, so
    runs are lossless relative to each other."""
    records = []
    for qid, category in questions:
        token_ids, steps = [], []
        for t in range(turn_count(category)):
            ids = [(qid * 7 + 13 * t + i) % 1000 for i in range(tokens_per_turn)]
            lengths = [accept] * (tokens_per_turn // accept)
            if tokens_per_turn % accept:
                lengths.append(tokens_per_turn % accept)
            token_ids.append(ids)
            steps.append(lengths)
        wall = [len(s) * seconds_per_step for s in steps]
        name = model_id or f"vicuna-7b-v1.3-{method}-float16"
        if spec_bench:
            records.append(spec_bench_answer(
                qid, category, [text_of(ids) for ids in token_ids],
                [len(ids) for ids in token_ids], wall, [n for s in steps for n in s],
                [len(s) for s in steps], model_id=name))
        else:
            records.append(our_answer(
                qid, category, token_ids, wall, steps, method=method,
                method_params={"max_draft_length": draft_length} if draft_length else {},
                draft_tokens=[len(s) * draft_length for s in steps],
                draft_time=[w * 0.25 for w in wall], verify_time=[w * 0.6 for w in wall],
                prefill_time=[w * 0.1 for w in wall], model_id=name))
    return records


def write_byte_tokenizer(folder: Path | str) -> Path:
    """A model folder whose tokenizer.json maps each UTF-8 byte to the id of its value (id 256
    is the unknown token): a character of several bytes spans several tokens, as in real
    byte-level vocabularies. Returns the folder."""
    from tokenizers import Tokenizer, decoders, models

    vocab = {f"<0x{b:02X}>": b for b in range(256)} | {"<unk>": 256}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def byte_ids(text: str) -> list[int]:
    """The ids write_byte_tokenizer's tokenizer gives a text."""
    return list(text.encode("utf-8"))


def write_question_file(path: Path | str, questions: Iterable[tuple[int, str]] = QUESTIONS) -> Path:
    """A question file for `questions` (as many turns as turn_count says), in Spec-Bench's format."""
    return write_answer_file(path, [
        {"question_id": qid, "category": category,
         "turns": [f"Question {qid}, turn {t + 1}: say <b>something</b>." for t in range(turn_count(category))]}
        for qid, category in questions])
