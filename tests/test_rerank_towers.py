"""The two-tower text reranker (recbole_tiger.rerank.towers): listwise examples from the first
stage's lists, training that learns what the pre-trained similarity gets wrong, and the
comparison command with it."""
import numpy as np
import pytest
import torch

from recbole_tiger.rerank.towers import (AdapterTowerReranker, TowerReranker, is_tower, load_tower_encoder,
                                         title_vectors)
from recbole_tiger.rerank.train import evaluate, load_reranker_state, train_reranker

FAMILIES = ["Face Cream", "Hair Shampoo", "Eye Mascara", "Rose Perfume"]
N_ITEMS = 41                                   # ids 1..40 (0 = padding); family = (id - 1) % 4


def titles():
    return ["[PAD]"] + [f"{FAMILIES[(i - 1) % 4]} {i}" for i in range(1, N_ITEMS)]


def next_family_split(n_users, seed, k=8):
    """Users buy within family f and next buy from family f + 1: the candidates hold that target,
    three more items of the history's own family (what text similarity alone would rank first)
    and items of the other two families."""
    rng = np.random.default_rng(seed)
    members = lambda f: [i for i in range(1, N_ITEMS) if (i - 1) % 4 == f]
    history = torch.zeros(n_users, 10, dtype=torch.long)
    target, cands = [], []
    for u in range(n_users):
        family = u % 4
        own = rng.choice(members(family), 7, replace=False)
        history[u, :4] = torch.as_tensor(own[:4])
        goal = int(rng.choice(members((family + 1) % 4)))
        others = [i for f in ((family + 2) % 4, (family + 3) % 4) for i in members(f)]
        row = np.r_[goal, own[4:], rng.choice(others, k - 4, replace=False)]
        rng.shuffle(row)
        target.append(goal)
        cands.append(torch.as_tensor(row))
    return {"users": torch.arange(n_users), "history": history, "length": torch.full((n_users,), 4),
            "target": torch.tensor(target), "candidates": torch.stack(cands), "scores": torch.zeros(n_users, k)}


@pytest.fixture(scope="module")
def encoder():
    return load_tower_encoder("minilm")


def test_listwise_examples_put_the_target_first_and_take_negatives_from_the_list(encoder):
    split, t = next_family_split(12, seed=0), titles()
    reranker = TowerReranker(encoder)
    examples = reranker.training_examples(split, t, n_negatives=3)
    assert len(examples) == 12
    for ex in examples:
        row = int(torch.nonzero(split["target"] == ex["item"])[0, 0]) if (split["target"] == ex["item"]).sum() == 1 \
            else None
        assert ex["titles"][0] == t[ex["item"]] and len(ex["titles"]) == 4
        assert t[ex["item"]] not in ex["titles"][1:]
        if row is not None:
            listed = [t[int(c)] for c in split["candidates"][row] if int(c) != ex["item"]]
            assert ex["titles"][1:] == listed[:3]                      # the first stage's top-ranked negatives
            assert ex["history"] == " | ".join(t[int(i)] for i in split["history"][row, :4])
    assert all(len(ex["titles"]) == 8 for ex in reranker.training_examples(split, t))   # default: the whole list


def test_training_learns_what_zero_shot_similarity_gets_wrong(encoder, tmp_path):
    import copy

    t = titles()
    train, valid = next_family_split(64, seed=1), next_family_split(24, seed=2)
    reranker = TowerReranker(copy.deepcopy(encoder))
    untrained = evaluate(reranker, valid, t, False, show_progress=False)["direct"]["ndcg@10"]
    examples = reranker.training_examples(train, t)
    log = train_reranker(reranker, examples, valid, t, str(tmp_path / "towers.pt"), method="full", budget_min=5,
                         epochs=4, batch_size=8, learning_rate=1e-4, warmup_steps=2, patience=4, show_progress=False,
                         modes=("direct",))
    trained = log["best_valid_ndcg10"]
    assert untrained < 0.6 and trained > untrained + 0.2, (untrained, trained)
    # the saved best weights score as the best epoch did
    fresh = TowerReranker(copy.deepcopy(encoder))
    load_reranker_state(fresh, str(tmp_path / "towers.pt"), wrap=True)
    assert evaluate(fresh, valid, t, False, show_progress=False)["direct"]["ndcg@10"] == pytest.approx(trained, abs=1e-4)


def adapter_for(encoder, t, *splits):
    items = torch.cat([s[k].flatten() for s in splits for k in ("candidates", "history", "target")])
    return AdapterTowerReranker(title_vectors(encoder, t, items))


def test_the_untrained_adapter_ranks_as_the_minilm_cosine_baseline(encoder):
    from recbole_tiger.rerank.compare import text_similarity_order
    from recbole_tiger.rerank.train import rerank_scores

    t, valid = titles(), next_family_split(24, seed=2)
    valid["length"][:6] = 2                               # shorter histories weigh only the items they have
    scores = rerank_scores(adapter_for(encoder, t, valid), valid, t, False, show_progress=False, modes=("direct",))
    assert torch.equal(scores["direct"].argsort(dim=1, descending=True), text_similarity_order(valid, t))


def test_the_adapter_learns_what_zero_shot_similarity_gets_wrong(encoder, tmp_path):
    t = titles()
    train, valid = next_family_split(256, seed=1), next_family_split(48, seed=2)
    reranker = adapter_for(encoder, t, train, valid)
    assert not any(p.requires_grad for p in reranker.buffers())
    untrained = evaluate(reranker, valid, t, False, show_progress=False)["direct"]["ndcg@10"]
    examples = reranker.training_examples(train, t)
    assert all(ex["candidates"][0] == ex["item"] and len(ex["candidates"]) == 8 for ex in examples)
    log = train_reranker(reranker, examples, valid, t, str(tmp_path / "adapter.pt"), method="adapter", budget_min=5,
                         epochs=30, batch_size=32, learning_rate=1e-2, warmup_steps=2, patience=30,
                         show_progress=False, modes=("direct",))
    trained = log["best_valid_ndcg10"]
    assert untrained < 0.6 and trained > untrained + 0.2, (untrained, trained)
    # only the maps and the position weights are trained and saved; a reload scores as the best epoch did
    saved = torch.load(tmp_path / "adapter.pt", weights_only=True)["state"]
    assert set(saved) == {"history_map.weight", "history_map.bias", "item_map.weight", "item_map.bias",
                          "position_logits"}
    fresh = adapter_for(encoder, t, train, valid)
    load_reranker_state(fresh, str(tmp_path / "adapter.pt"), wrap=True)
    assert evaluate(fresh, valid, t, False, show_progress=False)["direct"]["ndcg@10"] == pytest.approx(trained, abs=1e-4)


def test_compare_runs_the_two_tower_reranker_and_refuses_lora(tiny_config, tmp_path):
    from recbole_tiger.atomic_io import atomic_torch_save
    from recbole_tiger.quick_start import run_recbole_tiger
    from recbole_tiger.rerank import compare
    from recbole_tiger.rerank.candidates import build_candidates

    assert is_tower("minilm") and is_tower("sentence-transformers:/a/folder") and not is_tower("smollm2")
    result = run_recbole_tiger(model="SASRec", config_dict=dict(tiny_config, train_neg_sample_args=None))
    atomic_torch_save(str(tmp_path / "cands.pt"), build_candidates(result["saved_model_file"], k=5, n_eval_users=10,
                                                                   n_train_users=15))
    common = [f"--candidates={tmp_path / 'cands.pt'}", "--base_model=minilm", "--n_valid_users=5",
              f"--results_dir={tmp_path / 'results'}", f"--out={tmp_path / 'towers.pt'}"]
    with pytest.raises(SystemExit, match="causal LM"):
        compare.main(common + ["--method=lora"])
    with pytest.raises(SystemExit, match="two-tower"):
        compare.main([c for c in common if c != "--base_model=minilm"] + ["--base_model=smollm2", "--method=adapter"])
    compare.main(common + ["--systems=untrained,trained", "--epochs=1", "--batch_size=4", "--method=full"])
    compare.main(common + ["--systems=untrained,trained", "--epochs=2", f"--out={tmp_path / 'adapter.pt'}"])
    table = (tmp_path / "results" / "tiny-rerank.md").read_text()
    for kind in ("two-tower text reranker", "two-tower text reranker (frozen encoder)"):
        for name in (f"{kind}, untrained", f"{kind}, trained", f"fusion with the first stage: {kind}, trained"):
            assert f"| {name} (minilm" in table
    assert "full, 4 steps over 15 examples" in table                      # 15 queries, 4 per batch
    assert "adapter, 2 steps over 15 examples" in table                   # one batch of 256 per epoch
    assert "| two-tower text reranker (frozen encoder), trained (minilm, float32) |" in table
    curve = (tmp_path / "results" / "tiny-rerank-curve.md").read_text()    # each reranker's curve, kept apart
    assert curve.count("| two-tower text reranker (frozen encoder) (minilm, float32) |") == 2
    assert curve.count("| two-tower text reranker (minilm, ") == 1
