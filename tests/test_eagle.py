"""EAGLE and EAGLE-2: the draft model, its pair cache, both trees on the engine, the published layout."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.core.sampling import target_probs
from methods.core.static_tree import EAGLE_MC_SIM_7B_63, StaticTree
from methods.core.tree import DraftTree
from methods.core.acceptance import accept_sampling
from methods.drafters.eagle import CPU_CHOICES, EagleDrafter
from methods.drafters.eagle2 import Eagle2Drafter
from methods.drafters.vanilla import VanillaDrafter
from methods.heads.artifact import ArtifactError
from methods.heads.eagle import EagleDraftModel, EagleShape
from methods.heads.eagle_format import load_eagle
from tests.engine_helpers import baseline, random_prompts, run_turns
from tests.test_acceptance import (assert_first_two_follow_the_model, chi2_critical, chi2_statistic,
                                   sampling_check_model)
from tests.tiny_model import make_tiny_llama

VOCAB = 97


def random_draft(model, seed=0, draft_vocab=None, scale=0.5) -> EagleDraftModel:
    """A draft with random weights (large enough that its guesses vary) bound to ``model``."""
    torch.manual_seed(seed)
    return randomised_and_bound(EagleDraftModel(EagleShape.like_base(model), draft_vocab=draft_vocab), model, scale)


def randomised_and_bound(draft, model, scale):
    """``draft`` with every matrix drawn from N(0, scale) and every vector (norm weights, biases)
    from U(0.5, 1.5), in float64 and bound to ``model``; for EAGLE and EAGLE-3 drafts alike."""
    with torch.no_grad():
        for p in draft.parameters():
            p.normal_(0, scale) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    draft.to(torch.float64)
    draft.bind(model)
    return draft


def target_features(model, tokens):
    with torch.no_grad():
        return model(input_ids=torch.tensor([tokens]), output_hidden_states=True).hidden_states[-1][0]


# ---------------------------------------------------------------------------------- the draft model
def test_draft_cache_and_tree_entries_compute_what_one_causal_pass_computes(model):
    """Pairs run one at a time against the cache, or as a tree entry against it, give the same
    outputs as one causal pass over all pairs: the cache and the expansion mask are right."""
    from methods.drafters.eagle_state import PairTracker, TreeExpansion

    draft = random_draft(model)
    tokens = [5, 9, 14, 3, 22, 41, 7]
    feats = target_features(model, tokens)
    n = len(tokens) - 1
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    full, _ = draft(feats[None, :n], draft.embed(torch.tensor(tokens[1:]))[None], torch.arange(n)[None], None, causal[None])

    tracker = PairTracker(draft)
    tracker.begin(tokens[:4], feats[:3], torch.device("cpu"), torch.float64)
    tracker.catch_up()
    torch.testing.assert_close(tracker.last_output, full[0, 2])
    tracker.add_step(feats[3:6], tokens[4:7])  # as after a step that accepted two nodes
    tracker.catch_up()
    assert tracker.n_pairs == n
    torch.testing.assert_close(tracker.last_output, full[0, -1])

    # A tree entry at depth 1 fed the *true* feature equals the real pair at that position.
    tracker = PairTracker(draft)
    tracker.begin(tokens[:4], feats[:3], torch.device("cpu"), torch.float64)
    tracker.catch_up()
    expansion = TreeExpansion(draft, tracker)
    out = expansion.run(feats[3:4], [-1], torch.tensor([tokens[4]]), depth=1)
    torch.testing.assert_close(out[0], full[0, 3])
    # ... and a depth-2 entry under it sees it (and not a sibling added alongside).
    expansion.run(torch.stack([feats[3], feats[3] * 0 + 1]), [-1, -1], torch.tensor([tokens[4], 60]), depth=1)
    out2 = expansion.run(feats[4:5], [0], torch.tensor([tokens[5]]), depth=2)
    torch.testing.assert_close(out2[0], full[0, 4])


# ---------------------------------------------------------------------------------- engine, greedy
@pytest.mark.parametrize("choices", [EAGLE_MC_SIM_7B_63, CPU_CHOICES, [[0], [0, 0], [0, 0, 0], [0, 0, 0, 0], [1], [2]]],
                         ids=["mc_sim_7b_63", "cpu", "chain-ish"])
def test_eagle_greedy_output_is_the_baseline_token_for_token_multi_turn(engine, model, choices):
    drafter = EagleDrafter(random_draft(model), choices=choices)
    config = DecodingConfig(max_new_tokens=24)
    for prompt in random_prompts(4, VOCAB, seed=21):
        assert run_turns(engine, drafter, prompt, config) == run_turns(engine, VanillaDrafter(), prompt, config)


@pytest.mark.parametrize("total,depth,top_k", [(60, 5, 10), (8, 3, 4), (2, 1, 1), (5, 0, 3)])
def test_eagle2_greedy_output_is_the_baseline_token_for_token_multi_turn(engine, model, total, depth, top_k):
    drafter = Eagle2Drafter(random_draft(model, seed=1), total_token=total, depth=depth, top_k=top_k)
    config = DecodingConfig(max_new_tokens=24)
    for prompt in random_prompts(4, VOCAB, seed=22):
        assert run_turns(engine, drafter, prompt, config) == run_turns(engine, VanillaDrafter(), prompt, config)


class CheckedCache:
    """Wraps a drafter's propose: after it, the draft cache must hold exactly the real pairs of the
    context, equal to a fresh causal pass over the target's features of the whole context."""

    def __init__(self, drafter, model):
        self.drafter, self.model, self.checked = drafter, model, 0
        real = drafter.propose

        def propose(context, max_depth):
            tree = real(context, max_depth)
            if max_depth >= 1:  # with no room for a draft the draft is not run at all
                self.check(context)
            return tree

        drafter.propose = propose

    def check(self, context):
        draft, tracker = self.drafter.draft, self.drafter.tracker
        n = len(context) - 1
        assert tracker.n_pairs == n
        if n == 0:
            return
        feats = target_features(self.model, context[:-1])
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        out, kv = draft(feats[None], draft.embed(torch.tensor(context[1:]))[None], torch.arange(n)[None], None,
                        causal[None])
        cached_k, cached_v = tracker.cache.layers()[0]
        torch.testing.assert_close(cached_k, kv[0][0], rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(cached_v, kv[0][1], rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(tracker.last_output, out[0, -1], rtol=1e-8, atol=1e-8)
        self.checked += 1


@pytest.mark.parametrize("method", ["eagle", "eagle2"])
def test_draft_cache_stays_aligned_with_the_accepted_path_across_steps_and_turns(engine, model, method):
    draft = random_draft(model, seed=2)
    drafter = EagleDrafter(draft, choices=EAGLE_MC_SIM_7B_63) if method == "eagle" else Eagle2Drafter(draft, 12, 3, 3)
    checked = CheckedCache(drafter, model)
    for prompt in [[7], *random_prompts(2, VOCAB, seed=23)]:
        for turn_out in run_turns(engine, drafter, prompt, DecodingConfig(max_new_tokens=16)):
            assert turn_out
    assert checked.checked > 10


def test_a_draft_that_knows_the_answer_is_accepted_deep(engine, model):
    """With the target's own answer planted as the draft's top choice, whole chains are accepted,
    and the pair updates after multi-token steps keep the output exact."""
    prompt = [5, 17, 30, 8]
    config = DecodingConfig(max_new_tokens=20)
    expected = baseline(engine, prompt, config)
    full = prompt + expected

    class Planted(EagleDrafter):
        def propose(self, context, max_depth):
            tree = super().propose(context, max_depth)  # the draft still runs (and its cache grows)
            truth = full[len(context): len(context) + 3]
            if not truth or max_depth < 1:
                return tree
            return DraftTree.chain(truth[:max_depth])

    drafter = Planted(random_draft(model), choices=CPU_CHOICES)
    checked = CheckedCache(drafter, model)
    out, stats = engine.generate(prompt, drafter, config)
    assert out == expected and max(stats.accept_lengths) == 4 and checked.checked >= 4


def test_eagle2_keeps_the_best_scoring_prefix_closed_nodes(model):
    draft = random_draft(model, seed=4)
    drafter = Eagle2Drafter(draft, total_token=10, depth=3, top_k=3)
    engine = SpeculativeEngine(model)
    trees = []
    real = drafter.propose
    drafter.propose = lambda c, d: trees.append((d, real(c, d))) or trees[-1][1]
    engine.generate([4, 8, 15, 16, 23], drafter, DecodingConfig(max_new_tokens=12))
    roomy = [t for d, t in trees if d >= 4]  # near the cap the tree is cut to the room left
    assert roomy and all(len(t) == 9 for t in roomy)
    for _, tree in trees:
        assert len(tree) == 0 or int(tree.depth.max()) <= 4
        children = tree.children()
        for kids in children:  # siblings are distinct tokens
            assert len({int(tree.tokens[k]) for k in kids}) == len(kids)


def test_eagle2_depth_one_level_is_the_drafts_top_k_at_the_root(model):
    draft = random_draft(model, seed=5)
    drafter = Eagle2Drafter(draft, total_token=4, depth=0, top_k=3)
    engine = SpeculativeEngine(model)
    seen = []
    real = drafter.propose
    drafter.propose = lambda c, d: seen.append((list(c), real(c, d))) or seen[-1][1]
    engine.generate([4, 8, 15, 16, 23], drafter, DecodingConfig(max_new_tokens=3))
    context, tree = seen[0]
    feats = target_features(model, context[:-1])
    n = len(context) - 1
    out, _ = draft(feats[None], draft.embed(torch.tensor(context[1:]))[None], torch.arange(n)[None], None,
                   torch.ones(n, n, dtype=torch.bool).tril()[None])
    assert tree.tokens.tolist() == draft.draft_logits(out[0, -1]).topk(3).indices.tolist()
    assert tree.parents.tolist() == [-1, -1, -1]


def test_a_restricted_draft_vocabulary_maps_columns_back_to_token_ids(engine, model):
    vocab = torch.tensor([2, 5, 7, 11, 13, 40, 41, 42, 90, 96])
    draft = random_draft(model, seed=6, draft_vocab=vocab)
    drafter = EagleDrafter(draft, choices=EAGLE_MC_SIM_7B_63)
    trees = []
    real = drafter.propose
    drafter.propose = lambda c, d: trees.append(real(c, d)) or trees[-1]
    config = DecodingConfig(max_new_tokens=12)
    assert engine.generate([3, 9, 27], drafter, config)[0] == baseline(engine, [3, 9, 27], config)
    assert all(set(t.tokens.tolist()) <= set(vocab.tolist()) for t in trees)


# ---------------------------------------------------------------------------------- sampling
def test_sampled_children_carry_their_without_replacement_probabilities():
    """Children drawn without replacement from q, each carrying q renormalised over the tokens
    not yet drawn, keep the engine's multi-candidate rejection sampling exact."""
    torch.manual_seed(3)
    vocab = 6
    logits = torch.randn(4, vocab, dtype=torch.float64) * 1.2
    config = DecodingConfig(temperature=1.0)
    p = target_probs(logits, config)
    q = torch.softmax(torch.randn(vocab, dtype=torch.float64), dim=-1)
    gen = torch.Generator().manual_seed(4)
    draws = 20000
    counts = Counter()
    for _ in range(draws):
        left, tokens, carried = q.clone(), [], []
        for _ in range(3):
            left = left / left.sum()
            x = int(torch.multinomial(left, 1, generator=gen))
            tokens.append(x)
            carried.append(left.clone())
            left[x] = 0.0
        tree = DraftTree(torch.tensor(tokens), torch.tensor([-1, -1, -1]), draft_probs=torch.stack(carried))
        result = accept_sampling(tree, logits, config, gen)
        counts[(tree.tokens[result.accepted_nodes].tolist() + [result.next_token])[0]] += 1
    stat, df = chi2_statistic(counts, {t: float(p[0, t]) for t in range(vocab)}, draws)
    assert stat < chi2_critical(df), (stat, df)


@pytest.mark.parametrize("method", ["eagle", "eagle2"])
def test_engine_sampling_with_eagle_matches_the_model_distribution(method):
    """End to end: the first two sampled tokens follow the target's exact joint distribution."""
    model = sampling_check_model()
    draft = random_draft(model, seed=7, scale=0.3)
    drafter = (EagleDrafter(draft, choices=[[0], [1], [2], [0, 0], [0, 1]]) if method == "eagle"
               else Eagle2Drafter(draft, total_token=6, depth=2, top_k=2))
    assert_first_two_follow_the_model(model, drafter)


def test_eagle_sampling_trees_carry_draft_probabilities(engine, model):
    drafter = EagleDrafter(random_draft(model), choices=EAGLE_MC_SIM_7B_63)
    trees = []
    real = drafter.propose
    drafter.propose = lambda c, d: trees.append(real(c, d)) or trees[-1]
    out, stats = engine.generate([5, 6, 7], drafter, DecodingConfig(max_new_tokens=10, temperature=0.9), seed=2)
    assert len(out) == 10
    assert sum(len(t) > 0 for t in trees) >= 3
    for tree in (t for t in trees if len(t)):  # the last step has no room for a draft
        assert tree.draft_probs is not None and tree.draft_probs.shape == (len(tree), VOCAB)
        # each candidate's own token has mass under the distribution it was drawn from
        assert bool((tree.draft_probs[torch.arange(len(tree)), tree.tokens] > 0).all())


# ---------------------------------------------------------------------------------- command line
def test_from_args_refuses_a_non_embedded_model_without_a_draft(model):
    args = SimpleNamespace(model_path="/somewhere/else", eagle_path=None, eagle_choices=None, method="eagle")
    with pytest.raises(ArtifactError, match="--eagle-path"):
        EagleDrafter.from_args(args, model, None)
    args = SimpleNamespace(model_path="/somewhere/else", eagle_path=None, eagle2_total_token=None,
                           eagle2_depth=None, eagle2_top_k=None, method="eagle2")
    with pytest.raises(ArtifactError, match="--eagle-path"):
        Eagle2Drafter.from_args(args, model, None)


def test_bad_options_are_refused_before_loading(tmp_path):
    with pytest.raises(ValueError, match="--eagle-path"):
        EagleDrafter.check_args(SimpleNamespace(eagle_path=str(tmp_path / "none"), eagle_choices=None))
    with pytest.raises(ValueError):
        EagleDrafter.check_args(SimpleNamespace(eagle_path=None, eagle_choices="[[0, 1]]"))
    with pytest.raises(ValueError, match="--eagle2-top-k"):
        Eagle2Drafter.check_args(SimpleNamespace(eagle_path=None, eagle2_total_token=None, eagle2_depth=None,
                                                 eagle2_top_k=0))


def test_eagle_tree_has_the_published_shape():
    tree = StaticTree(EAGLE_MC_SIM_7B_63)
    assert len(tree) == 25 and tree.nodes_per_depth() == [4, 8, 8, 3, 2]
    internal = set(tree.parents.tolist()) - {-1}
    assert len(internal) == 10


# ---------------------------------------------------------------------------------- published layout
def write_published(folder, model, seed=0, bias=True, suffix=".bin", corrupt=None, embed_vocab=VOCAB,
                    rope_theta=None, intermediate=48):
    """A SafeAILab EAGLE folder for ``model`` with random fp32 weights (Llama-style config)."""
    c = model.config
    hidden, heads, kv, hd = c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.3  # noqa: E731
    state = {
        "embed_tokens.weight": model.get_input_embeddings().weight.detach().float()[:embed_vocab].clone()
        if embed_vocab <= VOCAB else torch.zeros(embed_vocab, hidden),
        "fc.weight": r(hidden, 2 * hidden),
        "layers.0.self_attn.q_proj.weight": r(heads * hd, hidden),
        "layers.0.self_attn.k_proj.weight": r(kv * hd, hidden),
        "layers.0.self_attn.v_proj.weight": r(kv * hd, hidden),
        "layers.0.self_attn.o_proj.weight": r(hidden, heads * hd),
        "layers.0.mlp.gate_proj.weight": r(intermediate, hidden),
        "layers.0.mlp.up_proj.weight": r(intermediate, hidden),
        "layers.0.mlp.down_proj.weight": r(hidden, intermediate),
        "layers.0.post_attention_layernorm.weight": 1 + r(hidden),
    }
    if bias:
        state["fc.bias"] = r(hidden)
    if corrupt:
        state[corrupt] = torch.zeros(3)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
              "intermediate_size": intermediate, "num_attention_heads": heads, "num_key_value_heads": kv,
              "num_hidden_layers": 1, "rms_norm_eps": 1e-6, "vocab_size": VOCAB, "max_position_embeddings": 2048}
    if not bias:
        config["bias"] = False
    if rope_theta:
        config["rope_theta"] = rope_theta
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    if suffix == ".bin":
        torch.save(state, folder / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file(state, str(folder / "model.safetensors"))
    return folder, state


@pytest.mark.parametrize("suffix,bias", [(".bin", True), (".safetensors", True), (".bin", False)])
def test_published_checkpoint_loads_into_the_right_places(engine, model, tmp_path, suffix, bias):
    folder, state = write_published(tmp_path / "eagle", model, suffix=suffix, bias=bias, rope_theta=5000.0)
    draft = load_eagle(folder, model)
    assert draft.shape.fc_bias is bias and draft.shape.intermediate_size == 48 and draft.shape.rope_theta == 5000.0
    assert not hasattr(draft.layers[0], "input_layernorm")
    loaded = draft.state_dict()
    for key, tensor in state.items():
        if key != "embed_tokens.weight":
            torch.testing.assert_close(loaded[key], tensor.to(torch.float64))
    assert draft.fc.weight.dtype == torch.float64  # cast to the base's dtype
    # it drafts on the engine, and the output stays the baseline's
    config = DecodingConfig(max_new_tokens=16)
    for drafter in (EagleDrafter(draft, choices=EAGLE_MC_SIM_7B_63), Eagle2Drafter(draft, 10, 3, 3)):
        for prompt in random_prompts(2, VOCAB, seed=31):
            assert engine.generate(prompt, drafter, config)[0] == baseline(engine, prompt, config)


def test_published_rope_defaults_to_llamas_base():
    assert EagleShape(8, 8, 2, 2, 4).rope_theta == 10000.0


@pytest.mark.parametrize("corrupt", ["fc.weight", "layers.0.mlp.down_proj.weight", "fc.bias"])
def test_a_shape_mismatch_names_the_tensor(model, tmp_path, corrupt):
    folder, _ = write_published(tmp_path / "eagle", model, corrupt=corrupt)
    with pytest.raises(ArtifactError, match=corrupt.replace(".", r"\.")):
        load_eagle(folder, model)


def test_a_draft_for_another_model_is_refused(model, tmp_path):
    folder, _ = write_published(tmp_path / "eagle", model, embed_vocab=VOCAB + 3)
    with pytest.raises(ArtifactError, match="embed_tokens"):
        load_eagle(folder, model)
    other = make_tiny_llama(vocab_size=VOCAB, seed=0)
    folder, _ = write_published(tmp_path / "eagle2", model)
    config = json.loads((folder / "config.json").read_text())
    config["hidden_size"] = 48
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="hidden size"):
        load_eagle(folder, other)


def test_missing_files_are_clear_errors(model, tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        load_eagle(tmp_path / "nothing", model)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="config.json"):
        load_eagle(tmp_path / "empty", model)
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(ArtifactError, match="pytorch_model.bin"):
        load_eagle(tmp_path / "empty", model)


# ---------------------------------------------------------------------------------- training
def test_trainer_writes_a_draft_that_loads_and_drafts_losslessly(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from methods.core.model_loading import load_model
    from methods.heads.artifact import BaseMismatchError
    from tests.test_inference import save_tiny_model
    from tests.test_train_drafter import tiny_training_setup
    from training.train_drafter import main

    folder, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    out = tmp_path / "eagle"
    assert main(["--method", "eagle", "--model-path", str(folder), "--corpus", str(corpus), "--out", str(out),
                 "--epochs", "2", "--batch-size", "128", "--eagle-intermediate", "48", "--eagle-steps", "2",
                 "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "eagle" and config["shares_base_lm_head"] and config["draft_shape"]["intermediate_size"] == 48
    assert config["draft_shape"]["rope_theta"] == loaded.model.config.rope_parameters["rope_theta"]
    epochs = config["metrics"]["heldout"]
    assert len(epochs) == 2 and all(0 <= e["top1"][1] <= e["top1"][0] <= 1 for e in epochs)
    state = load_file(str(out / "model.safetensors"))
    assert "embed_tokens.weight" not in state and "draft_vocab" in state and "fc.weight" in state
    assert all(v.dtype == torch.float16 for k, v in state.items() if k != "draft_vocab")
    assert "depth 1+2" in (out / "README.md").read_text()

    draft = load_eagle(out, loaded.model)
    engine = SpeculativeEngine(loaded.model)
    config = DecodingConfig(max_new_tokens=16)
    for drafter in (EagleDrafter(draft, choices=EAGLE_MC_SIM_7B_63), Eagle2Drafter(draft, 8, 3, 3)):
        for prompt in random_prompts(3, VOCAB, seed=50):
            assert engine.generate(prompt, drafter, config)[0] == engine.generate(prompt, VanillaDrafter(), config)[0]
    other = load_model(str(save_tiny_model(tmp_path / "other", seed=1)), dtype="float32", device="cpu")
    with pytest.raises(BaseMismatchError, match="another base"):
        load_eagle(out, other.model)
