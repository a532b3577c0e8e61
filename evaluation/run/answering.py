"""Answering questions: the core every run shares, in one process (evaluation/inference.py) and
in each Ray worker (evaluation/run/sharded.py).

    plan_run       every check that needs no model: options, questions, answer files (resume)
    load_answerer  the model once on one device, one Lane (drafter + answer file) per method
    answer_lanes   one question answered by every lane, each a complete answer line
    write_answer   the only place a line is appended; finish sorts and de-duplicates the files

One answer line per (question, method): every turn generated with the engine, the timings and
counts of each turn (docs/answer-format.md), and the run's settings (run_settings).
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import sys
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import shortuuid
import torch
from tqdm import tqdm

from evaluation.record.schema import (CHOICE_FIELDS, DRAFTER_STATS_FIELD, IDENTITY_FIELDS, PER_TURN_EXTRA_FIELDS,
                                      check_written_line)
from evaluation.run.answer_file import append_answer, check_same_run, check_writable, finalise_answer_file
from evaluation.run.environment import describe_device, describe_environment
from evaluation.run.verify_cost import DEFAULT_REPEATS, measure_for_run
from evaluation.record.questions import (QuestionFileError, first_per_subtask, load_questions,
                                      question_file_for_bench)
from methods.core.conversation import new_conversation, resolve_template
from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.core.model_loading import (EMBEDDED, EMBEDDED_MODEL_ID, check_model_source, load_model,
                                        model_source, resolve_device, resolve_dtype)
from methods.core.paths import DATA_DIR
from methods.registry import drafter_class

WARMUP_PROMPT = "Write two sentences about the sea."


def default_model_id(args, dtype: torch.dtype, method: str) -> str:
    if args.model_path in (EMBEDDED, "", None):
        model = EMBEDDED_MODEL_ID
    else:
        model = Path(str(args.model_path).rstrip("/")).name.removesuffix(".gguf")
    # An explicit backend is part of the name, so that hf and lean runs never share a file.
    backend = "" if getattr(args, "backend", "auto") == "auto" else f"-{args.backend}"
    return f"{model}-{method}-{str(dtype).replace('torch.', '')}{backend}-temp-{args.temperature}"


def turn_seed(base: int, question_id, turn: int) -> int:
    """A stable seed per (run seed, question, turn): the same draws for every method."""
    return zlib.crc32(f"{base}|{question_id}|{turn}".encode()) & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def compact_margins(margins: list[float]) -> list[float]:
    """Margins to 3 significant digits: enough to tell a near-tie from a clear choice, and
    short enough that a line with every token's margin stays readable."""
    return [float(f"{m:.3g}") for m in margins]


def answer_question(engine, drafter, tokenizer, model, question, config: DecodingConfig, args) -> dict:
    """Generate every turn of one question; a failure is recorded, never fed into the next turn."""
    conv = new_conversation(tokenizer, model, args.conv_template)
    config = replace(config, stop_token_ids=conv.stop_token_ids, stop_strings=conv.stop_strings)
    choice = {"index": 0, **{name: [] for name in (*CHOICE_FIELDS, *PER_TURN_EXTRA_FIELDS)}}
    error = None
    for turn, text in enumerate(question.turns):
        try:
            prompt = conv.prompt_ids(text)
            seed = turn_seed(args.seed, question.question_id, turn)
            seed_everything(seed)
            ids, stats = engine.generate(prompt, drafter, config, seed=seed)
            drafter_stats = drafter.turn_stats()
            answer = conv.answer_text(ids)
        except Exception as exc:  # recorded with the question; the run goes on
            error = f"turn {turn + 1}: {type(exc).__name__}: {exc}"
            break
        conv.record(text, answer)
        choice["turns"].append(answer)
        choice["decoding_steps"].append(stats.decoding_steps)
        choice["new_tokens"].append(stats.new_tokens)
        choice["wall_time"].append(stats.wall_time)
        choice["accept_lengths"].extend(stats.accept_lengths)
        choice["token_ids"].append(ids)
        choice["prefill_time"].append(stats.prefill_time)
        choice["draft_time"].append(stats.draft_time)
        choice["verify_time"].append(stats.verify_time)
        choice["draft_tokens"].append(stats.draft_tokens)
        choice["forward_tokens"].append(stats.forward_tokens)
        choice["prompt_tokens"].append(len(prompt))
        choice["logit_margins"].append(compact_margins(stats.margins))
        choice["stop_reason"].append(stats.stop_reason)
        if drafter_stats:  # only drafters that count something (samd's draft sources) add the field
            choice.setdefault(DRAFTER_STATS_FIELD, []).append(drafter_stats)
    record = {"question_id": question.question_id, "category": question.category,
              "answer_id": shortuuid.uuid(), "choices": [choice]}
    if error:
        record["error"] = error
    return record


def warm_up(engine, drafter, tokenizer, model, config: DecodingConfig, args, runs: int) -> None:
    conv = new_conversation(tokenizer, model, args.conv_template)
    prompt = conv.prompt_ids(WARMUP_PROMPT)
    warm = replace(config, max_new_tokens=min(32, config.max_new_tokens),
                   stop_token_ids=conv.stop_token_ids, stop_strings=conv.stop_strings)
    for i in range(runs):
        engine.generate(prompt, drafter, warm, seed=i)


@dataclass
class Lane:
    """One method of a run: its drafter and the answer file it appends to."""

    method: str
    drafter: object
    answer_file: Path
    common: dict
    done: set
    failures: int = 0


def check_args(args) -> None:
    """The options' values, alone and together (nothing is read or loaded yet)."""
    if args.max_new_tokens < 1:
        raise ValueError("--max-new-tokens must be at least 1")
    if args.warmup < 0:
        raise ValueError(f"--warmup {args.warmup}: must be at least 0 (0 = no warm-up)")
    if args.cost_curve_repeats < 0:
        raise ValueError(f"--cost-curve-repeats {args.cost_curve_repeats}: must be at least 0 "
                         f"(0 = do not measure the cost curve)")
    # NaN compares false with everything, so each range is written to fail on it too.
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise ValueError(f"--temperature {args.temperature}: must be a finite number >= 0 (0 = greedy)")
    if not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p {args.top_p}: must be a number in (0, 1] (1 = off)")
    if args.top_k < 0:
        raise ValueError(f"--top-k {args.top_k}: must be at least 0 (0 = off)")
    if len(args.method) > 1 and (args.answer_file or (args.model_id and "{method}" not in args.model_id)):
        raise ValueError("with several methods every one needs its own answers: give --model-id as a "
                         "template with {method} (e.g. mymodel-{method}-float32) and no --answer-file")


def recorded_params(drafter) -> dict:
    """The method's parameters as recorded with its answers, with the longest draft the drafter
    declares (its chain and its forward's size), which system efficiency and the verification
    cost curve read: a figure from the drafter itself, never guessed from parameter names."""
    return {**drafter.params(), "max_draft_length": drafter.max_draft_length(),
            "max_draft_tokens": drafter.max_draft_tokens()}


def run_settings(args, method: str, model_id: str, environment: dict) -> dict:
    """The fields of every answer line that say which run it belongs to (record/schema.py)."""
    return {"model_id": model_id, "method": method, "bench_name": args.bench_name,
            "temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k,
            "max_new_tokens": args.max_new_tokens, "seed": args.seed, "environment": environment}


@dataclass
class Answerer:
    """The target loaded once on one device with every method's drafter: what answers the
    questions, in the single process and in each Ray worker alike (evaluation/run/sharded.py)."""

    engine: SpeculativeEngine
    model: object
    tokenizer: object
    lanes: list
    config: DecodingConfig
    args: argparse.Namespace
    placement: dict  # where the answers are computed: node, device (and worker when sharded)
    loaded: object
    # The device's verification cost curve (evaluation/run/verify_cost.py), measured before the
    # first question and written into every answer line; {} once measured or skipped.
    verify_cost: Optional[dict] = None


def load_answerer(args, planned, placement: dict | None = None) -> Answerer:
    """Load the model on args.device and build one lane per (method, model_id, answer file)."""
    loaded = load_model(args.model_path, dtype=args.dtype, device=args.device)
    model, tokenizer = loaded.model, loaded.tokenizer
    engine = SpeculativeEngine(model, tokenizer, backend=args.backend)  # "auto" resolves there
    environment = describe_environment(loaded.device, loaded.dtype, model, loaded.source)
    environment["backend"] = engine.backend
    environment["native_kernel"] = engine.target.native_kernel
    environment["native_code"] = engine.target.native_code
    environment["tree_attention"] = engine.supports_tree_attention()
    conv_template = resolve_template(tokenizer, args.conv_template)
    lanes = []
    for method, model_id, answer_file in planned:
        drafter = drafter_class(method).from_args(args, model, tokenizer)
        common = run_settings(args, method, model_id, environment) | {
            "method_params": recorded_params(drafter), "conv_template": conv_template,
            "lossy": bool(drafter.lossy),
        }
        lanes.append(Lane(method, drafter, answer_file, common, set()))
    config = DecodingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            top_k=args.top_k, top_p=args.top_p)
    placement = placement or {"node": platform.node(), "device": str(loaded.device)}
    return Answerer(engine, model, tokenizer, lanes, config, args, placement, loaded)


def warm_up_lanes(answerer: Answerer) -> None:
    for lane in answerer.lanes:
        warm_up(answerer.engine, lane.drafter, answerer.tokenizer, answerer.model, answerer.config,
                answerer.args, answerer.args.warmup)


def answer_lanes(answerer: Answerer, question, index: int, methods: set):
    """Answer one question with each lane whose method is in ``methods``; yields (lane, record),
    each record a complete answer line, as soon as it is made."""
    lanes = answerer.lanes
    if answerer.verify_cost is None:  # before the first question, after any warm-up
        curve = measure_for_run(answerer.engine, [lane.drafter for lane in lanes],
                                answerer.args.cost_curve_repeats)
        answerer.verify_cost = curve or {}
    # Rotate the order so that no method always runs first (right after a cold cache or a
    # pause) on an interleaved run.
    shift = index % len(lanes)
    for lane in lanes[shift:] + lanes[:shift]:
        if lane.method not in methods:
            continue
        record = answer_question(answerer.engine, lane.drafter, answerer.tokenizer, answerer.model,
                                 question, answerer.config, answerer.args)
        record.update(lane.common)
        if answerer.verify_cost:
            record["verify_cost"] = answerer.verify_cost
        record["placement"] = answerer.placement
        record["tstamp"] = time.time()
        check_written_line(record)
        yield lane, record


def speeds_text(method: str, record: dict) -> str | None:
    """"pld 12.3" (tokens/s of one answer) for the progress bar; None without a timing."""
    choice = record["choices"][0]
    if not choice["wall_time"]:
        return None
    return f"{method} {sum(choice['new_tokens']) / max(sum(choice['wall_time']), 1e-9):.1f}"


def plan_run(args, worker_device: torch.device | None = None, fields=IDENTITY_FIELDS):
    """Every check that needs no model: the questions, and (method, model_id, answer file) per
    method with its file checked (on ``fields``) for a resume of the same run. Returns
    (questions, planned)."""
    # Cheap checks first, so that a mistake costs a second, not a model load plus a lost answer.
    check_args(args)
    question_file = Path(args.question_file) if args.question_file else question_file_for_bench(args.bench_name)
    questions = load_questions(question_file, args.question_begin, args.question_end)
    if args.per_subtask is not None:
        questions = first_per_subtask(questions, args.per_subtask)
    if not questions:
        raise QuestionFileError(f"{question_file}: no questions in the selected range")
    check_model_source(args.model_path, option="--model-path")
    for method in args.method:
        drafter_class(method).check_args(args)
    # A sharded run's workers pick their own device: the driver checks against their kind, and
    # leaves the per-device facts (device name, threads...) to each worker's lines.
    device = worker_device or resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    answer_dir = Path(args.answer_dir) if args.answer_dir else DATA_DIR / args.bench_name / "model_answer"
    planned = []  # (method, model_id, answer file)
    for method in args.method:
        model_id = (args.model_id.replace("{method}", method) if args.model_id
                    else default_model_id(args, dtype, method))
        answer_file = Path(args.answer_file) if args.answer_file else answer_dir / f"{model_id}.jsonl"
        check_writable(answer_file)
        # What is known before loading: a resume with another cap, seed, dtype... stops here.
        early = describe_device(device if worker_device is None else torch.device("cpu"), dtype)
        early = {k: v for k, v in early.items() if f"environment.{k}" in fields}
        early["model_path"] = model_source(args.model_path)
        check_same_run(answer_file, run_settings(args, method, model_id, early), fields)
        planned.append((method, model_id, answer_file))
    return questions, planned


def pending(questions, lanes, where: str = "") -> list:
    """The questions some lane has still to answer; says per lane how many, and into which file."""
    for lane in lanes:
        missing = sum(q.question_id not in lane.done for q in questions)
        print(f"{lane.method}{where}: {missing} of {len(questions)} questions to answer -> {lane.answer_file}",
              flush=True)
    return [q for q in questions if any(q.question_id not in lane.done for lane in lanes)]


def write_answer(lane: Lane, question_id, record: dict) -> str | None:
    """Append one finished answer line to its lane's file (the only place answers are written,
    in one process and on a sharded run's driver); returns its tokens/s text for the progress bar."""
    append_answer(lane.answer_file, record)
    if "error" in record:
        lane.failures += 1
        tqdm.write(f"{lane.method}: question {question_id} failed: {record['error']}", file=sys.stderr)
    else:
        lane.done.add(question_id)
    return speeds_text(lane.method, record)


def show_speeds(bar, speeds: list) -> None:
    if any(speeds):
        bar.set_postfix_str("tok/s " + ", ".join(filter(None, speeds)))


def finish(lanes) -> int:
    """Finalise every answer file (sorted, one line per id) and say what is in it."""
    failures = 0
    for lane in lanes:
        count = finalise_answer_file(lane.answer_file)
        failures += lane.failures
        print(f"{count} answers in {lane.answer_file}"
              + (f"; {lane.failures} failed (see their 'error' field)" if lane.failures else ""))
    return 1 if failures else 0


