"""The drafter trainer end to end on a tiny local model: features, a few steps, the artifact."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.core.hidden_states import HiddenStateRequest
from methods.core.model_loading import load_model
from methods.drafters.medusa import MedusaDrafter
from methods.drafters.vanilla import VanillaDrafter
from methods.heads.artifact import BaseMismatchError
from methods.heads.medusa import load_medusa
from tests.engine_helpers import random_prompts
from tests.test_inference import VOCAB, save_tiny_model
from training.features import build_features, is_heldout
from training.train_drafter import RecordedCommandError, build_parser, main, parse_recorded_command


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = save_tiny_model(tmp_path_factory.mktemp("tiny-base"))
    return folder, load_model(str(folder), dtype="float32", device="cpu")


def write_corpus(path, loaded, count=24, with_ids=True):
    """The tiny model's own greedy answers, with token ids and a split, or as text only."""
    engine = SpeculativeEngine(loaded.model)
    tok = loaded.tokenizer
    rows = []
    for i, prompt_ids in enumerate(random_prompts(count, VOCAB, seed=40)):
        user = " ".join(f"w{t}" for t in prompt_ids)
        prompt = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=True,
                                         add_generation_prompt=True)
        prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
        answer, _ = engine.generate(prompt, VanillaDrafter(), DecodingConfig(max_new_tokens=20))
        row = {"id": f"c{i}", "conversations": [{"role": "user", "content": user},
                                                {"role": "assistant", "content": tok.decode(answer)}]}
        if with_ids:
            row.update(answer_token_ids=answer, split="heldout" if i % 4 == 0 else "train", finished=False)
        rows.append(row)
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def tiny_training_setup(tmp_path, monkeypatch):
    """A saved tiny base, the base loaded, and a corpus of its own answers, with the feature cache
    under tmp_path: what every recipe's end-to-end trainer test starts from."""
    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path / "cache"))
    folder = save_tiny_model(tmp_path / "tiny-base")
    loaded = load_model(str(folder), dtype="float32", device="cpu")
    return folder, loaded, write_corpus(tmp_path / "corpus.jsonl.gz", loaded)


def interrupt_then_resume(monkeypatch, recipe_cls, main, args, crash_at: int, other_setting: list[str]):
    """Run ``main(args)`` with the recipe's loss raising KeyboardInterrupt at its ``crash_at``-th
    call, check that the checkpoint it left is neither overwritten by a fresh start nor continued
    with ``other_setting`` changed, then resume it to the end."""
    real, calls = recipe_cls.loss, []

    def crash(self, batch):
        calls.append(1)
        if len(calls) == crash_at:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(recipe_cls, "loss", crash)
    with pytest.raises(KeyboardInterrupt):
        main([*args, "--checkpoint-minutes", "0"])
    monkeypatch.setattr(recipe_cls, "loss", real)
    out = args[args.index("--out") + 1]
    assert (Path(out) / "training-checkpoint.pt").exists()
    with pytest.raises(SystemExit):  # a checkpoint is never overwritten by a fresh start
        main(args)
    with pytest.raises(SystemExit):  # nor continued with other settings
        main([*args, "--resume", *other_setting])
    assert main([*args, "--resume", "--checkpoint-minutes", "0"]) == 0
    assert not (Path(out) / "training-checkpoint.pt").exists()  # finished: nothing left to resume


def test_trainer_trains_a_few_steps_and_writes_a_loadable_artifact(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path / "cache"))
    folder, loaded = tiny
    corpus = write_corpus(tmp_path / "corpus.jsonl.gz", loaded)
    out = tmp_path / "heads"
    assert main(["--method", "medusa", "--model-path", str(folder), "--corpus", str(corpus), "--out", str(out),
                 "--epochs", "2", "--batch-size", "64", "--medusa-heads", "3", "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "medusa" and config["medusa_num_heads"] == 3 and config["shares_base_lm_head"]
    assert config["base_model_name_or_path"] == str(folder) and config["base_fingerprint"]["tensors"]
    epochs = config["metrics"]["heldout"]
    assert len(epochs) == 2 and all(len(e["top1"]) == 3 and 0 <= min(e["top1"]) <= max(e["top1"]) <= 1 for e in epochs)
    assert min(epochs[-1]["positions"]) > 0
    state = load_file(str(out / "medusa_lm_head.safetensors"))
    assert set(state) == {f"{k}.0.linear.{p}" for k in range(3) for p in ("weight", "bias")} | {"draft_vocab"}
    assert all(v.dtype == torch.float16 for k, v in state.items() if k != "draft_vocab")  # no lm_head saved
    assert "Held-out top-1" in (out / "README.md").read_text()

    # The trained heads draft on the engine and the output stays the baseline's.
    heads = load_medusa(out, loaded.model)
    assert heads.num_heads == 3 and heads.draft_vocab is not None
    drafter = MedusaDrafter(heads, choices=[[0], [1], [0, 0], [0, 0, 0]])
    engine = SpeculativeEngine(loaded.model)
    config = DecodingConfig(max_new_tokens=16)
    for prompt in random_prompts(3, VOCAB, seed=50):
        assert engine.generate(prompt, drafter, config)[0] == engine.generate(prompt, VanillaDrafter(), config)[0]

    # On a different base the artifact is refused.
    other = load_model(str(save_tiny_model(tmp_path / "other", seed=1)), dtype="float32", device="cpu")
    with pytest.raises(BaseMismatchError, match="another base"):
        load_medusa(out, other.model)


def test_training_learns_something(tiny, tmp_path, monkeypatch):
    """More steps than the smoke test: held-out accuracy of head 0 rises above its start."""
    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path / "cache"))
    folder, loaded = tiny
    corpus = write_corpus(tmp_path / "corpus.jsonl.gz", loaded, count=40)
    out = tmp_path / "heads"
    main(["--method", "medusa", "--model-path", str(folder), "--corpus", str(corpus), "--out", str(out),
          "--epochs", "1", "--max-steps", "1", "--lr", "1e-9", "--batch-size", "64", "--no-progress"])
    before = json.loads((out / "config.json").read_text())["metrics"]["heldout"][-1]["top1"][0]
    main(["--method", "medusa", "--model-path", str(folder), "--corpus", str(corpus), "--out", str(out),
          "--epochs", "30", "--lr", "3e-3", "--batch-size", "64", "--no-progress"])
    after = json.loads((out / "config.json").read_text())["metrics"]["heldout"][-1]["top1"][0]
    assert after > before + 0.05


def test_text_only_corpus_is_tokenised_and_split_by_a_fixed_rule(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path / "cache"))
    _, loaded = tiny
    corpus = write_corpus(tmp_path / "text.jsonl.gz", loaded, count=30, with_ids=False)
    request = HiddenStateRequest(layer_inputs=(1,), final=True)
    features = build_features(loaded.model, loaded.tokenizer, corpus, request, heldout_fraction=0.3, progress=False)
    expected = [is_heldout(f"c{i}", 0.3) for i in range(30)]
    assert features.heldout.tolist() == expected and any(expected) and not all(expected)
    # Rows are the target's states on the stored tokens; the answer ends with the end-of-turn token.
    s0, s1 = features.starts[0], features.starts[1]
    tokens = features.tokens[s0:s1].tolist()
    assert tokens[-1] == loaded.tokenizer.eos_token_id and features.answer[s1 - 1] and not features.answer[s0]
    with torch.no_grad():
        hs = loaded.model(input_ids=torch.tensor([tokens]), output_hidden_states=True).hidden_states
    np.testing.assert_allclose(features.final[s0:s1], hs[-1][0].numpy(), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(features.layer_inputs[1][s0:s1], hs[1][0].numpy(), rtol=2e-3, atol=2e-3)
    # A second call reads the cache.
    again = build_features(loaded.model, loaded.tokenizer, corpus, request, heldout_fraction=0.3, progress=False)
    assert again.folder == features.folder and isinstance(again.final, np.memmap)


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for action in build_parser()._actions:
        if action.option_strings:
            assert action.help, f"{action.option_strings} has no help"
    assert "--medusa-heads" in text and "--model-path" in text


@pytest.mark.parametrize("method,extra", [("medusa", ["--medusa-heads", "2"]), ("hydra", ["--hydra-heads", "2"]),
                                          ("eagle", ["--eagle-steps", "2"]), ("eagle3", []),
                                          ("dflash", ["--dflash-target-layers", "0"]), ("sps", []),
                                          ("space", [])])
def test_every_recipe_trains_in_bfloat16_mixed_precision(method, extra, tmp_path, monkeypatch):
    folder, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    out = tmp_path / method
    assert main(["--method", method, "--model-path", str(folder), "--corpus", str(corpus), "--out", str(out),
                 "--max-steps", "2", "--precision", "bfloat16", "--no-progress", *extra]) == 0
    record = out / ("metadata.json" if method == "sps" else "config.json")  # sps: config.json is the model's
    assert json.loads(record.read_text())["training"]["precision"] == "bfloat16"
    assert "bfloat16 training steps" in (out / "README.md").read_text()
    for name, tensor in load_file(str(next(out.glob("*.safetensors")))).items():
        assert torch.isfinite(tensor.float()).all(), name


def test_a_checkpoint_kept_outside_the_output_folder_resumes_and_stays_out_of_the_recorded_command(
        tiny, tmp_path, monkeypatch):
    from training.recipes.medusa import MedusaRecipe

    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path / "cache"))
    folder, loaded = tiny
    corpus = write_corpus(tmp_path / "corpus.jsonl.gz", loaded)
    out, kept = tmp_path / "heads", tmp_path / "elsewhere"
    args = ["--method", "medusa", "--model-path", str(folder), "--corpus", str(corpus), "--out", str(out),
            "--epochs", "2", "--batch-size", "64", "--no-progress"]
    real, calls = MedusaRecipe.loss, []

    def crash(self, batch):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(MedusaRecipe, "loss", crash)
    with pytest.raises(KeyboardInterrupt):
        main([*args, "--checkpoint-dir", str(kept), "--checkpoint-minutes", "0"])
    monkeypatch.setattr(MedusaRecipe, "loss", real)
    assert (kept / "training-checkpoint.pt").is_file() and not (out / "training-checkpoint.pt").exists()
    with pytest.raises(SystemExit):  # the checkpoint is where --checkpoint-dir says, not in --out
        main([*args, "--resume"])
    assert main([*args, "--checkpoint-dir", str(kept), "--resume"]) == 0
    assert not (kept / "training-checkpoint.pt").exists()
    command = json.loads((out / "config.json").read_text())["training"]["command"]
    assert "--checkpoint-dir" not in command and "--resume" not in command and str(kept) not in command
    assert command.endswith("--no-progress")
    # The recorded command reads back as the options the run trained with.
    options = parse_recorded_command(command)
    assert (options.method, options.epochs, options.batch_size, options.out) == ("medusa", 2.0, 64, str(out))


@pytest.mark.parametrize("command, reason", [
    ("python -m training.sweep_drafter --method medusa", "not a train_drafter command"),
    ("python -m training.train_drafter --method medusa --no-such-option", "does not parse"),
    ("python -m training.train_drafter --method 'medusa", "does not parse"),  # unbalanced quote
])
def test_a_recorded_command_the_trainer_cannot_read_is_refused_with_the_reason(command, reason):
    with pytest.raises(RecordedCommandError, match=reason):
        parse_recorded_command(command)


# ---------------------------------------------------------------------------------- --init-from
RECIPE_ARGS = [("medusa", ["--medusa-heads", "2"]), ("hydra", ["--hydra-heads", "2"]),
               ("eagle", ["--eagle-steps", "2"]), ("eagle3", []), ("dflash", ["--dflash-target-layers", "0"]),
               ("sps", []), ("space", [])]


@pytest.mark.parametrize("method,extra", RECIPE_ARGS, ids=[m for m, _ in RECIPE_ARGS])
def test_init_from_starts_a_run_from_every_tensor_of_an_artifact(method, extra, tmp_path, monkeypatch):
    """A run started from an artifact and trained at learning rate 0 writes that artifact's tensors
    back unchanged: every tensor the recipe saves was taken from the folder, none left at its
    initialisation (a recipe whose artifact_tensors missed one would write a fresh value)."""
    folder, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    common = ["--method", method, "--model-path", str(folder), "--corpus", str(corpus), "--no-progress", *extra]
    first, second = tmp_path / "first", tmp_path / "second"
    assert main([*common, "--out", str(first), "--max-steps", "3", "--lr", "3e-2"]) == 0
    # Another seed: a fresh start would initialise (and, for SpS, pick layers) differently.
    assert main([*common, "--out", str(second), "--init-from", str(first), "--max-steps", "1", "--lr", "0",
                 "--seed", "7"]) == 0
    weights = next(first.glob("*.safetensors")).name
    before, after = load_file(str(first / weights)), load_file(str(second / weights))
    assert set(before) == set(after)
    for name in before:
        assert torch.equal(before[name], after[name]), name
    record = json.loads((second / ("metadata.json" if method == "sps" else "config.json")).read_text())["training"]
    assert record["initialised_from"]["folder"] == str(first)
    assert len(record["initialised_from"]["weights_sha256"]) == 64 and record["initialised_from"]["steps"] == 3
    assert "started from the weights of" in (second / "README.md").read_text()


def test_init_from_refuses_what_cannot_start_the_run(tiny, tmp_path, monkeypatch, capsys):
    from safetensors.torch import save_file

    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path / "cache"))
    folder, loaded = tiny
    corpus = write_corpus(tmp_path / "corpus.jsonl.gz", loaded)
    common = ["--model-path", str(folder), "--corpus", str(corpus), "--no-progress", "--max-steps", "1"]
    heads = tmp_path / "medusa"
    assert main(["--method", "medusa", *common, "--out", str(heads), "--medusa-heads", "2"]) == 0

    def refused(*args) -> str:
        with pytest.raises(SystemExit):
            main([*common, *args])
        return capsys.readouterr().err

    assert "not a hydra artifact" in refused("--method", "hydra", "--out", str(tmp_path / "h"), "--init-from", str(heads))
    assert "no config.json" in refused("--method", "medusa", "--out", str(tmp_path / "m"), "--init-from",
                                       str(tmp_path / "nowhere"))
    # Other options: a third head has no weights in the folder.
    assert "lacks" in refused("--method", "medusa", "--out", str(tmp_path / "m"), "--medusa-heads", "3",
                              "--init-from", str(heads))
    # Another draft vocabulary size: the artifact's weights score another number of tokens.
    assert "asks for 20 at most" in refused("--method", "medusa", "--out", str(tmp_path / "m"), "--medusa-heads", "2",
                                    "--medusa-draft-vocab", "20", "--init-from", str(heads))
    # A vocabulary that is not ascending distinct ids (no artifact of ours writes one).
    state = load_file(str(heads / "medusa_lm_head.safetensors"))
    state["draft_vocab"] = state["draft_vocab"].flip(0).contiguous()
    save_file(state, str(heads / "medusa_lm_head.safetensors"))
    assert "not ascending distinct ids" in refused("--method", "medusa", "--out", str(tmp_path / "m"),
                                                   "--medusa-heads", "2", "--init-from", str(heads))
    # Made for another base.
    other = save_tiny_model(tmp_path / "other", seed=1)
    assert "another base" in refused("--method", "medusa", "--model-path", str(other), "--out", str(tmp_path / "m"),
                                     "--medusa-heads", "2", "--init-from", str(heads))


VOCABULARY_RECIPES = [(m, extra) for m, extra in RECIPE_ARGS if m != "space"]  # SPACE scores no vocabulary


@pytest.mark.parametrize("method,extra", VOCABULARY_RECIPES, ids=[m for m, _ in VOCABULARY_RECIPES])
def test_init_from_keeps_the_artifacts_draft_vocabulary_on_another_corpus(method, extra, tmp_path, monkeypatch):
    """A drafter trained further on another slice of the corpus scores the tokens it learned to
    score: the run keeps the artifact's draft vocabulary, not the one the new corpus would rank."""
    from safetensors.torch import save_file

    folder, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    common = ["--method", method, "--model-path", str(folder), "--no-progress", "--max-steps", "1", *extra]
    first, second, fresh = tmp_path / "first", tmp_path / "second", tmp_path / "fresh"
    assert main([*common, "--corpus", str(corpus), "--out", str(first)]) == 0
    weights = first / next(first.glob("*.safetensors")).name
    state = load_file(str(weights))
    # Another corpus ranks other tokens: stand in for it by swapping one kept id for one not kept.
    if method == "eagle3":
        kept = torch.nonzero(state["t2d"]).flatten()
    else:
        kept = state["draft_vocab"].long()
    outside = next(i for i in range(VOCAB) if i not in set(kept.tolist()))
    changed = torch.sort(torch.cat([kept[1:], torch.tensor([outside])])).values
    if method == "eagle3":
        state["t2d"] = torch.zeros_like(state["t2d"])
        state["t2d"][changed] = True
        state["d2t"] = (changed - torch.arange(len(changed))).to(state["d2t"].dtype)
    else:
        state["draft_vocab"] = changed.to(state["draft_vocab"].dtype)
    save_file(state, str(weights))
    assert main([*common, "--corpus", str(corpus), "--out", str(second), "--init-from", str(first)]) == 0
    assert main([*common, "--corpus", str(corpus), "--out", str(fresh)]) == 0
    written = load_file(str(second / weights.name))
    ranked = load_file(str(fresh / weights.name))
    if method == "eagle3":
        assert torch.equal(torch.nonzero(written["t2d"]).flatten(), changed)
        assert not torch.equal(written["t2d"], ranked["t2d"])
    else:
        assert torch.equal(written["draft_vocab"].long(), changed)
        assert not torch.equal(written["draft_vocab"], ranked["draft_vocab"])
