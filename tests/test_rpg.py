"""RPG: long parallel semantic IDs (sid_quantizer: opq) and their exact full ranking."""
import numpy as np
import pytest
import torch

from recbole_tiger.config import Config
from recbole_tiger.quick_start import build_model, build_trainer, prepare_data, run_recbole_tiger
from recbole_tiger.semantic_ids.opq import opq_codes

RPG_TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_head": 8, "d_ff": 32, "sid_n_levels": 4,
            "sid_codebook_size": 4, "warmup_steps": 2, "sid_collaborative_weight": 0.0}
COLD = {"cold_item_ratio": 0.2, "cold_item_seed": 7}


def test_opq_codes_are_deterministic_and_keep_neighbours_close():
    rng = np.random.RandomState(0)
    centres = rng.randn(20, 24).astype(np.float32)
    x = np.repeat(centres, 30, axis=0) + 0.05 * rng.randn(600, 24).astype(np.float32)   # 20 tight groups
    codes = opq_codes(x, n_codebooks=6, codebook_size=16, seed=3, iters=10)
    assert codes.shape == (600, 6) and codes.min() >= 0 and codes.max() < 16
    assert np.array_equal(codes, opq_codes(x, n_codebooks=6, codebook_size=16, seed=3, iters=10))
    same = (codes[0::30][:, None] == codes[1::30][:, None]).mean()                       # a point and its group mate
    other = (codes[0::30][:, None] == codes[np.r_[30:600:30, 0]][:, None]).mean()         # and the next group's
    assert same > 0.8 and other < 0.5
    with pytest.raises(ValueError, match="power of two"):
        opq_codes(x, n_codebooks=6, codebook_size=12, seed=3, iters=1)


def rpg(tiny_config, **extra):
    config = Config(model="RPG", config_dict={**tiny_config, **RPG_TINY, **extra})
    _, train, valid, test = prepare_data(config)
    return config, build_model(config, train), train, valid, test


def test_the_preset_asks_for_long_ids_without_collision_code(tiny_config):
    config = Config(model="RPG", config_dict=tiny_config)
    assert (config["sid_quantizer"], config["sid_n_levels"], config["sid_codebook_size"], config["sid_dedup"]) == \
        ("opq", 32, 256, False)
    with pytest.raises(ValueError, match="sid_dedup: False"):
        rpg(tiny_config, sid_dedup=True)


def test_scores_are_the_mean_log_probability_of_each_items_codes(tiny_config):
    config, model, train, _, test = rpg(tiny_config)
    model.eval()
    batch = next(iter(test))[0]
    with torch.no_grad():
        scores = model.full_sort_predict(batch)                                       # [B, n_items]
        h = model.last_states(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
        log_probs = model.code_log_probs(h)                                           # [B, M, K]
    codes = train._dataset.semantic_ids.codes
    for item in (1, 5, model.n_items - 1):
        expected = torch.stack([log_probs[:, m, codes[item, m]] for m in range(codes.shape[1])]).mean(0)
        assert torch.allclose(scores[:, item], expected, atol=1e-5)
    assert torch.isneginf(scores[:, 0]).all()
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones_like(log_probs[..., 0]), atol=1e-4)
    # a history item's last state depends only on the items before it (causal)
    seq, n = batch[model.ITEM_SEQ][:1].clone(), batch[model.ITEM_SEQ_LEN][:1]
    with torch.no_grad():
        before = model.states(seq)[0, : int(n) - 1]
        seq[0, int(n) - 1] = (seq[0, int(n) - 1] % (model.n_items - 1)) + 1
        assert torch.allclose(model.states(seq)[0, : int(n) - 1], before, atol=1e-6)


def test_training_learns_and_ranks_cold_items(tiny_config):
    config, model, train, valid, test = rpg(tiny_config, epochs=4, eval_step=1, **COLD)
    trainer = build_trainer(config, model)
    first = trainer._train_epoch(train, 0)
    trainer.fit(train, valid, saved=False)
    assert trainer._train_epoch(train, 5) < first
    cold = test._dataset.cold_items
    model.eval()
    with torch.no_grad():
        top = torch.cat([model.full_sort_predict(batch[0]).topk(10, dim=1).indices for batch in test])
    assert torch.isin(top, cold).any()                            # codes from text: cold items are ranked too
    result = trainer.evaluate(test, load_best_model=False)
    assert result["cold_targets"] > 0 and "cold_recall@10" in result


def test_run_end_to_end(tiny_config):
    result = run_recbole_tiger("RPG", config_dict={**tiny_config, **RPG_TINY})
    assert 0.0 <= result["test_result"]["ndcg@10"] <= 1.0
    assert result["best_valid_result"] is not None


def test_a_dataset_without_semantic_ids_gets_a_clear_error(tiny_config):
    from recbole.data import create_dataset

    from recbole_tiger.model.sequential_recommender.rpg import RPG

    config = Config(model="RPG", config_dict={**tiny_config, **RPG_TINY})
    with pytest.raises(ValueError, match="RPG needs TIGERDataset's semantic IDs; got a SequentialDataset"):
        RPG(config, create_dataset(config))
