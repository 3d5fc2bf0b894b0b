"""TIGER model: training step, constrained beam search vs exact scoring, tie-breaks, errors,
checkpoints and one end-to-end RecBole run. Tiny model sizes; semantic IDs are injected
(random distinct codes) so only the end-to-end test depends on the semantic-ID pre-stage."""
import copy
import dataclasses
import json
import logging
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from recbole.data.interaction import Interaction

from recbole_tiger.config import Config
from recbole_tiger.data.dataset import USER_ROW_FIELD, USER_ROWS_FIELD, TIGERDataset, check_vocabulary
from recbole_tiger.model.layers import id_ranking, item_scoring
from recbole_tiger.model.layers.beam_search import constrained_beam_search, exact_leaf_scores
from recbole_tiger.trainer.beam_check import beam_exact_agreement
from recbole_tiger.model.sequential_recommender.tiger import TIGER
from recbole_tiger.model.tiger_settings import DEFINED_ELSEWHERE, MODEL_YAML, TIGERSettings
from recbole_tiger.quick_start import prepare_data
from recbole_tiger.semantic_ids.types import SemanticIDs

from conftest import write_atomic

TINY_MODEL = {
    "d_model": 16, "n_encoder_layers": 1, "n_decoder_layers": 1, "n_heads": 2, "d_head": 8,
    "d_ff": 32, "dropout_prob": 0.0, "attn_dropout_prob": 0.0, "n_user_tokens": 8, "beam_size": 10, "topk": [5, 10],
    "length_bucket_size": 16, "MAX_ITEM_LIST_LENGTH": 10, "state": "WARNING",
    "sid_quantizer": "rqkmeans", "sid_codebook_size": 8,  # the dataset's own IDs (tests mostly bring theirs)
    # the paper's layout and an output layer of its own (the structure these tests reach into; the
    # shipped item tokens and tied output layer have tests of their own)
    "encoder_tokens": "code", "tie_code_embeddings": False,
    "show_progress": False, "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(config, train dataset, one batch of test users) of the conftest tiny dataset."""
    root = tmp_path_factory.mktemp("tiger")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", [sys.argv[0]])
        config = Config(model="TIGER", dataset="tiny", config_dict={
            **TINY_MODEL, "data_path": write_atomic(root / "atomic"), "checkpoint_dir": str(root / "saved")})
        _, train_data, _, test_data = prepare_data(config)
    users = next(iter(test_data))[0]
    return config, train_data._dataset, users


def random_codes(n_items, sizes, seed=0, distinct=True):
    """Random IDs for items 1..n_items-1 (row 0 = padding = -1): distinct ones (a random
    sample of the ID space), or independent draws that share IDs (for dedup=False)."""
    g = torch.Generator().manual_seed(seed)
    if distinct:
        flat = torch.randperm(int(np.prod(sizes)), generator=g)[: n_items - 1]
        cols = []
        for k in reversed(sizes):
            cols.append(flat % k)
            flat = flat // k
        codes = torch.stack(cols[::-1], 1)
    else:
        codes = torch.stack([torch.randint(0, k, (n_items - 1,), generator=g) for k in sizes], 1)
    return torch.cat([torch.full((1, len(sizes)), -1), codes])


def make_model(tiny, sizes=(4, 4, 4), seed=0, config_overrides=None, **sid_kwargs):
    config, dataset, _ = tiny
    config = copy.deepcopy(config)
    for key, value in (config_overrides or {}).items():
        config[key] = value
    sid_kwargs.setdefault("codes", random_codes(dataset.item_num, sizes, seed))
    sid = SemanticIDs(codebook_sizes=list(sizes), artifact_key=f"key-{seed}", **sid_kwargs)
    torch.manual_seed(seed)
    return TIGER(config, dataset, semantic_ids=sid).eval()


def with_items(users, items):
    """RecBole-style sampled-eval rows: each user repeated with each of its candidate items."""
    rows = users.repeat_interleave(items.shape[1])
    rows.update(Interaction({"item_id": items.flatten()}))
    return rows


def train_steps(model, batch, steps, lr=1e-2):
    """Adam steps on one batch; returns the loss of each step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = model.calculate_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_training_step_lowers_loss(tiny):
    _, dataset, _ = tiny
    model = make_model(tiny).train()
    losses = train_steps(model, dataset[torch.arange(64)], 30)
    assert np.isfinite(losses).all()
    assert losses[1] < losses[0] and losses[-1] < losses[0] - 0.2, losses


def test_constrained_beam_only_generates_valid_ids(tiny):
    _, dataset, users = tiny
    # 60 items in a space of 16^3 = 4096 IDs: almost every unconstrained continuation is invalid.
    model = make_model(tiny, sizes=(16, 16, 16))
    with torch.no_grad():  # make the decoder love first codes that no item has
        unused = sorted(set(range(16)) - set(model.item_codes[1:, 0].tolist()))
        model.code_head.weight[unused[:3]] += 5.0 * torch.randn(model.settings.d_model)
    decoding = id_ranking.start_decoding(model, users["item_id_list"], users["item_length"], users["user_id"])
    leaf, score = constrained_beam_search(decoding, model.trie, len(users), 10, "cpu")
    assert bool(torch.isfinite(score).all()) and bool((leaf >= 0).all())
    valid = {tuple(c) for c in model.item_codes[1:].tolist()}
    generated = model.item_codes[model.trie.leaf_items[leaf, 0]]              # [B, W, L]
    assert all(tuple(c) in valid for c in generated.flatten(0, 1).tolist())
    assert all(len(set(row.tolist())) == 10 for row in leaf)                  # distinct beams
    assert bool((score[:, :-1] >= score[:, 1:]).all())                        # sorted


def test_score_matrix_shape_and_minus_inf_padding(tiny):
    _, dataset, users = tiny
    model = make_model(tiny)
    assert not model.settings.eval_exclude_history  # default: history items may be recommended, as for SASRec
    scores = model.full_sort_predict(users)
    assert scores.shape == (len(users), dataset.item_num)
    assert bool(torch.isneginf(scores[:, 0]).all())
    assert (torch.isfinite(scores).sum(1) == 10).all()                        # beam_size items
    assert not bool(torch.isnan(scores).any()) and not bool(torch.isposinf(scores).any())
    model.set_ranking(eval_exclude_history=True)
    scores = model.full_sort_predict(users)
    assert (torch.isfinite(scores).sum(1) == 10).all()
    history = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, users["item_id_list"], True)
    assert not bool(torch.isfinite(scores[history]).any())                    # none from history


def test_beam_top_k_equals_exact_top_k_when_beam_covers_catalogue(tiny):
    _, dataset, users = tiny
    model = make_model(tiny, sizes=(3, 4, 6))
    exact_model = make_model(tiny, sizes=(3, 4, 6), config_overrides={"eval_mode": "exact"})
    model.set_ranking(beam_size=dataset.item_num - 1)
    beam, exact = model.full_sort_predict(users), exact_model.full_sort_predict(users)
    assert bool(torch.isfinite(exact[:, 1:]).all())                           # every item scored
    assert torch.allclose(beam[:, 1:], exact[:, 1:], atol=1e-5)               # default: no exclusion
    for k in (5, 10):
        assert torch.equal(beam.topk(k).indices.sort(1).values, exact.topk(k).indices.sort(1).values)
    # with eval_exclude_history, beams skip the input history
    model.set_ranking(eval_exclude_history=True, beam_size=dataset.item_num)
    beam = model.full_sort_predict(users)
    history = torch.zeros_like(beam, dtype=torch.bool).scatter_(1, users["item_id_list"], True)
    history[:, 0] = True
    assert bool(torch.isneginf(beam[history]).all())
    assert torch.allclose(beam[~history], exact[~history], atol=1e-5)
    exact = exact.masked_fill(history, float("-inf"))
    for k in (5, 10):
        assert torch.equal(beam.topk(k).indices.sort(1).values, exact.topk(k).indices.sort(1).values)
    agreement = beam_exact_agreement(model, users, topk=(5, 10))
    assert agreement["differ@10"] == 0.0 and agreement["overlap@10"] == 1.0
    # a small beam is an approximation: its top item still has the exact log-probability
    model.set_ranking(beam_size=10)
    small = model.full_sort_predict(users)
    top = small.argmax(1)
    assert torch.allclose(small.max(1).values, exact[torch.arange(len(users)), top], atol=1e-5)
    # ... and without history exclusion, beams may end on history items (scored exactly too)
    model.set_ranking(eval_exclude_history=False)
    unmasked = model.full_sort_predict(users)
    assert bool(torch.isfinite(unmasked[history[:, : unmasked.shape[1]]]).any())


def test_beam_exact_agreement_compares_the_rankings_the_evaluator_uses(tiny):
    """RecBole does not mask history for sequential models: without eval_exclude_history the
    check must compare unmasked rankings (it used to mask history in both)."""
    _, _, users = tiny
    model = make_model(tiny, sizes=(3, 4, 6))
    model.set_ranking(beam_size=10)
    beam = model.full_sort_predict(users)
    model.set_ranking(eval_mode="exact")
    exact = model.full_sort_predict(users)
    model.set_ranking(eval_mode="beam")

    def overlap10(b, e):
        b_score, b_top = b.topk(10, dim=1)
        e_top = e.topk(10, dim=1).indices
        shared = ((b_top[:, :, None] == e_top[:, None, :]).any(-1) & torch.isfinite(b_score)).sum(1)
        return (shared.float() / 10).mean().item()

    history = torch.zeros_like(beam, dtype=torch.bool).scatter_(1, users["item_id_list"], True)
    masked = overlap10(beam.masked_fill(history, float("-inf")), exact.masked_fill(history, float("-inf")))
    unmasked = overlap10(beam, exact)
    assert masked != unmasked  # the setting distinguishes the two (history items reach the top-10)
    assert beam_exact_agreement(model, users, topk=(10,))["overlap@10"] == pytest.approx(unmasked)


def test_predict_is_exact_log_likelihood(tiny):
    _, dataset, users = tiny
    exact_model = make_model(tiny, config_overrides={"eval_mode": "exact"})
    exact = exact_model.full_sort_predict(users)
    g = torch.Generator().manual_seed(1)
    items = torch.randint(1, dataset.item_num, (len(users), 7), generator=g)
    rows = with_items(users, items)
    perm = torch.randperm(len(rows), generator=g)                             # order must not matter
    predicted = exact_model.predict(rows[perm])
    expected = exact[torch.arange(len(users)).repeat_interleave(7), items.flatten()][perm]
    assert torch.allclose(predicted, expected, atol=1e-5)


def same_leaf_orders_agree(scores, secondary, item_leaf):
    """Within every ID (leaf), the score order is the secondary key's order, strictly."""
    for leaf in item_leaf.unique():
        members = (item_leaf == leaf).nonzero().flatten()
        s, t = scores[:, members], secondary[:, members]
        ds, dt = s[:, :, None] - s[:, None, :], t[:, :, None] - t[:, None, :]
        assert bool(((ds > 0) == (dt > 0)).all() and ((ds == 0) == (dt == 0)).all())


@pytest.mark.parametrize("tie_break", ["popularity", "cosine"])
def test_tie_break_without_collision_level(tiny, tie_break):
    _, dataset, users = tiny
    n = dataset.item_num
    codes = random_codes(n, (4, 8), seed=3, distinct=False)
    emb = torch.randn(n, 5, generator=torch.Generator().manual_seed(4))
    emb[0] = 0
    model = make_model(tiny, sizes=(4, 8), codes=codes, dedup=False, item_embeddings=emb,
                       config_overrides={"tie_break": tie_break, "eval_mode": "exact"})
    assert model.trie.max_items_per_leaf > 1
    scores = model.full_sort_predict(users)[:, 1:]                            # [B, n-1]
    item_leaf = model.trie.item_leaf[1:]
    decoding = id_ranking.start_decoding(model, users["item_id_list"], users["item_length"], users["user_id"])
    id_logp = exact_leaf_scores(decoding, model.trie, len(users))[:, item_leaf]  # [B, n-1]
    if tie_break == "popularity":
        secondary = model.item_train_count[1:].double().expand_as(id_logp)
    else:
        e = F.normalize(emb, dim=-1)
        secondary = (F.normalize(e[users["item_id_list"]].sum(1), dim=-1) @ e[1:].T).double()
    # 1) across IDs: a clearly more likely ID ranks every one of its items above the other's
    clearly = id_logp[:, :, None] > id_logp[:, None, :] + 1e-4
    assert bool((scores[:, :, None] > scores[:, None, :])[clearly].all())
    # 2) inside an ID: ordered by the tie-break, strictly (equal only for equal tie-break)
    same_leaf_orders_agree(scores, secondary, item_leaf)


def test_lexicographic_scores_never_cross_neighbouring_float32_log_probs():
    lp = torch.tensor([-3.0, -1e-3, -20.0, 0.0])
    lp = torch.cat([lp, torch.nextafter(lp, torch.full_like(lp, -float("inf")))])  # 1-ulp neighbours
    lp = lp.repeat_interleave(3)
    tb = torch.tensor([0.0, 0.5, 0.999999]).repeat(len(lp) // 3).double()
    score = item_scoring.lexicographic(lp, tb)
    expected = sorted(range(len(lp)), key=lambda i: (lp[i].item(), tb[i].item()))
    assert score.argsort().tolist() == expected
    assert len(set(score.tolist())) == len(lp)
    assert bool(torch.isneginf(item_scoring.lexicographic(torch.tensor([-float("inf")]), tb[:1])).all())


def test_predict_applies_the_same_tie_break(tiny):
    _, dataset, users = tiny
    codes = random_codes(dataset.item_num, (4, 8), seed=3, distinct=False)
    model = make_model(tiny, sizes=(4, 8), codes=codes, dedup=False, config_overrides={"eval_mode": "exact"})
    full = model.full_sort_predict(users)[:, 1:]
    items = torch.arange(1, dataset.item_num).expand(len(users), -1)
    predicted = model.predict(with_items(users, items)).view(len(users), -1)
    assert predicted.dtype == torch.float64 and torch.allclose(predicted, full, atol=1e-5)
    same_leaf_orders_agree(predicted, full, model.trie.item_leaf[1:])


def test_beam_size_below_max_topk_is_rejected(tiny):
    with pytest.raises(ValueError, match="beam_size=5 < max\\(topk\\)=10"):
        make_model(tiny, config_overrides={"beam_size": 5})


def test_bad_semantic_ids_are_rejected_at_construction(tiny):
    _, dataset, _ = tiny
    codes = random_codes(dataset.item_num, (4, 4, 4))
    codes[7, 1] = 4
    with pytest.raises(ValueError, match="item id 7 has code 4 at level 1, outside \\[0, 4\\)"):
        make_model(tiny, codes=codes)
    with pytest.raises(ValueError, match="cover 11 item ids, the dataset has"):
        make_model(tiny, codes=random_codes(11, (4, 4, 4)))
    dup = random_codes(dataset.item_num, (4, 4, 4))
    dup[2] = dup[1]
    with pytest.raises(ValueError, match="dedup=True but only"):
        make_model(tiny, codes=dup)
    with pytest.raises(ValueError, match="tie_break=cosine needs SemanticIDs.item_embeddings"):
        make_model(tiny, dedup=False, config_overrides={"tie_break": "cosine"})


def test_dataset_without_item_text_fails_at_data_preparation(tmp_path):
    config = Config(model="TIGER", dataset="notext", config_dict={
        **TINY_MODEL, "data_path": write_atomic(tmp_path, name="notext", with_item_file=False),
        "checkpoint_dir": str(tmp_path / "saved")})
    with pytest.raises(Exception, match="notext.item"):
        prepare_data(config)


def test_tiger_dataset_owns_the_item_side_tables(tiny):
    config, dataset, _ = tiny
    assert isinstance(dataset, TIGERDataset)
    sid = dataset.semantic_ids
    assert sid.codes.shape[0] == dataset.item_num and bool((sid.codes[0] == -1).all())
    rows = dataset.inter_feat
    want = torch.bincount(rows["item_id"], minlength=dataset.item_num)
    want += torch.bincount(rows["item_id_list"][rows["item_length"] == 1, 0], minlength=dataset.item_num)
    want[0] = 0
    assert torch.equal(dataset.item_train_count, want)
    # the model takes them from the dataset; RecBole's plain dataset has none
    model = TIGER(config, dataset)
    assert torch.equal(model.item_codes, sid.codes.long()) and torch.equal(model.item_train_count, want)
    plain = copy.copy(dataset)
    plain.semantic_ids = None
    with pytest.raises(ValueError, match="needs the item-side tables of TIGERDataset"):
        TIGER(config, plain)


def test_config_vocabulary_must_match_the_artifact(tiny):
    config, _, _ = tiny
    sid = SemanticIDs(codes=random_codes(61, (4, 4, 3)), codebook_sizes=[4, 4, 3], artifact_path="a.pt")
    config = copy.deepcopy(config)
    config["sid_n_levels"], config["sid_codebook_size"], config["sid_dedup"] = 2, 8, True
    with pytest.raises(ValueError, match=r"2 levels of 8 codes \+ a collision level.*a.pt has codebook_sizes=\[4, 4, 3\]"):
        check_vocabulary(config, sid)
    config["sid_codebook_size"] = 4
    check_vocabulary(config, sid)  # matches: no error


def test_checkpoint_round_trip_decodes_identically(tiny, caplog):
    _, _, users = tiny
    trained = make_model(tiny, seed=0)
    with torch.no_grad():
        trained.code_head.weight.mul_(3.0)
    before = trained.full_sort_predict(users)
    state = trained.state_dict()
    # The artifact changed since training (same shapes, other codes): the checkpoint's code
    # table wins, with a warning naming both keys.
    rebuilt = make_model(tiny, seed=1)
    assert not torch.equal(rebuilt.item_codes, trained.item_codes)
    with caplog.at_level(logging.WARNING):
        rebuilt.load_state_dict(state)
    assert "artifact key key-0" in caplog.text and "key-1" in caplog.text
    assert torch.equal(rebuilt.full_sort_predict(users), before)
    # Different vocabulary: a clear error, not a shape mismatch deep in load_state_dict.
    other = make_model(tiny, sizes=(4, 4, 5))
    with pytest.raises(ValueError, match="codebook_sizes=\\[4, 4, 4\\].*built with \\[4, 4, 5\\]"):
        other.load_state_dict(state)


def test_end_to_end_recbole_run(tiny_config, tmp_path, capsys):
    from recbole_tiger.quick_start import run_recbole_tiger, load_data_and_model

    config_dict = {
        **tiny_config, **{k: v for k, v in TINY_MODEL.items() if k not in ("state",)},
        "epochs": 1, "cold_start_eval": True, "warmup_steps": 2,
        "sid_quantizer": "rqkmeans", "sid_n_levels": 2, "sid_codebook_size": 4,
    }
    result = run_recbole_tiger(model="TIGER", dataset="tiny", config_dict=config_dict)
    test = result["test_result"]
    assert {"recall@5", "recall@10", "ndcg@5", "ndcg@10"} <= set(test)
    # RecBole's own Trainer on the saved checkpoint gives exactly the metrics the run reported
    assert recbole_trainer_metrics(result["saved_model_file"]) == {k: v for k, v in test.items()
                                                                  if not k.startswith("cold_")}
    check = result["beam_check"]  # beam 10 vs exact on the test users, as the benchmark reports it
    # a user whose beam top-K is the exact top-K overlaps fully, so mean overlap >= 1 - differ
    assert check["n_users"] > 0
    for k in (5, 10):
        assert check[f"overlap@{k}"] >= 1.0 - check[f"differ@{k}"] - 1e-9, check
    config, model, _, _, _, test_data = load_data_and_model(result["saved_model_file"])
    # cold metrics exactly when some test target is an item no training row has, with their count
    targets = test_data._dataset.inter_feat["item_id"]
    n_cold = int((test_data._dataset.item_train_count[targets] == 0).sum())
    assert ("cold_recall@10" in test) == (n_cold > 0) and test.get("cold_targets", 0) == n_cold
    users = next(iter(test_data))[0]
    model.eval()
    again = model.full_sort_predict(users)
    assert again.shape[1] == model.n_items and (torch.isfinite(again).sum(1) == 10).all()
    # the same check from the command line, on the saved checkpoint
    from benchmarks.beam_check import main as beam_check

    beam_check([f"--model_file={result['saved_model_file']}", "--n_users=1000"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["differ@10"] == check["differ@10"] and printed["n_users"] == check["n_users"]


# ---------------------------------------------------------------------- CPU training modes
SEQUENCE_MODE = {"encoder_tokens": "item", "train_targets": "all"}


def training_rows(dataset):
    return dataset.inter_feat[torch.arange(len(dataset.inter_feat))]


def test_item_encoder_tokens_train_and_rank(tiny):
    model = make_model(tiny, config_overrides={"encoder_tokens": "item"}).train()
    rows = training_rows(tiny[1])
    loss = model.calculate_loss(rows)
    loss.backward()
    assert torch.isfinite(loss) and model.token_embedding.weight.grad.abs().sum() > 0
    scores = model.eval().full_sort_predict(tiny[2])
    assert scores.shape == (len(tiny[2]), model.n_items) and bool(torch.isfinite(scores).sum(1).ge(10).all())


def test_anchor_rows_are_every_stride_th_row_from_each_users_last(tiny):
    model = make_model(tiny, config_overrides={**SEQUENCE_MODE, "sequence_stride": 4})
    rows = training_rows(tiny[1])
    anchor = (rows[USER_ROWS_FIELD] - rows[USER_ROW_FIELD]) % model.settings.sequence_stride == 0
    users = rows["user_id"].tolist()
    for user in set(users):
        flags = anchor[torch.tensor(users) == user].tolist()      # this user's rows, time order
        assert flags == [(len(flags) - k) % 4 == 0 for k in range(1, len(flags) + 1)]


@pytest.fixture(scope="module")
def tiny_short_history(tmp_path_factory):
    """The tiny dataset with MAX_ITEM_LIST_LENGTH 4: every user's 10 training items need
    three windows of up to 5 items."""
    root = tmp_path_factory.mktemp("tiger_short")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", [sys.argv[0]])
        config = Config(model="TIGER", dataset="tiny", config_dict={
            **TINY_MODEL, **SEQUENCE_MODE, "MAX_ITEM_LIST_LENGTH": 4,
            "data_path": write_atomic(root / "atomic"), "checkpoint_dir": str(root / "saved")})
        _, train_data, _, test_data = prepare_data(config)
    return config, train_data._dataset, next(iter(test_data))[0]


@pytest.mark.parametrize("fixture, stride", [("tiny", None), ("tiny_short_history", None),
                                             ("tiny_short_history", 4), ("tiny_short_history", 1)])
def test_sequence_windows_cover_every_training_target_once(fixture, stride, request):
    data = request.getfixturevalue(fixture)
    model = make_model(data, config_overrides={**SEQUENCE_MODE, "sequence_stride": stride})
    rows = training_rows(data[1])
    N = model.max_seq_length
    windows, n_items, users, first = model.training_windows(rows)
    assert bool((n_items >= 2).all()) and bool((n_items <= N + 1).all())
    got = sorted((int(u), int(i)) for w, n, u, f in zip(windows, n_items, users, first) for i in w[f:n])
    want = sorted(zip(rows["user_id"].tolist(), rows["item_id"].tolist()))
    assert got == want
    # every trained target has at least N - stride + 1 items of context, or all the user has
    # (a history shorter than N starts at the user's first item)
    S = model.settings.sequence_stride
    assert bool(((first >= N - S + 1) | (n_items - 1 < N)).all())
    # a batch without anchor rows trains nothing (and still back-propagates)
    others = rows[((rows[USER_ROWS_FIELD] - rows[USER_ROW_FIELD]) % S != 0).nonzero()[:, 0]]
    assert (len(others) > 0) == (S > 1) and len(model.training_windows(others)[0]) == 0
    loss = model.train().calculate_loss(others)
    loss.backward()
    assert loss.item() == 0.0


def test_sequence_loss_equals_mean_per_row_log_likelihood(tiny):
    """One causal pass per user = the per-prefix teacher-forced loss, exactly: the encoder
    state of item t never sees later items and each target's decoder sees only its prefix.
    (Every tiny user's training sequence fits one window, so no context is cut.)"""
    model = make_model(tiny, config_overrides=SEQUENCE_MODE)
    rows = training_rows(tiny[1])
    with torch.no_grad():
        sequence_loss = model.calculate_loss(rows)
        per_row = model.predict(rows)                                # sum over levels of log p
    assert sequence_loss.item() == pytest.approx(-per_row.mean().item() / model.n_levels, rel=1e-5)


def test_sequence_training_needs_item_tokens(tiny):
    with pytest.raises(ValueError, match="train_targets=all needs encoder_tokens=item"):
        make_model(tiny, config_overrides={"train_targets": "all"})


def test_cpu_preset_runs_end_to_end(tiny_config):
    """The shipped TIGER-cpu.yaml (with tiny sizes on top) trains, validates and tests."""
    from recbole_tiger.config import PROPERTIES_DIR
    from recbole_tiger.quick_start import run_recbole_tiger

    config_dict = {
        **tiny_config, **{k: v for k, v in TINY_MODEL.items() if k not in ("state",)},
        "epochs": 3, "warmup_steps": 2, "sid_quantizer": "rqkmeans", "sid_n_levels": 2, "sid_codebook_size": 4,
    }
    for key in ("n_user_tokens", "dropout_prob", "encoder_tokens", "tie_code_embeddings"):
        config_dict.pop(key)  # the shipped values
    preset = os.path.join(PROPERTIES_DIR, "model", "TIGER-cpu.yaml")
    result = run_recbole_tiger(model="TIGER", dataset="tiny", config_file_list=[preset], config_dict=config_dict)
    config = result["config"]
    assert (config["train_targets"], config["encoder_tokens"], config["n_user_tokens"], config["dropout_prob"]) == (
        "last", "item", 0, 0.0)
    assert config["tie_code_embeddings"] and config["lr_scheduler"] == "rsqrt"
    assert [row["epoch"] for row in result["valid_curve"]] == [2, 3]  # eval_step 2: last epoch still validated
    assert recbole_trainer_metrics(result["saved_model_file"]) == result["test_result"]


def recbole_trainer_metrics(model_file):
    """Test metrics of a saved checkpoint by RecBole's own Trainer (none of the plugin's trainer code)."""
    from recbole.trainer import Trainer

    from recbole_tiger.quick_start import load_data_and_model

    config, model, _, _, _, test_data = load_data_and_model(model_file)
    return dict(Trainer(config, model).evaluate(test_data, load_best_model=False))


def test_tied_code_embeddings_share_one_matrix_and_train(tiny):
    model = make_model(tiny, config_overrides={"tie_code_embeddings": True}).train()
    assert model.code_head is None
    untied = make_model(tiny)
    assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in model.parameters()) == \
        model.n_code_tokens * model.settings.d_model
    rows = training_rows(tiny[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = model.calculate_loss(rows)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    # the output weights of the code tokens are their input embeddings (one storage)
    assert model.code_weight().untyped_storage().data_ptr() == model.token_embedding.weight.untyped_storage().data_ptr()
    scores = model.eval().full_sort_predict(tiny[2])
    assert bool(torch.isfinite(scores).sum(1).ge(10).all())


@pytest.mark.parametrize("tie_break", ["popularity", "cosine"])
def test_topk_output_ranks_like_the_dense_scores_with_shared_ids(tiny, tie_break):
    """Without the collision level several items share an ID: full_sort_topk orders them by the
    same tie-break as full_sort_predict's dense scores."""
    _, dataset, users = tiny
    codes = random_codes(dataset.item_num, (4, 8), seed=3, distinct=False)
    emb = torch.randn(dataset.item_num, 5, generator=torch.Generator().manual_seed(4))
    emb[0] = 0
    model = make_model(tiny, sizes=(4, 8), codes=codes, dedup=False, item_embeddings=emb,
                       config_overrides={"tie_break": tie_break})
    values, items = model.full_sort_topk(users, 10)
    scores = model.full_sort_predict(users)
    assert torch.equal(values, scores.topk(10, dim=1).values.double())
    # every item carries its dense score: the same top-10 (items whose scores are exactly equal,
    # tie-break included, may come in either order, as in torch.topk)
    assert torch.equal(scores.gather(1, items).double(), values)


def test_popularity_penalty_ranks_by_adjusted_log_likelihood(tiny):
    """α·log P_train(ID) is subtracted consistently in exact scoring, beam search and predict()."""
    _, dataset, users = tiny
    alpha = 0.5
    model = make_model(tiny, config_overrides={"popularity_penalty": alpha, "beam_size": 60})
    plain = make_model(tiny, config_overrides={"beam_size": 60})
    assert plain.popularity_prior() is None
    count = model.item_train_count.double() + 1
    prior = (count / count[1:].sum()).log()                                   # one item per ID (dedup)
    decoding = id_ranking.start_decoding(model, users["item_id_list"], users["item_length"], users["user_id"])
    logp = exact_leaf_scores(decoding, model.trie, len(users))[:, model.trie.item_leaf[1:]]   # [B, n-1]
    want = logp - alpha * prior[1:].float()
    model.set_ranking(eval_mode="exact")
    exact = model.full_sort_predict(users)[:, 1:]
    assert torch.allclose(exact.float(), want, atol=1e-4)
    # a beam as wide as the catalogue finds the same top-10 as exact adjusted scoring
    model.set_ranking(eval_mode="beam")
    beam = model.full_sort_predict(users)
    assert torch.equal(beam.topk(10, dim=1).indices, exact.topk(10, dim=1).indices + 1)
    # sampled evaluation scores the same adjusted log-likelihood
    rows = with_items(users, torch.arange(1, 11).expand(len(users), -1))
    assert torch.allclose(model.predict(rows).view(len(users), 10).float(), want[:, :10], atol=1e-4)
    # a penalty moves less popular items up
    top_plain = plain.full_sort_predict(users).topk(10, dim=1).indices
    top_adjusted = beam.topk(10, dim=1).indices
    assert count[top_adjusted].median() <= count[top_plain].median()


@pytest.mark.parametrize("encoder_tokens", ["item", "code"])
def test_item_id_embedding_reaches_the_encoder(tiny, encoder_tokens):
    model = make_model(tiny, config_overrides={"item_id_embedding": True, "encoder_tokens": encoder_tokens}).train()
    assert model.item_embedding.weight.shape == (model.n_items, model.settings.d_model)
    rows = training_rows(tiny[1])
    model.calculate_loss(rows).backward()
    grad = model.item_embedding.weight.grad
    seen = torch.unique(rows["item_id_list"])
    assert bool(grad[seen[seen > 0]].abs().sum(1).gt(0).all()) and bool(grad[0].eq(0).all())
    assert make_model(tiny).item_embedding is None


def test_label_smoothing_spreads_epsilon_over_the_levels_own_codes(tiny):
    """ε = 0 is the plain cross-entropy; ε > 0 is (1-ε)·NLL + ε·(mean -log p over the level's own
    codes), finite although the other levels' codes sit at -inf; a bad ε is refused."""
    rows = tiny[1][torch.arange(64)]
    plain = make_model(tiny)
    train_steps(plain.train(), rows, 10)                    # away from uniform, where ε changes nothing
    plain.eval()
    smoothed = make_model(tiny, config_overrides={"label_smoothing": 0.2})
    smoothed.load_state_dict(plain.state_dict())
    with torch.no_grad():
        ce = plain.calculate_loss(rows)
        loss = smoothed.calculate_loss(rows)
        item_seq, seq_len = rows[plain.ITEM_SEQ], rows[plain.ITEM_SEQ_LEN]
        codes = plain.item_codes[rows[plain.POS_ITEM_ID]]
        logp = plain.forward(item_seq, seq_len, rows[plain.USER_ID], codes)[0].log_softmax(-1)   # [B, L, V]
    labels = codes + plain.level_offset
    nll = -logp.gather(-1, labels[..., None]).squeeze(-1)
    uniform = torch.stack([-logp[:, level, plain.level_mask[level] == 0].mean(-1) for level in range(plain.n_levels)], 1)
    assert ce.item() == pytest.approx(nll.mean().item(), rel=1e-5)
    assert loss.item() == pytest.approx((0.8 * nll + 0.2 * uniform).mean().item(), rel=1e-5)
    assert loss.item() > ce.item() + 0.05                              # the level's other codes cost more
    losses = train_steps(smoothed.train(), rows, 20)
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    with pytest.raises(ValueError, match="label_smoothing=1.0"):
        make_model(tiny, config_overrides={"label_smoothing": 1.0})


# ---------------------------------------------------------------------- settings
# Keys of TIGER.yaml's model section that the model does not read as settings: RecBole reads them
# (MAX_ITEM_LIST_LENGTH becomes SequentialRecommender.max_seq_length), or the trainer does.
READ_ELSEWHERE = {
    "train_neg_sample_args", "MAX_ITEM_LIST_LENGTH",
    "beam_check_users",
    "train_batch_size", "learner", "learning_rate", "weight_decay", "lr_scheduler", "warmup_steps", "epochs",
    "eval_step",
}


def yaml_keys(relative_path, section=None):
    from recbole_tiger.config import PROPERTIES_DIR

    with open(os.path.join(PROPERTIES_DIR, *relative_path.split("/")[1:]), encoding="utf-8") as f:
        text = f.read()
    if section is not None:  # "== model section" up to the next "# == ... section" line
        text = text[text.index(f"# == {section} section"):]
        text = text[: text.index("# == ", 1)]
    return set(yaml.safe_load(text))


def test_settings_fields_are_the_model_yaml_keys():
    """TIGER.yaml is the only source of TIGERSettings' defaults: its model section and the
    dataclass must not drift apart (a new setting needs its key, a new key its field or a place
    in READ_ELSEWHERE)."""
    fields = {f.name for f in dataclasses.fields(TIGERSettings)}
    keys = yaml_keys(MODEL_YAML, section="model")
    assert not [f.default for f in dataclasses.fields(TIGERSettings) if f.default is not dataclasses.MISSING]
    assert sorted(fields - set(DEFINED_ELSEWHERE) - keys) == []          # every field is a key of the yaml
    assert sorted(keys - READ_ELSEWHERE - fields) == []                  # every key the model reads is a field
    assert sorted(READ_ELSEWHERE - keys) == [] and sorted(READ_ELSEWHERE & fields) == []
    for key, where in DEFINED_ELSEWHERE.items():                         # the protocol keys' own file
        assert key in fields and key not in keys and key in yaml_keys(where)


def test_a_missing_setting_names_the_key_and_the_yaml(tiny):
    config, dataset, _ = tiny
    values = dict(config.final_config_dict)
    del values["dropout_prob"]
    with pytest.raises(ValueError, match=r"no 'dropout_prob'; its default is set in properties/model/TIGER.yaml"):
        TIGERSettings.from_config(values, 10)
    with pytest.raises(ValueError, match=r"d_model=~ \(None\); it needs a value \(properties/model/TIGER.yaml"):
        TIGERSettings.from_config(dict(config.final_config_dict, d_model=None), 10)
    # ~ is a value only where the yaml gives it a meaning: sequence_stride ~ = MAX_ITEM_LIST_LENGTH // 2
    assert TIGERSettings.from_config(dict(config.final_config_dict, sequence_stride=None), 10).sequence_stride == 5
    # the same through the model, from RecBole's Config
    config = copy.deepcopy(config)
    del config.final_config_dict["tie_code_embeddings"]
    with pytest.raises(ValueError, match=r"no 'tie_code_embeddings'.*properties/model/TIGER.yaml"):
        TIGER(config, dataset)


def test_set_ranking_changes_only_how_the_model_ranks(tiny):
    _, dataset, users = tiny
    model = make_model(tiny, sizes=(3, 4, 6))
    exact_model = make_model(tiny, sizes=(3, 4, 6), config_overrides={"eval_mode": "exact"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.settings.eval_mode = "exact"                               # settings are not written from outside
    before = model.settings
    previous = model.set_ranking(eval_mode="exact")
    assert previous == {"eval_mode": "beam"} and model.settings.eval_mode == "exact" and before.eval_mode == "beam"
    assert torch.equal(model.full_sort_predict(users), exact_model.full_sort_predict(users))
    model.set_ranking(**previous)
    assert model.settings == before
    # the popularity prior follows the penalty
    model.set_ranking(popularity_penalty=0.5)
    half = model.popularity_prior()
    model.set_ranking(popularity_penalty=1.0)
    full = model.popularity_prior()
    assert full.alpha == 1.0 and torch.allclose(full.leaf_bias, 2 * half.leaf_bias)
    model.set_ranking(popularity_penalty=0.0)
    assert model.popularity_prior() is None
    # only ranking keys, only valid values; a refused change leaves the settings as they were
    with pytest.raises(ValueError, match=r"\['d_model', 'foo'\] are not ranking settings"):
        model.set_ranking(d_model=8, foo=1)
    with pytest.raises(ValueError, match="eval_mode='greedy'"):
        model.set_ranking(eval_mode="greedy")
    with pytest.raises(ValueError, match="beam_size=5 < max\\(topk\\)=10"):
        model.set_ranking(beam_size=5)
    assert model.settings == before
    shared = make_model(tiny, sizes=(4, 8), codes=random_codes(dataset.item_num, (4, 8), seed=3, distinct=False),
                        dedup=False)
    with pytest.raises(ValueError, match="tie_break=cosine needs the items' text embeddings"):
        shared.set_ranking(tie_break="cosine")
