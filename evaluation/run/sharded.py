"""Answering the questions over a Ray cluster: N workers, each holding one device; this process,
the driver, is the only writer of the answer files.

    python -m evaluation.inference --method vanilla,pld --workers 4 [--ray-address auto]

Each worker (a Ray actor) loads the model once on its device (one GPU where the cluster has
them, else --threads-per-worker CPU slots) and answers whole questions with the baseline and
every method interleaved, with the code a single process runs (answering.answer_lanes). The
driver hands one question at a time to whichever worker is free, so a slower device simply takes
fewer. A worker's finished question comes back as complete answer lines, which the driver
appends with the single-process writer (one line per finished question, fsynced). A worker that
dies loses only the question it held, which goes back to the queue for another worker; a driver
that dies loses the questions in flight, and running the same command again resumes.

Every line records its placement (node, device, worker) and the environment of the worker that
answered it: a cluster may mix device types, and speed.py pairs a method's answer with the
baseline's from the same device and breaks speedups down per device type (docs/scaling.md).
"""

from __future__ import annotations

import copy
import os
import platform
import socket
import sys
from collections import deque

import torch
from tqdm import tqdm

from evaluation.record.schema import SHARDED_IDENTITY_FIELDS, line_value
from evaluation.run.answer_file import answered_ids, check_same_run
from evaluation.run.answering import (Lane, answer_lanes, check_args, finish, load_answerer, pending, plan_run,
                                      show_speeds, warm_up_lanes, write_answer)
from methods.core.paths import REPO_ROOT

# A question in flight on this many workers that died is not handed out again: it is more
# likely to be what kills them (memory) than bad luck, and the run stops with its id.
MAX_LOST_WORKERS_PER_QUESTION = 2


class ClusterError(ValueError):
    """The Ray cluster cannot run this job as asked; the message says why and what to change."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterError("--workers and --ray-address need Ray: pip install 'ray>=2.40' "
                           "(see requirements.txt)") from None
    return ray


def runtime_env() -> dict:
    """What every worker process needs to import this project: the checkout on its path (a
    multi-node cluster needs the same checkout at the same path on every node)."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return {"env_vars": {"PYTHONPATH": path}}


# Where a Ray address names no port: a head node's GCS (ray start --head), a Ray client server.
RAY_GCS_PORT, RAY_CLIENT_PORT = 6379, 10001
DEFAULT_RAY_TIMEOUT_S = 30.0


def probe_address(address: str, timeout: float) -> None:
    """Refuse an address where nothing answers within ``timeout`` seconds: Ray itself retries a
    silent address for many minutes without a word. "auto" and "local" name a cluster on this
    machine, which Ray finds (or not) at once."""
    if address in ("auto", "local"):
        return
    scheme, _, rest = address.rpartition("://")
    host, colon, port = rest.rstrip("/").rpartition(":")
    if not colon or not port.isdigit():
        host, port = rest.rstrip("/"), str(RAY_CLIENT_PORT if scheme == "ray" else RAY_GCS_PORT)
    host = host.strip("[]")  # an IPv6 address in brackets
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ClusterError(f"--ray-address {address}: nothing answers at {host}:{port} within {timeout:g} s "
                           f"({reason}); start the cluster there (ray start --head) or give its address "
                           f"(--ray-timeout sets this wait)") from None


def connect(address: str | None, timeout: float = DEFAULT_RAY_TIMEOUT_S) -> bool:
    """Join the cluster at ``address``, or start a local one; True when this call started Ray
    (and so must stop it). An already connected process (a test, a notebook) is reused."""
    ray = import_ray()
    if address:
        probe_address(address, timeout)
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, runtime_env=runtime_env(), logging_level="WARNING")
        else:
            ray.init(runtime_env=runtime_env(), include_dashboard=False, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray cluster"
        raise ClusterError(f"cannot connect to {where}: {exc}") from None
    return True


def plan_workers(args, resources: dict) -> tuple[str, dict, int]:
    """(device kind, Ray resources of one worker, torch threads of one worker) for the cluster's
    ``resources`` (ray.cluster_resources()); refuses what the cluster cannot hold, since a worker
    that asks for more than exists would wait forever instead of failing."""
    workers, gpus, cpus = args.workers, int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if args.device.startswith("cuda") or (args.device == "auto" and gpus >= 1):
        if gpus < workers:
            raise ClusterError(f"--workers {workers} on GPUs, but the cluster has {gpus} GPU(s); "
                               f"use --workers {max(gpus, 1)}" + ("" if gpus else " with --device cpu"))
        threads = args.threads_per_worker or 1
        if cpus < workers * threads:
            raise ClusterError(f"{workers} GPU workers with {threads} CPU(s) each need {workers * threads} "
                               f"CPUs; the cluster has {cpus}")
        return "cuda", {"num_gpus": 1, "num_cpus": threads}, threads
    if args.device != "cpu" and args.device != "auto":
        raise ClusterError(f"--device {args.device}: a sharded run places workers itself; use "
                           f"auto, cpu or cuda")
    threads = args.threads_per_worker or max(1, cpus // workers)
    if workers * threads > cpus:
        raise ClusterError(f"{workers} CPU workers with {threads} thread(s) each need {workers * threads} "
                           f"CPU slots; the cluster has {cpus} (lower --workers or "
                           f"--threads-per-worker)")
    return "cpu", {"num_cpus": threads}, threads


class ShardWorker:
    """One Ray actor: the model on one device, answering whole questions with every lane."""

    def __init__(self, args, planned, index: int, device_kind: str, threads: int):
        import ray

        torch.set_num_threads(threads)
        args = copy.copy(args)
        args.device = device_kind  # Ray made exactly one GPU visible to this process
        device = f"cuda:{ray.get_gpu_ids()[0]}" if device_kind == "cuda" else "cpu"
        placement = {"node": platform.node(), "device": device, "worker": index}
        self.answerer = load_answerer(args, planned, placement)
        self.warm = args.warmup == 0

    def describe(self) -> dict:
        loaded = self.answerer.loaded
        return {"pid": os.getpid(), "placement": self.answerer.placement,
                "dtype": str(loaded.dtype).replace("torch.", ""), "source": loaded.source,
                "commons": {lane.method: lane.common for lane in self.answerer.lanes}}

    def answer(self, question, index: int, methods: set) -> list[tuple[str, dict]]:
        if not self.warm:  # on the first question, so that an idle worker costs nothing
            warm_up_lanes(self.answerer)
            self.warm = True
        return [(lane.method, record)
                for lane, record in answer_lanes(self.answerer, question, index, methods)]


def check_workers_agree(described: list[dict]) -> None:
    """Workers of one run must share every run setting except the per-device facts (a node
    with another torch version, say, would put two runs in one file)."""
    first = described[0]
    for other in described[1:]:
        for method, common in first["commons"].items():
            for name in SHARDED_IDENTITY_FIELDS:
                a, b = line_value(common, name), line_value(other["commons"][method], name)
                if a != b:
                    raise ClusterError(
                        f"workers disagree on {name}: {a!r} on worker {first['placement']['worker']} "
                        f"({first['placement']['node']}), {b!r} on worker "
                        f"{other['placement']['worker']} ({other['placement']['node']}); every node "
                        f"needs the same software and files for one run")


def run_sharded(args) -> int:
    if args.workers is None:
        args.workers = 1
    # The workers' device kind decides the auto dtype (and so the answer files' names): ask the
    # cluster before planning, but only once the cheap checks of the options have passed.
    check_args(args)
    ray = import_ray()
    started = connect(args.ray_address, getattr(args, "ray_timeout", DEFAULT_RAY_TIMEOUT_S))
    workers = []
    try:
        device_kind, resources, threads = plan_workers(args, ray.cluster_resources())
        questions, planned = plan_run(args, worker_device=torch.device(device_kind),
                                      fields=SHARDED_IDENTITY_FIELDS)
        lanes = [Lane(method, None, answer_file, {}, answered_ids(answer_file))
                 for method, _, answer_file in planned]
        todo = pending(questions, lanes)
        if not todo:
            return finish(lanes)
        count = min(args.workers, len(todo))  # a worker without a question would only load
        actor = ray.remote(**resources)(ShardWorker)
        workers = [actor.remote(args, planned, k, device_kind, threads) for k in range(count)]
        described = start_workers(ray, workers)
        check_workers_agree(described)
        for lane in lanes:  # the full check, now that a worker knows the method parameters
            check_same_run(lane.answer_file, described[0]["commons"][lane.method], SHARDED_IDENTITY_FIELDS)
        dispatch(ray, args, workers, lanes, todo)
        return finish(lanes)
    finally:
        for worker in workers:
            ray.kill(worker)
        if started:
            ray.shutdown()


def start_workers(ray, workers) -> list[dict]:
    """Wait for every worker to load its model; a worker that cannot is a clear error."""
    described = []
    for k, worker in enumerate(workers):
        try:
            info = ray.get(worker.describe.remote())
        except ray.exceptions.RayError as exc:
            raise ClusterError(f"worker {k} could not start: {_cause(exc)}") from None
        place = info["placement"]
        print(f"worker {k}: {info['source']} on {place['node']} {place['device']} "
              f"({info['dtype']}, pid {info['pid']})", flush=True)
        described.append(info)
    return described


def _cause(exc: BaseException) -> str:
    """The worker's own error, without Ray's wrapping traceback."""
    cause = getattr(exc, "cause", None) or getattr(exc, "error_msg", None) or exc
    text = str(cause).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def dispatch(ray, args, workers, lanes, todo) -> None:
    """Keep every live worker busy with one question; write each answer as it comes back."""
    by_method = {lane.method: lane for lane in lanes}
    queue = deque(enumerate(todo))  # (index for the method rotation, question)
    idle = deque(range(len(workers)))
    alive = set(idle)
    in_flight = {}  # ObjectRef -> (worker, index, question)
    lost_on = {}  # question id -> workers that died holding it
    bar = tqdm(total=len(todo), desc=",".join(args.method) + f" x{len(workers)} workers", unit="q",
               disable=args.no_progress, file=sys.stderr)
    while queue or in_flight:
        while queue and idle:
            k = idle.popleft()
            index, question = queue.popleft()
            methods = {lane.method for lane in lanes if question.question_id not in lane.done}
            in_flight[workers[k].answer.remote(question, index, methods)] = (k, index, question)
        (ref,), _ = ray.wait(list(in_flight), num_returns=1)
        k, index, question = in_flight.pop(ref)
        try:
            results = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            alive.discard(k)
            lost = lost_on.setdefault(question.question_id, [])
            lost.append(k)
            if len(lost) >= MAX_LOST_WORKERS_PER_QUESTION:
                raise ClusterError(f"question {question.question_id} was in flight on workers "
                                   f"{lost}, which all died; stopping (finished answers are saved; "
                                   f"look at the workers' logs)") from None
            if not alive:
                raise ClusterError(f"every worker died (the last: worker {k}: {_cause(exc)}); "
                                   f"finished answers are saved, run the command again to "
                                   f"resume") from None
            tqdm.write(f"worker {k} lost ({_cause(exc)}); question {question.question_id} goes "
                       f"to another worker", file=sys.stderr)
            queue.appendleft((index, question))
            continue
        except ray.exceptions.RayTaskError as exc:  # a bug, not a lost machine: stop
            raise ClusterError(f"worker {k} failed on question {question.question_id}: "
                               f"{_cause(exc)}") from None
        show_speeds(bar, [write_answer(by_method[method], question.question_id, record)
                          for method, record in results])
        idle.append(k)
        bar.update(1)
    bar.close()
