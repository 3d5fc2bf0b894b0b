"""TIGER's dense head (dense_head: True): training, fused ranking, its switches."""
import math
import os

import pytest
import torch

from recbole_tiger.model.layers.dense_head import DenseHead, fuse
from recbole_tiger.quick_start import load_data_and_model, run_recbole_tiger

TINY = {"sid_quantizer": "rqkmeans", "sid_n_levels": 2, "sid_codebook_size": 4, "d_model": 32, "n_heads": 2,
        "d_head": 16, "d_ff": 64, "n_encoder_layers": 1, "n_decoder_layers": 1, "warmup_steps": 2,
        "beam_size": 10, "beam_check_users": 0, "epochs": 2, "eval_step": 1}


def test_fuse_puts_items_outside_the_beam_at_the_users_lowest_beam_score():
    inf = float("-inf")
    generative = torch.tensor([[inf, -1.0, -3.0, inf], [inf, inf, inf, inf]])
    dense = torch.tensor([[inf, -2.0, -1.0, -0.5], [inf, -1.0, -2.0, -3.0]])
    assert torch.equal(fuse(generative, dense, 0.0), dense)
    fused = fuse(generative, dense, 1.0)
    assert fused[0].tolist() == [inf, -3.0, -4.0, -3.5]         # item 3 (no beam) at the floor -3
    assert torch.equal(fused[1], dense[1])                        # no beam at all: the dense order
    assert fuse(generative, dense, 2.0)[0, 1] > fuse(generative, dense, 2.0)[0, 2]


def test_item_vectors_are_unit_and_features_are_checked():
    head = DenseHead(d_model=8, n_items=5, features=["codes", "id"], temperature=0.1)
    emb = torch.nn.Embedding(12, 8)
    codes = torch.tensor([[-1, -1], [0, 1], [1, 0], [2, 3], [3, 3]])
    items = head.item_vectors(emb, codes, torch.tensor([0, 4]))
    assert torch.allclose(items[1:].norm(dim=-1), torch.ones(4))
    unseen = torch.tensor([False, False, False, True, False])       # item 3: no training interaction
    cold = head.item_vectors(emb, codes, torch.tensor([0, 4]), unseen=unseen)
    assert torch.equal(cold[[0, 1, 2, 4]], items[[0, 1, 2, 4]])
    codes_only = emb.weight[[2 + 2, 3 + 4 + 2]].sum(0)                 # its codes 2, 3 (level offsets 0, 4; N_SPECIAL 2)
    assert torch.allclose(cold[3], torch.nn.functional.normalize(codes_only, dim=0))
    with pytest.raises(ValueError, match="dense_item_features"):
        DenseHead(d_model=8, n_items=5, features=["pixels"], temperature=0.1)
    with pytest.raises(ValueError, match="text embeddings"):
        DenseHead(d_model=8, n_items=5, features=["text"], temperature=0.1)


@pytest.mark.parametrize("layout", [{}, {"encoder_tokens": "item", "train_targets": "all"},
                                    {"encoder_tokens": "code", "n_user_tokens": 4, "dense_item_features": ["codes", "text"]}])
def test_hybrid_trains_ranks_and_reloads(tiny_config, layout):
    result = run_recbole_tiger("TIGER", config_dict={**tiny_config, **TINY, "dense_head": True, **layout})
    assert all(math.isfinite(row["train_loss"]) for row in result["valid_curve"])
    config, model, _, _, _, test_data = load_data_and_model(result["saved_model_file"])
    assert any(k.startswith("dense_head.") for k in model.state_dict())
    batch = next(iter(test_data))[0]
    model.eval()
    fused = model.full_sort_predict(batch)
    assert torch.isfinite(fused[:, 1:]).all() and torch.isneginf(fused[:, 0]).all()   # every item ranked
    # one encoder pass for both scores gives exactly the scores of two separate passes
    from recbole_tiger.model.layers import dense_head, id_ranking

    args = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN], batch[model.USER_ID]
    separate = fuse(id_ranking.full_sort_scores(model, *args), dense_head.log_probs(model, *args),
                    model.settings.fusion_weight)
    assert torch.equal(fused, separate)
    # weight 0: exactly the dense head's ranking; the top-K output ranks as the dense matrix does
    model.set_ranking(fusion_weight=0.0)
    dense = model.full_sort_predict(batch)
    assert not torch.equal(dense, fused)
    assert torch.equal(model.full_sort_topk(batch, 10)[1], dense.double().topk(10, dim=1).indices)
    with pytest.raises(ValueError, match="fusion_weight"):
        model.set_ranking(fusion_weight=-1.0)


def test_dense_head_off_adds_no_parameters(tiny_config):
    result = run_recbole_tiger("TIGER", config_dict={**tiny_config, **TINY, "epochs": 1})
    _, model, _, _, _, _ = load_data_and_model(result["saved_model_file"])
    assert model.dense_head is None and not any("dense" in k for k in model.state_dict())


def test_items_without_training_interactions_are_no_negatives():
    head = DenseHead(d_model=4, n_items=4, features=["id"], temperature=1.0)
    logits = torch.tensor([[0.0, 1.0, 5.0, 0.5]], requires_grad=True)
    unseen = torch.tensor([False, False, True, False])
    masked = head.loss(logits, torch.tensor([1]), unseen=unseen)
    assert torch.isclose(masked, -torch.log_softmax(torch.tensor([1.0, 0.5]), 0)[0])   # only items 1 and 3 compete
    masked.backward()
    assert logits.grad[0, 2] == 0.0                                                      # nothing pushes item 2 away
    assert head.loss(logits, torch.tensor([1])) > masked


def test_text_term_and_cold_candidates(tiny_config, tmp_path):
    """text_fusion_weight adds w x cosine(item text, decayed history text) / temperature, history
    items at the user's lowest; cold_candidates ranks only beam items and untrained items, by
    the dense (+ text) score alone."""
    import torch.nn.functional as F

    from recbole_tiger.model.layers import dense_head, id_ranking

    config = {**tiny_config, **TINY, "dense_head": True, "cold_item_ratio": 0.2, "cold_item_seed": 7}
    result = run_recbole_tiger("TIGER", config_dict=config)
    _, model, _, _, _, test_data = load_data_and_model(result["saved_model_file"])
    model.eval()
    batch = next(iter(test_data))[0]
    seq, seq_len, user = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN], batch[model.USER_ID]
    plain = model.full_sort_predict(batch)

    model.set_ranking(text_fusion_weight=0.5, text_nn_decay=0.5)
    with_text = model.full_sort_predict(batch)
    text = model.item_text_emb
    for row in range(3):
        n = int(seq_len[row])
        weights = 0.5 ** torch.arange(n - 1, -1, -1).float()                    # the latest item weighs 1
        history = F.normalize((weights[:, None] * text[seq[row, :n]]).sum(0), dim=0)
        cos = text @ history
        in_history = torch.zeros(model.n_items, dtype=torch.bool)
        in_history[seq[row, :n]] = True
        in_history[0] = True
        expected = torch.where(in_history, cos[~in_history].min(), cos) * 0.5 / model.settings.dense_temperature
        diff = (with_text[row] - plain[row])[1:] - expected[1:]
        assert diff.abs().max() < 1e-4

    model.set_ranking(cold_candidates=True)
    ruled = model.full_sort_predict(batch)
    beam = torch.isfinite(id_ranking.full_sort_scores(model, seq, seq_len, user))
    cold = (model.item_train_count == 0)[None].expand_as(beam).clone()
    cold[:, 0] = False
    assert cold.any()
    assert torch.equal(torch.isfinite(ruled), beam | cold)                   # the candidates, nothing else
    dense = dense_head.log_probs(model, seq, seq_len, user) + dense_head.text_term(model, seq, seq_len)
    assert torch.allclose(ruled[beam | cold], dense[beam | cold])             # no generative term

    # a ranking setting chosen on a cold-start split goes to that protocol's own sweep table
    from benchmarks.inference_sweep import main as sweep
    sweep([f"--model_file={result['saved_model_file']}", "--key=text_fusion_weight", "--values=0,0.5",
           f"--results_dir={tmp_path / 'sweep'}"])
    assert os.listdir(tmp_path / "sweep") and all(name.startswith(f"{tiny_config['dataset']}-cold-start-inference-sweep.")
                                                 for name in os.listdir(tmp_path / "sweep"))

    with pytest.raises(ValueError, match="text_nn_decay"):
        model.set_ranking(text_nn_decay=0.0)
    with pytest.raises(ValueError, match="dense_head"):
        run_recbole_tiger("TIGER", config_dict={**tiny_config, **TINY, "text_fusion_weight": 1.0})


def test_text_fusion_weight_is_chosen_on_valid_and_saved(tiny_config):
    from recbole_tiger.quick_start import build_trainer

    config = {**tiny_config, **TINY, "dense_head": True, "text_fusion_choices": [0, 0.5, 8.0]}
    result = run_recbole_tiger("TIGER", config_dict=config)
    config, model, _, _, valid_data, test_data = load_data_and_model(result["saved_model_file"])
    chosen = config["text_fusion_weight"]
    assert model.settings.text_fusion_weight == chosen and chosen in (0, 0.5, 8.0)
    trainer = build_trainer(config, model)
    valid = {}
    for weight in (0, 0.5, 8.0):
        model.set_ranking(text_fusion_weight=weight)
        valid[weight] = trainer.evaluate(valid_data, load_best_model=False)["ndcg@10"]
    assert valid[chosen] == max(valid.values()) == result["best_valid_result"]["ndcg@10"]
    assert chosen == next(w for w in (0, 0.5, 8.0) if valid[w] == valid[chosen])           # the first of ties
    model.set_ranking(text_fusion_weight=chosen)
    assert trainer.evaluate(test_data, load_best_model=False)["ndcg@10"] == result["test_result"]["ndcg@10"]
    with pytest.raises(ValueError, match="text_fusion_choices"):
        run_recbole_tiger("TIGER", config_dict={**tiny_config, **TINY, "dense_head": True,
                                                "text_fusion_choices": [-1]})
