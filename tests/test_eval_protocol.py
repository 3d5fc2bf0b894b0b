"""eval_exclude_history: one switch, applied by the trainer, for every sequential model."""
import math

import pytest
import torch
from recbole.trainer import Trainer

from recbole_tiger.config import Config
from recbole_tiger.quick_start import build_model, build_trainer, prepare_data

TIGER_TINY = {"d_model": 16, "n_encoder_layers": 1, "n_decoder_layers": 1, "n_heads": 2, "d_head": 8, "d_ff": 32,
              "sid_quantizer": "rqkmeans", "sid_codebook_size": 8, "beam_size": 10}
SMALL = {"SASRec": {"hidden_size": 16, "inner_size": 32, "n_layers": 1},
         "BERT4Rec": {"hidden_size": 16, "inner_size": 32, "n_layers": 1},
         "GRU4Rec": {"embedding_size": 16, "hidden_size": 16},
         "TIGER": TIGER_TINY}


def trained(model_name, tiny_config, exclude):
    config = Config(model=model_name, config_dict={**tiny_config, **SMALL[model_name], "epochs": 2,
                                                   "eval_exclude_history": exclude})
    _, train_data, valid_data, test_data = prepare_data(config)
    model = build_model(config, train_data)
    trainer = build_trainer(config, model)
    trainer.fit(train_data, valid_data, saved=False)
    return config, model, trainer, test_data


def full_sort(trainer, test_data):
    """(history [U, N], scores [U, n_items], target [U]) of every test user, as evaluated."""
    history, scores, target = [], [], []
    trainer.model.eval()
    with torch.no_grad():
        for batch in test_data:
            interaction, s, _, positive_i = trainer._full_sort_batch_eval(batch)
            history.append(interaction["item_id_list"])
            scores.append(s.clone())
            target.append(positive_i)
    return torch.cat(history), torch.cat(scores), torch.cat(target)


def ndcg_at_10(scores, target):
    rank = (scores > scores.gather(1, target[:, None])).sum(1)      # 0-based rank of the target
    return torch.where(rank < 10, 1 / torch.log2(rank.double() + 2), 0.0).mean().item()


@pytest.mark.parametrize("model_name", ["SASRec", "BERT4Rec", "GRU4Rec", "TIGER"])
def test_exclude_history_never_ranks_history_items(model_name, tiny_config):
    config, model, trainer, test_data = trained(model_name, tiny_config, exclude=True)
    history, scores, target = full_sort(trainer, test_data)
    top10 = scores.topk(10, dim=1)
    in_history = (top10.indices[:, :, None] == history[:, None, :]).any(-1) & (history.gt(0).any(1))[:, None]
    assert not bool((in_history & torch.isfinite(top10.values)).any())
    if model_name == "TIGER":  # excluded inside the beam: still 10 ranked items per user
        assert bool(torch.isfinite(top10.values).all())
    # RecBole's own metric on the same protocol equals a recomputation from these scores
    result = trainer.evaluate(test_data, load_best_model=False)
    assert result["ndcg@10"] == pytest.approx(ndcg_at_10(scores, target), abs=10 ** -config["metric_decimal_place"])

    # the other protocol on the same weights: history items are ranked again (the switch has an
    # effect here), and the scores are exactly RecBole's own evaluation of the model
    trainer.set_protocol("repeatable")
    history, scores, _ = full_sort(trainer, test_data)
    top10 = scores.topk(10, dim=1).indices
    assert bool((top10[:, :, None] == history[:, None, :]).any(-1).any())
    with torch.no_grad():
        recbole_scores = torch.cat([Trainer._full_sort_batch_eval(trainer, batch)[1] for batch in test_data])
    assert torch.equal(scores, recbole_scores)


def test_exclude_history_masks_sampled_candidates(tiny_config):
    """Sampled ranking evaluation (uni100): a candidate that is in the user's history gets -inf."""
    cfg = {**tiny_config, "eval_args": {"split": {"LS": "valid_and_test"}, "group_by": "user", "order": "TO",
                                        "mode": "uni20"}}
    config, model, trainer, test_data = trained("SASRec", cfg, exclude=True)
    checked = 0
    with torch.no_grad():
        for batch in test_data:
            interaction, row_idx, _, _ = batch
            _, scores, _, _ = trainer._neg_sample_batch_eval(batch)
            item = interaction["item_id"]
            seen = (interaction["item_id_list"] == item[:, None]).any(1)
            assert bool(torch.isneginf(scores[row_idx[seen], item[seen]]).all())
            assert bool(torch.isfinite(scores[row_idx[~seen], item[~seen]]).all())
            checked += int(seen.sum())
    assert checked > 0  # the sampler did draw history items as negatives
    assert not math.isnan(trainer.evaluate(test_data, load_best_model=False)["ndcg@10"])


@pytest.mark.parametrize("exclude", [False, True])
def test_topk_output_gives_the_dense_metrics(tiny_config, exclude):
    """eval_output: topk (no [users x items] matrix) evaluates exactly as the dense path."""
    config, model, trainer, test_data = trained("TIGER", tiny_config, exclude=exclude)
    dense = trainer.evaluate(test_data, load_best_model=False)
    config["eval_output"] = "topk"
    model.set_ranking(eval_output="topk")
    topk_trainer = build_trainer(config, model)
    assert topk_trainer.topk_output
    assert topk_trainer.evaluate(test_data, load_best_model=False) == dense
    # the same items in the same order as the dense scores' top-10
    batch = next(iter(test_data))[0]
    values, items = model.full_sort_topk(batch, 10)
    dense_scores = model.full_sort_predict(batch)
    assert torch.equal(items, dense_scores.topk(10, dim=1).indices)
