"""The batched corpus generator: many sequences as rows of one lean forward.

1. A greedy row gets exactly the tokens the engine's baseline gives its prompt on the lean
   backend, whatever else shares its forwards (native layer, float32), and the torch-ops path
   agrees with the engine's torch-ops path.
2. Continuous batching: more jobs than rows all finish, each with its own budget and stop.
3. A sampled row's text depends only on its job's id, not on its batch company.
4. The corpus pipeline's pieces: user-turn filters, the Magpie prefix, torn stage files, seeds.
"""

from __future__ import annotations

import gzip
import json

import pytest
import torch

from methods.core.backends import native_kernels
from methods.core.backends.lean import LeanTarget
from methods.core.backends.lean_rows import PRODUCTS, RowBatch
from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.drafters.vanilla import VanillaDrafter
from tests.tiny_model import make_tiny_llama
from training.batched_decoding import Job, decode_jobs

PROMPTS = [[5, 17, 33, 8], [40, 41], [9, 9, 9, 9, 9, 9, 12], [60], [3, 70, 21, 22, 23], [88, 4, 19]]


@pytest.fixture(scope="module")
def model32():
    return make_tiny_llama(vocab_size=97, seed=3, dtype=torch.float32)


def engine_greedy(target, prompt, n):
    engine = SpeculativeEngine(target.model, backend=target)
    return engine.generate(prompt, VanillaDrafter(), DecodingConfig(max_new_tokens=n))[0]


def run(target, jobs, rows, stop_ids=frozenset()):
    done = {}
    decode_jobs(target, jobs, rows, set(stop_ids), lambda f: done.__setitem__(f.job.id, f))
    return done


@pytest.mark.parametrize("native", [
    pytest.param(True, marks=pytest.mark.skipif(native_kernels.load() is None, reason="no native kernel")),
    False])
def test_greedy_rows_equal_the_engines_baseline_whatever_shares_their_forward(model32, native):
    target = LeanTarget(model32, native_kernel=native)
    jobs = [Job(id=f"j{i}", prompt_ids=p, max_new_tokens=12 + i) for i, p in enumerate(PROMPTS)]
    for rows in (1, 3, len(jobs)):
        done = run(target, jobs, rows)
        for i, p in enumerate(PROMPTS):
            expected = engine_greedy(target, p, 12 + i)
            assert done[f"j{i}"].token_ids == expected, (rows, i)
            assert not done[f"j{i}"].stopped


@pytest.mark.skipif(native_kernels.load() is None, reason="no native kernel")
def test_blas_products_give_the_exact_paths_logits_up_to_float_rounding(model32):
    """products='blas' swaps only the weight products; a step's logits stay within float32
    rounding of the exact path's (a recycled cache included: 6 prompts through 2 rows)."""
    target = LeanTarget(model32)
    steps = {}
    for products in PRODUCTS:
        batch, seen = RowBatch(target, 2, products), []
        for prompt in PROMPTS:
            row = batch.add(prompt)
            for _ in range(3):
                logits = batch.step()
                seen.append(logits[batch.rows.index(row)].clone())
                row.pending = int(seen[-1].argmax())
            batch.remove(row)
        steps[products] = torch.stack(seen)
    assert torch.allclose(steps["blas"], steps["exact"], rtol=1e-4, atol=1e-4)
    assert not torch.equal(steps["exact"], torch.zeros_like(steps["exact"]))


def test_an_unknown_products_mode_is_refused_by_name(model32):
    with pytest.raises(ValueError, match="products must be one of exact, blas"):
        RowBatch(LeanTarget(model32), 2, "fast")


def test_every_job_finishes_at_its_stop_token_or_budget(model32):
    target = LeanTarget(model32)
    free = run(target, [Job(id="a", prompt_ids=PROMPTS[0], max_new_tokens=20)], 1)["a"].token_ids
    stop = free[5]
    jobs = [Job(id=f"j{i}", prompt_ids=PROMPTS[0] if i % 2 else p, max_new_tokens=20) for i, p in enumerate(PROMPTS)]
    done = run(target, jobs, 2, stop_ids={stop})
    assert set(done) == {j.id for j in jobs}
    for job in jobs:
        result = done[job.id]
        assert stop not in result.token_ids
        assert result.stopped == (len(result.token_ids) < 20)
    assert done["j1"].token_ids == free[: free.index(stop)] and done["j1"].stopped


def test_a_sampled_row_depends_only_on_its_job_not_on_its_company(model32):
    target = LeanTarget(model32)
    sampled = Job(id="s", prompt_ids=PROMPTS[2], max_new_tokens=15, temperature=1.0, top_p=0.9)
    alone = run(target, [sampled], 1)["s"].token_ids
    others = [Job(id=f"o{i}", prompt_ids=p, max_new_tokens=9, temperature=0.7) for i, p in enumerate(PROMPTS)]
    together = run(target, others[:3] + [sampled] + others[3:], 4)["s"].token_ids
    assert together == alone
    renamed = run(target, [Job(id="t", prompt_ids=PROMPTS[2], max_new_tokens=15, temperature=1.0, top_p=0.9)], 1)
    assert renamed["t"].token_ids != alone  # another id, another draw (with 15 tokens at T=1)


def test_a_prompt_that_fills_the_context_finishes_at_once_and_rows_stop_at_the_limit(model32):
    target = LeanTarget(model32)
    jobs = [Job(id="long", prompt_ids=[5] * 30, max_new_tokens=10), Job(id="short", prompt_ids=[5] * 20,
                                                                          max_new_tokens=50)]
    done = {}
    decode_jobs(target, jobs, 2, set(), lambda f: done.__setitem__(f.job.id, f), context_limit=30)
    assert done["long"].token_ids == [] and not done["long"].stopped
    assert 20 + len(done["short"].token_ids) <= 30 and not done["short"].stopped


# ---------------------------------------------------------------- the pipeline's pieces
def test_user_turn_filter_names_each_problem(tmp_path):
    from training.generate_corpus import UserTurnFilter

    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question_id": 1, "turns": [
        "Describe the quiet harbour town where every lantern is lit by hand at dusk each evening"]}) + "\n")
    keep = UserTurnFilter([questions], special_ids={0})
    assert keep.problem("How do solar panels turn light into power?", [5, 6], True) is None
    assert keep.problem("How do solar panels turn light into power? Please", [5], True) is None  # 12-word key
    assert keep.problem("how do SOLAR panels turn light into power?!", [5], True) == "near-duplicate"
    assert keep.problem("Write me a story about a robot", [5], False) == "runaway"
    assert keep.problem("Hi", [5], True) == "too short"
    assert keep.problem("Tell me about cats please now", [5, 0], True) == "chat markup"
    assert keep.problem(" ".join(["the cat sat"] * 8), [5], True) == "repetitive"
    leaked = "Please describe the quiet harbour town where every lantern is lit by hand at dusk"
    assert keep.problem(leaked, [5], True) == "shares a run with an evaluation set"


def test_the_user_turn_prefix_ends_with_the_user_header():
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    from training.generate_corpus import user_turn_prefix

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")))
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    prefix = user_turn_prefix(tokenizer, [{"role": "system", "content": "You ask about bees."}])
    assert prefix == "<|system|>\nYou ask about bees.<|end|>\n<|user|>\n"


def test_a_torn_stage_file_keeps_its_whole_members(tmp_path):
    from training.generate_corpus import Appender, read_records

    path = tmp_path / "user1.jsonl.gz"
    out = Appender(path, flush_every=2)
    for i in range(5):
        out.add({"id": str(i)})
    out.flush()
    assert [r["id"] for r in read_records(path)] == ["0", "1", "2", "3", "4"]
    whole = path.read_bytes()
    path.write_bytes(whole + gzip.compress(b'{"id": "5"}\n')[:-6])  # a member cut mid-write
    assert [r["id"] for r in read_records(path)] == ["0", "1", "2", "3", "4"]


def test_seeds_cover_every_task_early_and_are_reproducible():
    from training import corpus_tasks

    first = corpus_tasks.seeds(len([t for t in corpus_tasks.TASKS for _ in range(t.weight)]))
    assert {s.task for s in first} == {t.name for t in corpus_tasks.TASKS}
    assert corpus_tasks.seeds(50) == corpus_tasks.seeds(50)
    assert len({s.id for s in corpus_tasks.seeds(500)}) == 500


@pytest.mark.parametrize("candidates", [3, 1024])
def test_nucleus_draws_follow_the_shared_target_distribution(monkeypatch, candidates):
    """Within the candidates or past them (the full path), the draws' frequencies match
    methods.core.sampling's top-p distribution."""
    from methods.core.sampling import target_probs
    from training import batched_decoding

    monkeypatch.setattr(batched_decoding, "NUCLEUS_CANDIDATES", candidates)
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.5, 0.0, -1.0, -3.0, -6.0]])
    config = DecodingConfig(temperature=1.0, top_p=0.9)
    expected = target_probs(logits, config)[0]
    generator = torch.Generator().manual_seed(0)
    draws = [batched_decoding.sample_nucleus(logits, config, [generator])[0] for _ in range(4000)]
    counts = torch.bincount(torch.tensor(draws), minlength=8).double() / len(draws)
    assert counts[expected == 0].sum() == 0
    assert torch.allclose(counts, expected.double(), atol=0.03)


def test_a_record_whose_text_holds_a_unicode_line_separator_is_read_whole(tmp_path):
    """json.dumps(ensure_ascii=False) writes U+2028 as it is; splitting the file's text at it
    (str.splitlines) lost such a record silently, and a resumed run wrote it again."""
    from training.generate_corpus import Appender, read_records

    path = tmp_path / "user1.jsonl.gz"
    out = Appender(path, flush_every=8)
    for i, text in enumerate(["plain", "one\u2028two", "three\x85four"]):
        out.add({"id": str(i), "user": text})
    out.flush()
    assert [r["user"] for r in read_records(path)] == ["plain", "one\u2028two", "three\x85four"]


def test_a_damaged_line_inside_a_whole_member_is_an_error_naming_the_file(tmp_path):
    from training.generate_corpus import read_records

    path = tmp_path / "answer1.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"id": "0"}\n{"id": \n'))
    with pytest.raises(ValueError, match="answer1.jsonl.gz: line 2 is not JSON"):
        read_records(path)
