"""The cold-start protocol (cold_item_ratio) for every model, and the cold metrics."""
import pytest
import torch
from recbole.data import create_dataset as recbole_create_dataset
from recbole.data import data_preparation

from recbole_tiger.config import Config
from recbole_tiger.data.cold_items import choose_cold_items, last_per_user
from recbole_tiger.quick_start import build_model, build_trainer, prepare_data
from recbole_tiger.trainer.cold_start import ColdStartMetrics

TIGER_TINY = {"d_model": 16, "n_encoder_layers": 1, "n_decoder_layers": 1, "n_heads": 2, "d_head": 8, "d_ff": 32,
              "sid_quantizer": "rqkmeans", "sid_n_levels": 2, "sid_codebook_size": 4, "beam_size": 10,
              "warmup_steps": 2, "beam_check_users": 0}
SMALL = {"SASRec": {"hidden_size": 16, "inner_size": 32, "n_layers": 1}, "TIGER": TIGER_TINY}
COLD = {"cold_item_ratio": 0.2, "cold_item_seed": 7}


def data(model_name, tiny_config, **extra):
    config = Config(model=model_name, config_dict={**tiny_config, **SMALL[model_name], **extra})
    return config, *prepare_data(config)


def items_of(dataset):
    inter = dataset.inter_feat
    return set(inter["item_id"].tolist()), set(inter["item_id_list"].flatten().tolist()) - {0}


def test_last_per_user_and_the_draw():
    users = torch.tensor([0, 0, 1, 1, 1, 2]).numpy()
    times = torch.tensor([1, 2, 5, 3, 5, 1]).numpy()
    assert last_per_user(users, times).tolist() == [False, True, False, False, True, True]  # tie: the later row
    items = torch.tensor([10, 11, 12, 13, 14, 15]).numpy()
    assert set(choose_cold_items(users, items, times, 0.5, seed=0)) <= {11, 14, 15}
    assert len(choose_cold_items(users, items, times, 0.01, seed=0)) == 1                      # at least one


@pytest.mark.parametrize("model_name", ["SASRec", "TIGER"])
def test_cold_items_are_only_test_targets(model_name, tiny_config):
    config, dataset, train, valid, test = data(model_name, tiny_config, **COLD)
    cold = set(dataset.cold_items.tolist())
    assert cold
    targets, histories = items_of(train._dataset)
    assert not (targets | histories) & cold                       # not in any training row or target
    targets, histories = items_of(valid._dataset)
    assert not (targets | histories) & cold                       # nor in validation
    targets, histories = items_of(test._dataset)
    assert not histories & cold and targets & cold                # test: only as targets, and some are
    assert dataset.item_num == recbole_create_dataset(Config(model=model_name, config_dict=tiny_config)).item_num
    assert all(int(train._dataset.item_train_count[i]) == 0 for i in cold)


def test_key_off_changes_nothing(tiny_config):
    config = Config(model="SASRec", config_dict={**tiny_config, **SMALL["SASRec"]})
    assert config["cold_item_ratio"] == 0.0
    _, *ours = prepare_data(config)
    theirs = data_preparation(config, recbole_create_dataset(config))
    for a, b in zip(ours, theirs):
        for field in ("user_id", "item_id", "item_id_list"):
            assert torch.equal(a._dataset.inter_feat[field], b._dataset.inter_feat[field])


def trained(model_name, tiny_config, **extra):
    config, _, train, valid, test = data(model_name, tiny_config, epochs=3, eval_step=1, **extra)
    model = build_model(config, train)
    trainer = build_trainer(config, model)
    trainer.fit(train, valid, saved=False)
    return trainer, test


@pytest.mark.parametrize("model_name", ["SASRec", "TIGER"])
def test_cold_metrics_count_the_cold_test_targets(model_name, tiny_config):
    trainer, test = trained(model_name, tiny_config, **COLD)
    result = trainer.evaluate(test, load_best_model=False)
    cold = test._dataset.cold_items
    n_cold = int(torch.isin(test._dataset.inter_feat["item_id"], cold).sum())
    assert result["cold_targets"] == n_cold > 0
    assert 0.0 <= result["cold_recall@10"] <= 1.0 and "cold_ndcg@10" in result


def test_tiger_can_rank_a_cold_item_in_its_top_k(tiny_config):
    trainer, test = trained("TIGER", tiny_config, **COLD)
    cold = test._dataset.cold_items
    model = trainer.model.eval()
    with torch.no_grad():
        top = torch.cat([model.full_sort_predict(batch[0]).topk(10, dim=1).indices for batch in test])
    assert torch.isin(top, cold).any()                            # its IDs are in the trie: it can generate them
    assert torch.isin(cold, model.trie.leaf_items).all()


def test_no_cold_target_reports_no_cold_metric():
    metrics = ColdStartMetrics(torch.tensor([False, True, False]), [1, 2])
    metrics.add(torch.randn(2, 3), torch.tensor([0, 1]), torch.tensor([2, 2]))
    assert metrics.result() == {}                                 # never cold_recall = 0.0 over nothing
    metrics.add(torch.tensor([[0.0, 1.0, 0.5]]), torch.tensor([0]), torch.tensor([1]))
    metrics.add(torch.tensor([[0.0, 0.5, 1.0]]), torch.tensor([0]), torch.tensor([1]))   # at rank 2
    assert metrics.result() == {"cold_recall@1": 0.5, "cold_ndcg@1": 0.5, "cold_recall@2": 1.0,
                                "cold_ndcg@2": round((1 + 1 / 1.5849625) / 2, 4), "cold_targets": 2}


def test_text_nn_ranks_by_history_text_and_never_the_history(tiny_config):
    from recbole_tiger.quick_start import run_recbole_tiger

    result = run_recbole_tiger("TextNN", config_dict={**tiny_config, **COLD, "sid_quantizer": "rqkmeans",
                                                      "sid_n_levels": 2, "sid_codebook_size": 4, "text_nn_decay": 0.5})
    assert result["test_result"]["cold_targets"] > 0 and "cold_recall@10" in result["test_result"]
    from recbole_tiger.model.sequential_recommender.textnn import TextNN

    config = Config(model="TextNN", config_dict={**tiny_config, **COLD, "sid_quantizer": "rqkmeans",
                                                 "sid_n_levels": 2, "sid_codebook_size": 4, "text_nn_decay": 0.5})
    _, train, _, test = prepare_data(config)
    model = TextNN(config, train._dataset)
    batch = next(iter(test))[0]
    scores = model.full_sort_predict(batch)
    seq, n = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    assert torch.isneginf(scores.gather(1, seq)).all()                         # history items (and padding) never
    emb = model.item_text
    u = sum(0.5 ** (n[0] - 1 - t) * emb[seq[0, t]] for t in range(int(n[0])))
    expected = torch.nn.functional.normalize(u, dim=0) @ emb.T
    finite = torch.isfinite(scores[0])
    assert torch.allclose(scores[0][finite], expected[finite], atol=1e-5)
    cold = test._dataset.cold_items
    assert torch.isfinite(scores[:, cold]).any()                                # cold items are scored like any
