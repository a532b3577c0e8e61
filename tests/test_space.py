"""SPACE: the mask-group tree, guesses read off the masks, losslessness, both variants, training."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from methods.core.backends import BACKENDS
from methods.core.backends.hf import HfTarget
from methods.core.backends.lean import LeanTarget
from methods.core.drafter import DecodingConfig, DraftSession
from methods.core.engine import SpeculativeEngine
from methods.drafters.space import CPU_DEFAULTS, GPU_DEFAULTS, SpaceDrafter
from methods.drafters.vanilla import VanillaDrafter
from methods.heads.artifact import ArtifactError, BaseMismatchError, base_fingerprint, save_artifact
from methods.heads.space import KEY, PLACEHOLDER_TOKEN, WEIGHT_FILES, LearnedMasks, MaskToken, load_space, space_config
from tests.engine_helpers import assert_sampling_uses_the_lossless_rule, baseline, random_prompts, run_turns
from tests.test_acceptance import chi2_critical, chi2_statistic, exact_first_two, sampling_check_model
from tests.tiny_model import make_tiny_llama

VOCAB = 97
HIDDEN = 32  # tests/tiny_model.py


def random_masks(slots=4, seed=0, dtype=torch.float64) -> LearnedMasks:
    masks = LearnedMasks(slots, HIDDEN)
    with torch.no_grad():
        masks.mask_embeddings.copy_(torch.randn(slots, HIDDEN, generator=torch.Generator().manual_seed(seed)))
    return masks.to(dtype)


def session_for(model) -> DraftSession:
    param = next(model.parameters())
    return DraftSession(model=model, config=DecodingConfig(), device=param.device, dtype=param.dtype,
                        vocab_size=VOCAB)


class PlantedSpace(SpaceDrafter):
    """SPACE whose guesses are sometimes replaced by the true continuation (``oracle``, the baseline's
    answer), so that steps accept several candidates and the fallback to a shallower group runs."""

    def __init__(self, *args, oracle, prompt_len, **kwargs):
        super().__init__(*args, **kwargs)
        self.oracle, self.prompt_len, self.steps = oracle, prompt_len, 0

    def accept(self, step):
        super().accept(step)
        self.steps += 1
        if self.steps % 2:
            done = len(step.context) - self.prompt_len
            self._candidates = self.oracle[done: done + self.mask_count]


# ---------------------------------------------------------------------------------- the tree
def test_tree_has_spaces_layout_groups_positions_and_overrides(model):
    masks = random_masks(slots=3)
    drafter = SpaceDrafter(masks, mask_count=3)
    drafter.begin([5, 6, 7], session_for(model))
    first = drafter.propose([5, 6, 7], max_depth=20)
    # First step: no candidates, G_0 only: three masks chained under the root.
    assert first.candidates.tolist() == [False] * 3 and first.parents.tolist() == [-1, 0, 1]
    drafter._candidates = [40, 41, 42]
    tree = drafter.propose([5, 6, 7], max_depth=20)
    assert tree.tokens[:3].tolist() == [40, 41, 42] and tree.candidates.tolist() == [True] * 3 + [False] * 12
    # 1 + k + k(k+1) tokens per forward: the root, 3 candidates and 4 groups of 3 masks.
    assert len(tree) + 1 == 1 + 3 + 3 * 4
    assert drafter._group_nodes == [[3, 4, 5], [6, 7, 8], [9, 10, 11], [12, 13, 14]]
    assert tree.parents[3:].tolist() == [-1, 3, 4, 0, 6, 7, 1, 9, 10, 2, 12, 13]
    # Mask j of the group after candidate i-1 sits at depth i + 1 + j (anchor position + 1 + j).
    assert tree.depth[3:].tolist() == [1, 2, 3, 2, 3, 4, 3, 4, 5, 4, 5, 6]
    # No real token sees a mask; a mask sees its anchor's path and its own group's earlier masks only.
    sees = tree.ancestors_mask()
    assert not sees[:3, 3:].any()
    assert sees[8].nonzero().reshape(-1).tolist() == [0, 6, 7, 8]
    assert tree.embedding_nodes.tolist() == list(range(3, 15))
    assert torch.equal(tree.embeddings, masks.mask_embeddings.detach()[[0, 1, 2] * 4])
    assert set(tree.tokens[3:].tolist()) == {PLACEHOLDER_TOKEN}


def test_fewer_groups_and_the_end_of_a_turn_shrink_the_tree(model):
    drafter = SpaceDrafter(random_masks(), mask_count=3, groups=2)
    drafter.begin([5, 6], session_for(model))
    drafter._candidates = [40, 41, 42]
    assert len(drafter.propose([5, 6], max_depth=20)) == 3 + 2 * 3
    # max_depth 3: candidates c_0..c_2 fit; a mask at depth d guesses a token the next step can
    # only draft if d <= max_depth - 1, so G_0 keeps 2 masks and G_1 one.
    tree = drafter.propose([5, 6], max_depth=3)
    assert tree.candidates.sum() == 3 and drafter._group_nodes == [[3, 4], [5]]
    assert int(tree.depth.max()) <= 3
    assert len(drafter.propose([5, 6], max_depth=0)) == 0
    published = SpaceDrafter(MaskToken(95), mask_count=2)
    published.begin([5, 6], session_for(model))
    tree = published.propose([5, 6], max_depth=9)
    assert tree.tokens.tolist() == [95, 95] and tree.embedding_nodes is None


# ---------------------------------------------------------------------------------- losslessness
@pytest.mark.parametrize("masks,groups", [(CPU_DEFAULTS["masks"], CPU_DEFAULTS["groups"]), (2, 2), (3, None), (4, 1)],
                         ids=["cpu", "two-groups", "all-groups", "one-group"])
def test_greedy_output_is_the_baseline_token_for_token_multi_turn(engine, masks, groups):
    drafter = SpaceDrafter(random_masks(seed=masks), mask_count=masks, groups=groups)
    config = DecodingConfig(max_new_tokens=24)
    for prompt in random_prompts(4, VOCAB, seed=21):
        assert run_turns(engine, drafter, prompt, config) == run_turns(engine, VanillaDrafter(), prompt, config)


@pytest.mark.parametrize("groups", [1, 2, None])
def test_accepted_candidates_and_group_fallback_keep_the_baseline_output(engine, groups):
    config = DecodingConfig(max_new_tokens=30)
    lengths = []
    for prompt in random_prompts(4, VOCAB, seed=33):
        expected = baseline(engine, prompt, config)
        drafter = PlantedSpace(random_masks(), mask_count=3, groups=groups, oracle=expected, prompt_len=len(prompt))
        out, stats = engine.generate(prompt, drafter, config)
        assert out == expected
        lengths += stats.accept_lengths
    assert max(lengths) == 4  # all three candidates and the bonus token


def test_real_tokens_never_attend_to_masks(model):
    """Other mask embeddings change the mask rows' logits and not one bit of the real rows'."""
    prompt = [4, 9, 17, 33, 2, 60, 8]
    for target in (HfTarget(model), LeanTarget(model)):
        rows = []
        for seed in (1, 2):
            drafter = SpaceDrafter(random_masks(seed=seed), mask_count=3)
            drafter.begin(prompt, session_for(model))
            drafter._candidates = [11, 12, 13]
            tree = drafter.propose(prompt, max_depth=20)
            with torch.inference_mode():
                cache = target.new_cache()
                target.prefill(cache, prompt[:-1])
                logits, _ = target.verify(cache, len(prompt) - 1, prompt[-1], tree)
            rows.append(logits)
        assert torch.equal(rows[0][:4], rows[1][:4])  # the root and the three candidates
        assert (rows[0][4:] - rows[1][4:]).abs().amax(dim=-1).min() > 1e-6  # every mask row moved


def test_greedy_output_does_not_depend_on_the_masks(engine):
    config = DecodingConfig(max_new_tokens=20)
    prompt = random_prompts(2, VOCAB, seed=4)[1]
    outputs = {tuple(engine.generate(prompt, SpaceDrafter(random_masks(seed=s), mask_count=2), config)[0])
               for s in range(3)}
    assert len(outputs) == 1


def test_sampling_goes_through_the_shared_lossless_acceptance(engine, monkeypatch):
    assert_sampling_uses_the_lossless_rule(engine, SpaceDrafter(random_masks(), mask_count=2), monkeypatch,
                                           random_prompts(2, VOCAB, seed=8))


class PrimedSpace(SpaceDrafter):
    """SPACE with guesses for the first step too (a turn normally starts with masks only), so that
    the first sampled token is already verified against SPACE's tree."""

    def begin(self, prompt_ids, session):
        super().begin(prompt_ids, session)
        self._candidates = [3, 4, 5]


def test_sampled_tokens_follow_the_target_distribution():
    """End to end at T = 1: the first two of three sampled tokens follow the target's exact joint
    distribution (chi-square), with SPACE trees (candidates and mask groups) in every step."""
    model = sampling_check_model()
    masks = LearnedMasks(2, HIDDEN)
    with torch.no_grad():
        masks.mask_embeddings.normal_(0, 1.0, generator=torch.Generator().manual_seed(0))
    drafter = PrimedSpace(masks.to(torch.float64), mask_count=2)
    engine = SpeculativeEngine(model)
    prompt = [3, 4, 5]
    config = DecodingConfig(max_new_tokens=3, temperature=1.0)
    exact = exact_first_two(model, prompt, config)
    draws = 2000
    counts = Counter(tuple(engine.generate(prompt, drafter, config, seed=i)[0][:2]) for i in range(draws))
    stat, df = chi2_statistic(counts, exact, draws)
    assert stat < chi2_critical(df), (stat, df)


# ---------------------------------------------------------------------------------- the guesses
def causal_guesses(model, known: list[int], vectors: torch.Tensor) -> list[int]:
    """Argmax at masks appended after ``known`` in one plain causal forward: mask j at position
    len(known) + j, seeing every known token and the masks before it."""
    with torch.inference_mode():
        x = torch.cat([model.get_input_embeddings()(torch.tensor(known)), vectors.to(torch.float64)])
        logits = model(inputs_embeds=x[None]).logits[0]
    return logits[len(known):].argmax(dim=-1).tolist()


@pytest.mark.parametrize("groups", [1, 2, None])
def test_next_guesses_are_the_masks_after_the_last_accepted_token(engine, groups):
    """Each step's new candidates equal the argmax at masks placed right after the last accepted
    token in a plain causal forward (from the deepest group that ran, with the slots shifted, when
    more candidates were accepted than groups ran)."""
    model = engine.model
    masks = random_masks(slots=3, seed=5)
    vectors = masks.mask_embeddings.detach()
    checked, fallbacks = 0, 0
    for prompt in random_prompts(5, VOCAB, seed=13):
        expected = baseline(engine, prompt, DecodingConfig(max_new_tokens=30))
        drafter = PlantedSpace(masks, mask_count=3, groups=groups, oracle=expected, prompt_len=len(prompt))
        seen = []

        def on_step(step, drafter=drafter):
            if step.finished:
                return
            group_sizes = [len(nodes) for nodes in drafter._group_nodes]
            guesses = None if drafter.steps % 2 else list(drafter._candidates)  # odd steps: planted
            seen.append((list(step.context), len(step.accepted_nodes), group_sizes, guesses))

        engine.generate(prompt, drafter, DecodingConfig(max_new_tokens=30), on_step=on_step)
        for context, accepted, sizes, guesses in seen:
            if guesses is None or not sizes:
                continue
            group = min(accepted, len(sizes) - 1)
            # The group's anchor is the committed token `accepted - group` places before the bonus.
            known = context[: len(context) - 1 - (accepted - group)]
            want = causal_guesses(model, known, vectors[: sizes[group]])[accepted - group:]
            assert guesses == want
            checked += 1
            fallbacks += accepted > group
    assert checked >= 15
    if groups is not None:
        assert fallbacks > 0


# ---------------------------------------------------------------------------------- artifact
def write_masks(folder, model, slots=3, seed=0, fingerprint_model=None, shape=None):
    masks = random_masks(slots=slots, seed=seed, dtype=torch.float32)
    vectors = masks.mask_embeddings if shape is None else torch.zeros(shape)
    config = space_config(slots, HIDDEN, "tiny", base_fingerprint(fingerprint_model or model))
    save_artifact(folder, config, {KEY: vectors}, WEIGHT_FILES[0])
    return masks


def test_artifact_loads_onto_its_base_and_drafts_losslessly(engine, tmp_path):
    model = engine.model
    saved = write_masks(tmp_path / "space", model)
    masks = load_space(tmp_path / "space", model)
    assert masks.slots == 3 and masks.mask_embeddings.dtype == torch.float64
    torch.testing.assert_close(masks.mask_embeddings.float(), saved.mask_embeddings.detach().half().float())
    drafter = SpaceDrafter(masks, mask_count=3, groups=2)
    assert drafter.params()["variant"] == "frozen-base mask embeddings"
    config = DecodingConfig(max_new_tokens=20)
    for prompt in random_prompts(3, VOCAB, seed=3):
        assert engine.generate(prompt, drafter, config)[0] == baseline(engine, prompt, config)


def test_bad_artifacts_are_refused_with_clear_errors(model, tmp_path):
    write_masks(tmp_path / "other", model, fingerprint_model=make_tiny_llama(vocab_size=VOCAB, seed=1))
    with pytest.raises(BaseMismatchError, match="another base"):
        load_space(tmp_path / "other", model)
    write_masks(tmp_path / "wide", model, shape=(3, HIDDEN + 1))
    with pytest.raises(ArtifactError, match=rf"mask_embeddings has shape \[3, {HIDDEN + 1}\]"):
        load_space(tmp_path / "wide", model)
    (tmp_path / "medusa").mkdir()
    (tmp_path / "medusa" / "config.json").write_text(json.dumps({"method": "medusa"}))
    with pytest.raises(ArtifactError, match="not a SPACE mask artifact"):
        load_space(tmp_path / "medusa", model)
    with pytest.raises(ArtifactError, match="not found"):
        load_space(tmp_path / "nothing", model)


# ---------------------------------------------------------------------------------- command line
def space_args(**given):
    args = dict(model_path="embedded", space_path=None, space_mask_id=None, space_masks=None, space_groups=None)
    args.update(given)
    return SimpleNamespace(**args)


def test_defaults_per_device_and_clamped_to_the_trained_slots(model, tmp_path, monkeypatch):
    import methods.core.drafter as drafter_module

    write_masks(tmp_path / "space", model, slots=3)
    args = space_args(space_path=str(tmp_path / "space"))
    drafter = SpaceDrafter.from_args(args, model, None)
    assert (drafter.mask_count, drafter.groups) == (CPU_DEFAULTS["masks"], CPU_DEFAULTS["groups"])
    params = drafter.params()
    k, g = CPU_DEFAULTS["masks"], CPU_DEFAULTS["groups"]
    assert params["weights"].endswith("space") and params["forward_tokens_max"] == 1 + k + k * g
    # On a GPU the paper's k = 5 is cut to the 3 trained slots (never refused), groups to k + 1 ...
    monkeypatch.setattr(drafter_module, "device_defaults", lambda model, cpu, gpu: gpu)
    drafter = SpaceDrafter.from_args(args, model, None)
    assert GPU_DEFAULTS["masks"] > 3 and (drafter.mask_count, drafter.groups) == (3, 4)
    # ... but a given --space-masks above them is refused.
    with pytest.raises(ValueError, match="--space-masks 4: .* 3 trained slots"):
        SpaceDrafter.check_args(space_args(space_path=str(tmp_path / "space"), space_masks=4))
    with pytest.raises(ValueError, match="--space-masks 4"):
        SpaceDrafter.from_args(space_args(space_path=str(tmp_path / "space"), space_masks=4), model, None)


@pytest.mark.parametrize("given,message", [
    ({"space_masks": 0}, "--space-masks 0: must be at least 1"),
    ({"space_groups": 0}, "--space-groups 0: must be at least 1"),
    ({"space_path": "/no/such/folder"}, "--space-path /no/such/folder: no such folder"),
    ({"space_mask_id": -1}, "--space-mask-id -1: must be at least 0"),
    ({"space_mask_id": 5, "space_path": "."}, "exclude each other"),
    ({"model_path": "/some/other/model"}, "--space-path .*--space-mask-id"),
])
def test_bad_options_are_refused_before_loading(given, message):
    with pytest.raises(ValueError, match=message):
        SpaceDrafter.check_args(space_args(**given))


def test_registered_and_documented_in_help():
    from evaluation.inference import build_parser
    from methods.registry import available_methods

    assert "space" in available_methods()
    actions = {a.option_strings[0]: a for a in build_parser()._actions if a.option_strings}
    for flag in ("--space-path", "--space-mask-id", "--space-masks", "--space-groups"):
        assert actions[flag].help


# ---------------------------------------------------------------------------------- published model
def published_folder(tmp_path):
    """A tiny Llama folder standing in for a fine-tuned SPACE checkpoint: its vocabulary of VOCAB
    tokens holds the mask id VOCAB - 1 (and not VOCAB)."""
    from tests.test_inference import save_tiny_model

    return save_tiny_model(tmp_path / "space-checkpoint")


def test_published_checkpoint_runs_with_its_own_mask_token(tmp_path):
    from methods.core.model_loading import load_model

    folder = published_folder(tmp_path)
    loaded = load_model(str(folder), dtype="float64", device="cpu")
    drafter = SpaceDrafter.from_args(space_args(model_path=str(folder), space_mask_id=VOCAB - 1), loaded.model, None)
    assert drafter.params()["variant"] == f"fine-tuned target with mask token id {VOCAB - 1}"
    assert "weights" not in drafter.params()
    config = DecodingConfig(max_new_tokens=20)
    for backend in BACKENDS:
        engine = SpeculativeEngine(loaded.model, backend=backend)
        for prompt in random_prompts(3, VOCAB, seed=9):
            assert engine.generate(prompt, drafter, config)[0] == baseline(engine, prompt, config)
    # A model whose vocabulary has no such token (the model SPACE was tuned from) is refused.
    with pytest.raises(ArtifactError, match=f"no mask token {VOCAB}.*fine-tuned SPACE checkpoint"):
        SpaceDrafter.from_args(space_args(model_path=str(folder), space_mask_id=VOCAB), loaded.model, None)


def test_runner_records_the_variant_and_compares_with_the_checkpoints_own_baseline(tmp_path):
    from evaluation.inference import main
    from tests.test_inference import read

    folder = published_folder(tmp_path)
    questions = tmp_path / "question.jsonl"
    questions.write_text(json.dumps({"question_id": 1, "category": "writing", "turns": ["w5 w6 w7", "w9 w10"]}) + "\n")
    argv = ["--model-path", str(folder), "--dtype", "float64", "--device", "cpu", "--question-file", str(questions),
            "--answer-dir", str(tmp_path / "answers"), "--model-id", "space-tiny-{method}", "--max-new-tokens", "16",
            "--warmup", "0", "--no-progress", "--space-mask-id", str(VOCAB - 1), "--space-masks", "3"]
    assert main(["--method", "vanilla,space", *argv]) == 0
    base = read(tmp_path / "answers" / "space-tiny-vanilla.jsonl")[0]
    record = read(tmp_path / "answers" / "space-tiny-space.jsonl")[0]
    assert record["method_params"]["variant"] == f"fine-tuned target with mask token id {VOCAB - 1}"
    assert record["method_params"]["masks"] == 3 and record["lossy"] is False
    assert record["choices"][0]["token_ids"] == base["choices"][0]["token_ids"]


# ---------------------------------------------------------------------------------- training
def test_training_logits_are_the_engines_mask_logits():
    """The trainer's mask groups (one prefix pass, G groups against its cache) compute what the
    engine's verification computes at the same masks: training and drafting agree."""
    import numpy as np

    from training.recipes.space import SpaceRecipe

    model = make_tiny_llama(vocab_size=VOCAB, seed=0)
    masks = random_masks(slots=3, seed=2)
    recipe = SpaceRecipe(SimpleNamespace())
    recipe.base, recipe.decoder, recipe.lm_head = model, model.get_decoder(), model.get_output_embeddings()
    recipe.module = masks
    tokens = np.array(random_prompts(2, VOCAB, seed=77)[1] * 2, dtype=np.int64)
    recipe.tokens, recipe.starts = tokens, np.array([0, len(tokens)])
    anchors = np.array([3, 7, len(tokens) - 3])
    with torch.no_grad():
        logits, labels = recipe.mask_logits(0, anchors)
    assert logits.shape == (9, VOCAB)
    target = HfTarget(model)
    for g, anchor in enumerate(anchors):
        drafter = SpaceDrafter(masks, mask_count=3, groups=1)
        context = tokens[: anchor + 1].tolist()
        drafter.begin(context, session_for(model))
        tree = drafter.propose(context, max_depth=20)
        with torch.inference_mode():
            cache = target.new_cache()
            target.prefill(cache, context[:-1])
            engine_logits, _ = target.verify(cache, len(context) - 1, context[-1], tree)
        torch.testing.assert_close(logits[3 * g: 3 * g + 3], engine_logits[1:], rtol=1e-9, atol=1e-9)
        want = [int(tokens[t]) if t < len(tokens) else -100 for t in anchor + 2 + np.arange(3)]
        assert labels[3 * g: 3 * g + 3].tolist() == want  # x_{s+2+j}; past the end: no label


def test_trainer_writes_masks_that_load_and_draft_losslessly(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from methods.core.model_loading import load_model
    from tests.test_inference import save_tiny_model
    from tests.test_train_drafter import tiny_training_setup
    from training.train_drafter import main

    folder, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    out = tmp_path / "space"
    assert main(["--method", "space", "--model-path", str(folder), "--corpus", str(corpus), "--out", str(out),
                 "--epochs", "2", "--batch-size", "8", "--space-slots", "3", "--space-anchors", "4",
                 "--space-eval-anchors", "6", "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "space" and config["variant"] == "frozen-base mask embeddings"
    assert config["mask_slots"] == 3 and config["base_fingerprint"]["tensors"]
    epochs = config["metrics"]["heldout"]
    assert len(epochs) == 2 and all(len(e["top1"]) == 3 and 0 <= min(e["top1"]) <= max(e["top1"]) <= 1 for e in epochs)
    assert all(e["prefix_right"][2] <= e["prefix_right"][1] <= e["prefix_right"][0] for e in epochs)
    state = load_file(str(out / "space_masks.safetensors"))
    assert set(state) == {"mask_embeddings"} and state["mask_embeddings"].dtype == torch.float16
    assert state["mask_embeddings"].shape == (3, HIDDEN)
    assert "slot 2" in (out / "README.md").read_text()

    masks = load_space(out, loaded.model)
    engine = SpeculativeEngine(loaded.model)
    config = DecodingConfig(max_new_tokens=16)
    drafter = SpaceDrafter(masks, mask_count=3)
    for prompt in random_prompts(3, VOCAB, seed=50):
        assert engine.generate(prompt, drafter, config)[0] == engine.generate(prompt, VanillaDrafter(), config)[0]
    other = load_model(str(save_tiny_model(tmp_path / "other", seed=1)), dtype="float32", device="cpu")
    with pytest.raises(BaseMismatchError, match="another base"):
        load_space(out, other.model)


def test_training_learns_something(tmp_path, monkeypatch):
    """More steps than the smoke test: held-out accuracy of slot 0 rises above the start's."""
    from methods.core.model_loading import load_model
    from tests.test_inference import save_tiny_model
    from tests.test_train_drafter import write_corpus
    from training.train_drafter import main

    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path / "cache"))
    folder = save_tiny_model(tmp_path / "tiny-base")
    loaded = load_model(str(folder), dtype="float32", device="cpu")
    corpus = write_corpus(tmp_path / "corpus.jsonl.gz", loaded, count=40)
    common = ["--method", "space", "--model-path", str(folder), "--corpus", str(corpus), "--out", str(tmp_path / "s"),
              "--space-slots", "2", "--space-anchors", "8", "--batch-size", "16", "--no-progress"]
    main([*common, "--epochs", "1", "--max-steps", "1", "--lr", "1e-9"])
    before = json.loads((tmp_path / "s" / "config.json").read_text())["metrics"]["heldout"][-1]["top1"][0]
    main([*common, "--epochs", "8", "--lr", "5e-2"])
    after = json.loads((tmp_path / "s" / "config.json").read_text())["metrics"]["heldout"][-1]["top1"][0]
    assert after > before + 0.05


# ---------------------------------------------------------------------------------- records and pairing
def test_a_space_checkpoint_is_its_own_model_and_never_paired_with_the_original(tmp_path):
    """Our runs of a checkpoint named after the method pair with its own baseline and are listed
    under its name; Spec-Bench's SPACE answers (named after the model SPACE was tuned from) are
    named apart and refused against that model's baseline."""
    from evaluation.record.answers import read_answer_file, run_model
    from evaluation.compare.compatibility import check_compatibility
    from leaderboard.store import run_columns
    from tests.answer_fixtures import synthetic_run, write_answer_file

    def ours(method):
        name = f"vicuna-v1.3-7b-space-{method}-float16-temp-0.0"
        records = synthetic_run(method=method, model_id=name, accept=1 if method == "vanilla" else 2)
        return read_answer_file(write_answer_file(tmp_path / f"{name}.jsonl", records))

    space, vanilla = ours("space"), ours("vanilla")
    assert run_model(space) == run_model(vanilla) == "vicuna-v1.3-7b-space"
    assert run_columns(space)["model"] == run_columns(vanilla)["model"] == "vicuna-v1.3-7b-space"
    _, refused = check_compatibility([space], [vanilla], [(0, 0)])
    assert refused == []

    def spec_bench(method):
        name = f"vicuna-7b-v1.3-{method}-float16-temp-0.0"
        records = synthetic_run(method=method, model_id=name, spec_bench=True)
        return read_answer_file(write_answer_file(tmp_path / "sb" / f"{name}.jsonl", records))

    theirs, their_base = spec_bench("space"), spec_bench("vanilla")
    assert run_model(theirs) == "vicuna-7b-v1.3-space" and run_model(their_base) == "vicuna-7b-v1.3"
    assert run_columns(theirs)["model"] == "vicuna-7b-v1.3-space"
    _, refused = check_compatibility([theirs], [their_base], [(0, 0)])
    assert [m.setting for m in refused] == ["model"]
    # Our frozen-base variant stays under the model it runs on.
    frozen = synthetic_run(method="space", model_id="smollm2-135m-instruct-space-float32-temp-0.0")
    assert run_model(read_answer_file(write_answer_file(tmp_path / "f.jsonl", frozen))) == "smollm2-135m-instruct"


def test_eval_sh_runs_a_space_checkpoint_against_its_own_baseline(tmp_path):
    """eval.sh with SPACE_MASK_ID on a model folder named like the published checkpoint: the masks
    option reaches the runner, and speed/equality pair the run with that checkpoint's baseline."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.test_inference import save_tiny_model

    root = Path(__file__).resolve().parents[1]
    model = save_tiny_model(tmp_path / "tiny-space")
    questions = tmp_path / "question.jsonl"
    questions.write_text("".join(json.dumps({"question_id": i, "category": c, "turns": ["w5 w6 w7 w5 w6"]}) + "\n"
                                 for i, c in [(1, "writing"), (2, "qa")]))
    db = tmp_path / "results.db"
    env = dict(os.environ, PYTHON=sys.executable, MODEL_PATH=str(model), METHODS="space",
               SPACE_MASK_ID=str(VOCAB - 1), DTYPE="float64", DEVICE="cpu", MAX_NEW_TOKENS="12", DB=str(db),
               ANSWER_DIR=str(tmp_path / "answers"), REPORT_DIR=str(tmp_path / "reports"),
               EXTRA_ARGS=f"--question-file {questions} --warmup 0 --no-progress")
    done = subprocess.run([str(root / "eval.sh"), "--quick"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((tmp_path / "answers" / "tiny-space-space-float64-temp-0.0-quick.jsonl").read_text()
                        .splitlines()[0])
    assert record["method_params"]["variant"] == f"fine-tuned target with mask token id {VOCAB - 1}"
    assert "\nResult totally Equal!\n" in (tmp_path / "reports" / "equal-space.txt").read_text()
    table = done.stdout[done.stdout.index("All methods against vanilla"):]
    assert "space" in table and "yes (2/2 turns)" in table
    # Without SPACE_MASK_ID or SPACE_PATH, on a model other than the embedded one, space is skipped.
    env.pop("SPACE_MASK_ID")
    env["METHODS"] = "pld space"
    done = subprocess.run([str(root / "eval.sh"), "--quick"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "skipping space (no SPACE_PATH" in done.stderr
