"""Decode many independent sequences together on the lean backend, with continuous batching.

Each sequence is a ``Job``: prompt ids, a token budget, and greedy or sampled decoding. Up to
``rows`` jobs are decoded at once, one row each of a ``RowBatch`` forward; when a job stops (its
stop token or its budget), its row is handed to the next job in the queue, so every forward runs
full until the queue is empty.

Greedy rows get exactly the tokens the engine's baseline gives the same prompt on the lean
backend (a row's values do not depend on the other rows; see methods/core/backends/lean_rows.py).
A sampled row draws from its own generator, seeded from its job's id, so what it writes does not
depend on which jobs shared its forwards or on a resumed run's order either.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch

from methods.core.backends.lean import LeanTarget
from methods.core.backends.lean_rows import Row, RowBatch
from methods.core.drafter import DecodingConfig
from methods.core.sampling import sample, target_probs


@dataclass(frozen=True)
class Job:
    id: str
    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0


@dataclass(frozen=True)
class Finished:
    job: Job
    token_ids: list[int]  # up to, not including, the stop token
    stopped: bool  # a stop token ended it (False: the budget or the context did)


def job_generator(job_id: str) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:8], "big") >> 1)
    return generator


def decode_jobs(target: LeanTarget, jobs: Iterable[Job], rows: int, stop_ids: set[int],
                on_finish: Callable[[Finished], None], context_limit: Optional[int] = None,
                products: str = "exact") -> None:
    """Decode every job, calling ``on_finish`` as each one ends (in the order they end).
    ``context_limit``: no row's prompt plus answer grows past it (the model's context); a job
    whose prompt alone does not fit is finished at once with no tokens. ``products``: see
    methods/core/backends/lean_rows.PRODUCTS."""
    queue = deque(jobs)
    batch = RowBatch(target, rows, products)
    generators: dict[int, torch.Generator] = {}

    def finish(row: Row, stopped: bool) -> None:
        batch.remove(row)
        generators.pop(id(row), None)
        on_finish(Finished(row.tag, row.generated, stopped))

    while queue or batch.rows:
        while queue and not batch.full:
            job = queue.popleft()
            if context_limit is not None and len(job.prompt_ids) >= context_limit:
                on_finish(Finished(job, [], False))
                continue
            row = batch.add(job.prompt_ids, tag=job)
            if job.temperature > 0:
                generators[id(row)] = job_generator(job.id)
        if not batch.rows:
            break
        logits = batch.step()
        tokens = logits.argmax(dim=-1).tolist()
        _sample_rows(batch.rows, logits, tokens, generators)
        for r, row in enumerate(list(batch.rows)):
            job: Job = row.tag
            token = tokens[r]
            if token in stop_ids:
                finish(row, True)
                continue
            row.generated.append(token)
            row.pending = token
            full = context_limit is not None and row.position + 1 >= context_limit
            if len(row.generated) >= job.max_new_tokens or full:
                finish(row, False)


def _sample_rows(rows: list[Row], logits: torch.Tensor, tokens: list[int],
                 generators: dict[int, torch.Generator]) -> None:
    """Replace the greedy choice of every sampled row by a draw from the target distribution;
    rows of the same temperature and top-p share one call."""
    groups: dict[tuple[float, float], list[int]] = {}
    for r, row in enumerate(rows):
        if row.tag.temperature > 0:
            groups.setdefault((row.tag.temperature, row.tag.top_p), []).append(r)
    for (temperature, top_p), members in groups.items():
        config = DecodingConfig(temperature=temperature, top_p=top_p)
        for r, token in zip(members, sample_nucleus(logits[members], config, [generators[id(rows[r])] for r in members])):
            tokens[r] = token


NUCLEUS_CANDIDATES = 1024


def sample_nucleus(logits: torch.Tensor, config: DecodingConfig, generators: list[torch.Generator]) -> list[int]:
    """One draw per row from methods.core.sampling's target distribution. Sorting a whole
    vocabulary per row for top-p cost more than the forward (0.74 s against 0.51 s for 64 rows);
    the nucleus nearly always lies within the most likely ``NUCLEUS_CANDIDATES`` tokens, so only
    those are sorted, and a row whose nucleus reaches past them takes the full path."""
    if config.top_p >= 1.0 or config.top_k:
        probs = target_probs(logits, config)
        return [sample(probs[i], g) for i, g in enumerate(generators)]
    probs = torch.softmax(logits.float() / config.temperature, dim=-1)
    top, index = probs.topk(min(NUCLEUS_CANDIDATES, probs.shape[-1]), dim=-1)
    before = top.cumsum(dim=-1) - top  # mass of the more likely candidates
    out = []
    for i, generator in enumerate(generators):
        if before[i, -1] + top[i, -1] < config.top_p:  # the nucleus is wider than the candidates
            out.append(sample(target_probs(logits[i: i + 1], config)[0], generator))
            continue
        kept = top[i].masked_fill(before[i] >= config.top_p, 0.0)
        out.append(int(index[i, sample(kept / kept.sum(), generator)]))
    return out
