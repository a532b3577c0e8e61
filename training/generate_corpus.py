"""Build the drafters' training corpus at scale: the target writes the user turns and answers them.

No human-written chat data can be downloaded here, and none is needed. Four stages, each a pass of
the batched lean decoder (training/batched_decoding.py) over the previous stage's output:

    user1    the target writes first user turns, sampled (temperature 0.9) from its chat template up
             to the user header, steered by training/corpus_tasks.py: a system line (who writes,
             about what topic) and the first words of the message
    answer1  each kept user turn is answered greedily, formatted as the evaluation runner formats
             a first turn
    user2    for a share of the conversations (``--follow-up-fraction``) the target writes a second
             user turn after its own answer
    answer2  ... and answers it greedily, with the conversation as the runner formats a second turn

User turns are dropped when empty or very short, cut at their budget (runaways), repetitive, a
near-duplicate of an earlier one, carrying chat markup, or sharing a 10-word run with the bundled
set or Spec-Bench's questions (training/corpus_leakage.py); ``--stats`` counts each reason.

Every stage appends its records to its own gzip file in ``--work-dir`` and skips what is there on
a rerun, so an interrupted build resumes where it stopped (at most ``--flush-every`` records are
lost). ``--shard K/N`` takes every N-th seed, for N processes or machines, each with its own
work folder; ``--merge`` then writes one corpus from any number of work folders:

    python -m training.generate_corpus --conversations 28000       # resumes data/corpus/build/
    python -m training.generate_corpus --merge data/corpus/build --out data/corpus/smollm2_corpus.jsonl.gz

The corpus keeps make_corpus.py's record format (one line per answered turn; a second turn's
``prompt_token_ids`` hold the whole conversation before it), so REST, SAM-Decoding and the
trainers read it unchanged; ``split`` holds out a share of every task by the SHA-256 of the
conversation id, and a second turn always shares its conversation's split.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Iterator, Optional

import torch
from tqdm import tqdm

from methods.core.conversation import Conversation
from training import corpus_tasks
from methods.core.backends.lean_rows import PRODUCTS
from training.batched_decoding import Finished, Job, decode_jobs
from training.corpus_leakage import DEFAULT_SETS, DEFAULT_WORDS, evaluation_runs, shares_a_run, word_runs
from training.make_corpus import assign_splits, corpus_stats, eos_ids

STAGES = ("user1", "answer1", "user2", "answer2")
_WORDS = re.compile(r"\w+")


# ---------------------------------------------------------------- files
def read_records(path: Path) -> list[dict]:
    """The records of a stage file. A member torn by a killed run is skipped; a line that is not
    JSON inside a whole member is damage, and an error naming it."""
    if not path.exists():
        return []
    with open(path, "rb") as raw:
        data = raw.read()
    try:
        text = gzip.decompress(data).decode("utf-8")
    except (EOFError, gzip.BadGzipFile, OSError):
        text = _complete_members(data)
    records = []
    # Split on newlines only: str.splitlines() also splits at U+2028 and the like, which the
    # model's text may hold (json.dumps with ensure_ascii=False writes them as they are).
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {number} is not JSON ({exc}); the file is damaged") from None
    return records


def _complete_members(data: bytes) -> str:
    """The text of the gzip members that are whole (a run killed mid-write leaves a torn one)."""
    out, rest = [], data
    while rest:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = decompressor.decompress(rest)
        except zlib.error:
            break
        if not decompressor.eof:
            break
        out.append(chunk.decode("utf-8", errors="replace"))
        rest = decompressor.unused_data
    return "".join(out)


class Appender:
    """Appends records to a gzip file, one member per flush, so a crash loses at most the
    records not yet flushed."""

    def __init__(self, path: Path, flush_every: int):
        self.path, self.flush_every, self.pending = path, flush_every, []
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, record: dict) -> None:
        self.pending.append(record)
        if len(self.pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.pending)
        with open(self.path, "ab") as f:
            f.write(gzip.compress(text.encode("utf-8"), mtime=0))
            f.flush()
        self.pending = []


# ---------------------------------------------------------------- prompts
def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def user_turn_prefix(tokenizer, messages: list[dict]) -> str:
    """The chat-formatted text of ``messages`` followed by the header of a new user message:
    what the model continues when it writes a user turn (the Magpie technique)."""
    sentinel = "\ue000USER-TURN\ue000"
    text = tokenizer.apply_chat_template(messages + [{"role": "user", "content": sentinel}], tokenize=False,
                                         add_generation_prompt=False)
    if sentinel not in text:
        raise ValueError("the chat template does not show the user's message; cannot write user turns with it")
    return text.split(sentinel, 1)[0]


def answer_prompt_ids(tokenizer, turns: list[tuple[str, Optional[str]]]) -> list[int]:
    """The prompt of the last turn as the evaluation runner formats it (earlier answers cleaned)."""
    conversation = Conversation(tokenizer, "chat")
    for question, answer in turns[:-1]:
        conversation.record(question, answer)
    return conversation.prompt_ids(turns[-1][0])


# ---------------------------------------------------------------- filters
class UserTurnFilter:
    """Why a written user turn is not used, or None. Remembers the turns it let through, so a
    near-duplicate of an earlier one is dropped."""

    def __init__(self, question_files: list[Path], special_ids: set[int], words: int = DEFAULT_WORDS):
        self.words = words
        self.special_ids = special_ids
        self.evaluation_runs = evaluation_runs(question_files, words)
        self.seen: set[str] = set()

    @staticmethod
    def _key(text: str) -> str:
        """Near-duplicates share their first 12 words (case and punctuation aside)."""
        return " ".join(_WORDS.findall(text.lower())[:12])

    def problem(self, text: str, ids: list[int], finished: bool, min_words: int = 3) -> Optional[str]:
        if not finished:
            return "runaway"
        words = _WORDS.findall(text.lower())
        if len(words) < min_words:
            return "too short"
        if any(t in self.special_ids for t in ids):
            return "chat markup"
        if len(words) >= 12:
            trigrams = [tuple(words[i: i + 3]) for i in range(len(words) - 2)]
            if len(set(trigrams)) < 0.6 * len(trigrams):
                return "repetitive"
        if word_runs(text, self.words) & self.evaluation_runs:
            return "shares a run with an evaluation set"
        key = self._key(text)
        if key in self.seen:
            return "near-duplicate"
        self.seen.add(key)
        return None


def kept_user_turns(path: Path, user_filter: UserTurnFilter, counts: Counter, min_words: int = 3) -> Iterator[dict]:
    """The user turns of a stage file that pass the filter, judged in id order over the whole file
    (so the same file always keeps the same turns, however many runs wrote it); ``counts`` gets
    each reason."""
    user_filter.seen = set()
    for record in sorted(read_records(path), key=lambda r: r["id"]):
        reason = user_filter.problem(record["user"], record["user_token_ids"], record["finished"], min_words)
        counts[reason or "kept"] += 1
        if reason is None:
            yield record


def stage_path(work: Path, stage: str) -> Path:
    return work / f"{stage}.jsonl.gz"


def user_turn_filter(args, tokenizer) -> UserTurnFilter:
    return UserTurnFilter(args.against or [p for p in DEFAULT_SETS if p.is_file()], set(tokenizer.all_special_ids))


# ---------------------------------------------------------------- stages
class Builder:
    def __init__(self, args, target, tokenizer, model_id: str):
        self.args, self.target, self.tokenizer, self.model_id = args, target, tokenizer, model_id
        self.work = args.work_dir
        self.stop_ids = eos_ids(target.model, tokenizer)
        self.context_limit = int(getattr(target.model.config, "max_position_embeddings", 0) or 0) or None
        self.filter = user_turn_filter(args, tokenizer)

    def path(self, stage: str) -> Path:
        return stage_path(self.work, stage)

    def run(self, stage: str, jobs: list[Job], record_of) -> None:
        """Decode the jobs not yet in the stage's file, appending a record for each."""
        done = {r["id"] for r in read_records(self.path(stage))}
        todo = [j for j in jobs if j.id not in done]
        print(f"{stage}: {len(todo)} to write ({len(done)} already in {self.path(stage)})", file=sys.stderr)
        if not todo:
            return
        # Long prompts together: rows that start together finish at similar times.
        todo.sort(key=lambda j: (len(j.prompt_ids), j.id))
        out = Appender(self.path(stage), self.args.flush_every)
        tokens = 0
        start = time.perf_counter()
        with tqdm(total=len(todo), unit="turn", desc=stage) as bar:
            def finished(result: Finished) -> None:
                nonlocal tokens
                record = record_of(result)
                if self.args.products != "exact":  # records without the field were decoded exactly
                    record["products"] = self.args.products
                out.add(record)
                tokens += len(result.token_ids)
                bar.update(1)
                bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - start, 1e-9):.0f}")
            try:
                decode_jobs(self.target, todo, self.args.batch_rows, self.stop_ids, finished,
                            context_limit=self.context_limit, products=self.args.products)
            finally:
                out.flush()

    # user turns -------------------------------------------------------------------
    def user_job(self, job_id: str, prefix_text: str, opener: str, max_tokens: int) -> Job:
        return Job(id=job_id, prompt_ids=_ids(self.tokenizer, prefix_text + opener), max_new_tokens=max_tokens,
                   temperature=self.args.user_temperature, top_p=self.args.user_top_p)

    def user_record(self, result: Finished, extra: dict) -> dict:
        opener_ids = result.job.prompt_ids[len(result.job.prompt_ids) - extra.pop("_opener_len"):]
        ids = opener_ids + result.token_ids
        return {"id": result.job.id, **extra, "finished": result.stopped, "model": self.model_id,
                "temperature": result.job.temperature, "top_p": result.job.top_p, "user_token_ids": ids, "user": self.tokenizer.decode(ids, skip_special_tokens=False).strip()}

    def first_user_turns(self, seeds) -> None:
        jobs, extras = [], {}
        for seed in seeds:
            prefix = user_turn_prefix(self.tokenizer, [{"role": "system", "content": seed.system}])
            job = self.user_job(seed.id, prefix, seed.opener, seed.max_user_tokens)
            jobs.append(job)
            extras[seed.id] = {"task": seed.task, "opener": seed.opener,
                               "_opener_len": len(job.prompt_ids) - len(_ids(self.tokenizer, prefix))}
        self.run("user1", jobs, lambda r: self.user_record(r, dict(extras[r.job.id])))

    def kept_user_turns(self, stage: str, counts: Counter, min_words: int = 3) -> Iterator[dict]:
        return kept_user_turns(self.path(stage), self.filter, counts, min_words)

    # answers ----------------------------------------------------------------------
    def answer_record(self, result: Finished, extra: dict) -> dict:
        ids = result.token_ids
        return {"id": result.job.id, **extra, "model": self.model_id, "max_new_tokens": self.args.answer_tokens,
                "finished": result.stopped, "prompt_token_ids": result.job.prompt_ids, "answer_token_ids": ids}

    def answers(self, stage: str, users: list[dict], turns_of) -> None:
        jobs, extras = [], {}
        for user in users:
            turns = turns_of(user)
            jobs.append(Job(id=user["id"], prompt_ids=answer_prompt_ids(self.tokenizer, turns),
                            max_new_tokens=self.args.answer_tokens))
            extras[user["id"]] = {"task": user["task"], "turns": [t[0] for t in turns],
                                  "answers_before": [t[1] for t in turns[:-1]]}
        self.run(stage, jobs, lambda r: self.answer_record(r, extras[r.job.id]))

    def follow_ups(self, answered: list[dict]) -> None:
        jobs, extras = [], {}
        for record in answered:
            if not _chosen(record["id"], self.args.follow_up_fraction) or not record["finished"]:
                continue
            first_answer = self.answer_text(record["answer_token_ids"])
            messages = [{"role": "system", "content": corpus_tasks.system_line(corpus_tasks.FOLLOW_UP_PERSONA)},
                        {"role": "user", "content": record["turns"][0]},
                        {"role": "assistant", "content": first_answer}]
            prefix = user_turn_prefix(self.tokenizer, messages)
            opener = corpus_tasks.follow_up_opener(record["id"])
            job = self.user_job(record["id"] + "/2", prefix, opener, 80)
            jobs.append(job)
            extras[job.id] = {"task": record["task"], "opener": opener, "first_answer": first_answer,
                              "_opener_len": len(job.prompt_ids) - len(_ids(self.tokenizer, prefix))}
        self.run("user2", jobs, lambda r: self.user_record(r, dict(extras[r.job.id])))

    def answer_text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


def _chosen(conversation_id: str, fraction: float) -> bool:
    """Whether a conversation gets a second turn: a fixed share, by the hash of its id."""
    return corpus_tasks._rng("second-turn", conversation_id).random() < fraction


# ---------------------------------------------------------------- merge
def read_included(paths: list[Path]) -> list[dict]:
    """Records of finished corpus files (make_corpus's format, with token ids and a split) to be
    merged as they are."""
    records = []
    for path in paths:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SystemExit(f"{path}:{number}: not JSON ({exc})") from None
                if not isinstance(r, dict) or "id" not in r or "answer_token_ids" not in r or \
                        r.get("split") not in ("train", "heldout"):
                    raise SystemExit(f"{path}:{number}: not a corpus record (needs id, answer_token_ids and a "
                                     f"train/heldout split)")
                records.append(r)
    return records


def merge(work_dirs: list[Path], out: Path, tokenizer, heldout_fraction: float,
          include: tuple[Path, ...] = (), question_files: tuple[Path, ...] = ()) -> list[dict]:
    """One corpus from the answer stages of the work folders: make_corpus's record format, in id
    order, as one gzip member without a timestamp (the same records give the same bytes). The
    records of ``include`` (finished corpus files) follow, as they are. A record any of whose
    messages (the model's answers too) shares a 10-word run with ``question_files`` is left out;
    the splits are assigned before, so leaving one out moves no other conversation."""
    included = read_included(list(include))
    first, second = {}, {}
    for work in work_dirs:
        for stage, into in (("answer1", first), ("answer2", second)):
            for r in read_records(stage_path(work, stage)):
                if r["id"] in into:
                    raise SystemExit(f"{work}: id {r['id']!r} is also in another work folder")
                into[r["id"]] = r
    splits = assign_splits([{"id": i, "category": r["task"]} for i, r in first.items()], heldout_fraction)
    records = []
    for conversation_id, r in sorted(first.items()):
        records.append(_corpus_record(r, splits[conversation_id], tokenizer, turn=1))
        follow = second.get(conversation_id + "/2")
        if follow is not None:
            records.append(_corpus_record(follow, splits[conversation_id], tokenizer, turn=2))
    ids = {r["id"] for r in records}
    clash = next((r["id"] for r in included if r["id"] in ids), None)
    if clash is not None:
        raise SystemExit(f"--include: id {clash!r} is also in the build")
    records.extend(included)
    runs = evaluation_runs(question_files)
    leaking = [r["id"] for r in records if shares_a_run(r, runs)]
    if leaking:
        print(f"left out {len(leaking)} records sharing a 10-word run with an evaluation set: "
              f"{', '.join(leaking)}", file=sys.stderr)
        left_out = set(leaking)
        records = [r for r in records if r["id"] not in left_out]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as f:
        for r in records:
            f.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    tmp.replace(out)
    return records


def _corpus_record(r: dict, split: str, tokenizer, turn: int) -> dict:
    answers = [tokenizer.decode(r["answer_token_ids"], skip_special_tokens=True)]
    messages = []
    for k, question in enumerate(r["turns"]):
        messages.append({"role": "user", "content": question})
        if k < len(r["turns"]) - 1:
            messages.append({"role": "assistant", "content": r["answers_before"][k]})
    messages.append({"role": "assistant", "content": answers[0]})
    return {"id": r["id"], "category": r["task"], "split": split, "turn": turn, "model": r["model"],
            "max_new_tokens": r["max_new_tokens"], "finished": r["finished"],
            "prompt_token_ids": r["prompt_token_ids"], "answer_token_ids": r["answer_token_ids"],
            "conversations": messages, "products": r.get("products", "exact")}


# ---------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Stages: " + ", ".join(STAGES) + ".")
    parser.add_argument("--model-path", default="embedded",
                        help="'embedded' (default), a .gguf file, a local folder or a hub id")
    parser.add_argument("--work-dir", type=Path, default=Path("data/corpus/build"),
                        help="folder of the stage files; a rerun resumes from them. The default is committed: "
                             "the build goes on across sittings and machines (default: %(default)s)")
    parser.add_argument("--conversations", type=int, default=30000,
                        help="first user turns to write; a share is filtered out, --stats counts why (default: %(default)s)")
    parser.add_argument("--follow-up-fraction", type=float, default=0.2,
                        help="share of conversations given a second turn (default: %(default)s)")
    parser.add_argument("--answer-tokens", type=int, default=256,
                        help="longest answer; longer ones are cut, finished=false (default: %(default)s)")
    parser.add_argument("--user-temperature", type=float, default=0.9,
                        help="sampling temperature of the user turns (default: %(default)s)")
    parser.add_argument("--user-top-p", type=float, default=1.0,
                        help="nucleus of the user turns' sampling; 1 = off, as Magpie samples (a nucleus "
                             "costs a partial sort per row and step) (default: %(default)s)")
    parser.add_argument("--batch-rows", type=int, default=64,
                        help="sequences decoded together, one row each of a forward (default: %(default)s)")
    parser.add_argument("--products", choices=PRODUCTS, default="exact",
                        help="how the decoder computes its weight products: 'exact' (native few-row kernel: "
                             "greedy answers are exactly the engine's) or 'blas' (torch's matrix product, faster at "
                             "64+ rows; still float32, but a near-tie may go the other way); records decoded with "
                             "'blas' say so (default: %(default)s)")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="which stages to run, in order (default: all: %(default)s)")
    parser.add_argument("--shard", default="0/1", metavar="K/N",
                        help="only seeds K, K+N, K+2N, ...: N processes share the work, each with its own "
                             "--work-dir (default: %(default)s)")
    parser.add_argument("--chunk", type=int, default=2000,
                        help="seeds taken through all stages before the next ones start (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch and native threads (default: torch's)")
    parser.add_argument("--flush-every", type=int, default=32,
                        help="records buffered before they are appended (default: %(default)s)")
    parser.add_argument("--heldout-fraction", type=float, default=0.1,
                        help="share of every task marked split=heldout at --merge (default: %(default)s)")
    parser.add_argument("--against", type=Path, action="append", default=None,
                        help="question JSONL whose 10-word runs user turns (and, at --merge, any turn) must not share; repeatable "
                             "(default: the bundled set and data/spec_bench/question.jsonl, each if present)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="WORK_DIR",
                        help="instead of generating, write --out from these work folders")
    parser.add_argument("--out", type=Path, default=None, help="the corpus file --merge writes (.jsonl.gz)")
    parser.add_argument("--include", type=Path, action="append", default=[], metavar="CORPUS",
                        help="with --merge: a finished corpus file whose records are added as they are (repeatable)")
    parser.add_argument("--stats", action="store_true",
                        help="print what each stage holds and why user turns were dropped, then exit")
    return parser


def check_args(parser, args) -> tuple[int, int]:
    try:
        shard, shards = (int(x) for x in args.shard.split("/"))
    except ValueError:
        parser.error(f"--shard {args.shard!r}: expected K/N, e.g. 0/2")
    if not 0 <= shard < shards:
        parser.error(f"--shard {args.shard!r}: need 0 <= K < N")
    for name in ("conversations", "answer_tokens", "batch_rows", "flush_every", "chunk"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if not 0 <= args.follow_up_fraction <= 1:
        parser.error("--follow-up-fraction must lie in [0, 1]")
    if not args.user_temperature > 0 or not 0 < args.user_top_p <= 1:
        parser.error("--user-temperature must be positive and --user-top-p in (0, 1]")
    unknown = [s for s in args.stages.split(",") if s not in STAGES]
    if unknown:
        parser.error(f"--stages: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    missing = [str(p) for p in args.against or [] if not p.is_file()]
    if missing:
        parser.error(f"--against: no such file: {', '.join(missing)}")
    if args.merge and args.out is None:
        parser.error("--merge needs --out")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be positive")
    return shard, shards


def build_chunk(builder: Builder, seeds, stages: list[str]) -> None:
    counts: Counter = Counter()
    if "user1" in stages:
        builder.first_user_turns(seeds)
    wanted = {s.id for s in seeds}
    kept = [u for u in builder.kept_user_turns("user1", counts) if u["id"] in wanted]
    print(f"first user turns so far: {dict(counts)}", file=sys.stderr)
    if "answer1" in stages:
        builder.answers("answer1", kept, lambda u: [(u["user"], None)])
    answered = [r for r in read_records(builder.path("answer1")) if r["id"] in wanted]
    if "user2" in stages:
        builder.follow_ups(answered)
    if "answer2" in stages:
        first = {r["id"]: r for r in answered}
        follow_counts: Counter = Counter()
        # A second turn may be one word ("Why?"): the conversation gives it its meaning.
        follow = [u for u in builder.kept_user_turns("user2", follow_counts, min_words=1) if u["id"][:-2] in first]
        print(f"second user turns so far: {dict(follow_counts)}", file=sys.stderr)
        builder.answers("answer2", follow,
                        lambda u: [(first[u["id"][:-2]]["turns"][0], u["first_answer"]), (u["user"], None)])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    shard, shards = check_args(parser, args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    from methods.core.backends.lean import LeanTarget
    from methods.core.model_loading import EMBEDDED, EMBEDDED_MODEL_ID, load_model, load_tokenizer

    if args.merge or args.stats:  # the tokenizer is all these need: no model, no native weights
        tokenizer = load_tokenizer(args.model_path)
        if args.merge:
            missing = [str(m) for m in args.merge if not m.is_dir()]
            if missing:
                parser.error(f"--merge: no such folder: {', '.join(missing)}")
            missing = [str(m) for m in args.include if not m.is_file()]
            if missing:
                parser.error(f"--include: no such file: {', '.join(missing)}")
            records = merge(args.merge, args.out, tokenizer, args.heldout_fraction, tuple(args.include),
                            tuple(args.against or [p for p in DEFAULT_SETS if p.is_file()]))
            print(f"{args.out}: {len(records)} answered turns", file=sys.stderr)
            print(corpus_stats(records))
            return 0
        for stage in STAGES:
            records = read_records(stage_path(args.work_dir, stage))
            answered = f", {sum(len(r['answer_token_ids']) for r in records):,} answer tokens" \
                if stage.startswith("answer") else ""
            print(f"{stage}: {len(records)} records{answered}")
        for stage, min_words in (("user1", 3), ("user2", 1)):
            counts: Counter = Counter()
            list(kept_user_turns(stage_path(args.work_dir, stage), user_turn_filter(args, tokenizer), counts,
                                 min_words))
            print(f"{stage} user turns: {dict(counts)}")
        return 0
    loaded = load_model(args.model_path, dtype="float32", device="cpu")
    model_id = EMBEDDED_MODEL_ID if args.model_path == EMBEDDED else str(args.model_path)
    builder = Builder(args, LeanTarget(loaded.model), loaded.tokenizer, model_id)
    stages = args.stages.split(",")
    seeds = corpus_tasks.seeds(args.conversations)[shard::shards]
    # Chunk by chunk through every stage, so that an interrupted build already holds whole
    # conversations of every task (the seeds interleave the tasks).
    for start in range(0, len(seeds), args.chunk):
        chunk = seeds[start: start + args.chunk]
        print(f"chunk of seeds {start}-{start + len(chunk) - 1} of {len(seeds)}", file=sys.stderr)
        build_chunk(builder, chunk, stages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
