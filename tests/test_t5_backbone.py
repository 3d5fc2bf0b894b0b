"""``backbone: t5``: TIGER on transformers' T5Stack instead of our own transformer. Same tiny
models and helpers as tests/test_tiger.py."""
import numpy as np
import pytest
import torch

from recbole_tiger.model.layers.t5_backbone import T5Decoder, T5Encoder

from test_tiger import SEQUENCE_MODE, make_model, tiny, train_steps, training_rows  # noqa: F401  (tiny: fixture)

T5 = {"backbone": "t5"}


def n_parameters(module):
    return sum(p.numel() for p in module.parameters())


def test_t5_backbone_has_our_sizes_plus_relative_bias_and_keeps_t5_init(tiny):
    own, t5 = make_model(tiny), make_model(tiny, config_overrides=T5)
    assert isinstance(t5.encoder, T5Encoder) and isinstance(t5.decoder, T5Decoder)
    # Identical apart from one relative-position bucket table per stack (32 buckets x heads);
    # in particular no unused T5 token embedding.
    assert n_parameters(t5) - n_parameters(own) == 2 * 32 * t5.settings.n_heads
    assert n_parameters(t5.encoder) - n_parameters(own.encoder) == 32 * t5.settings.n_heads
    # T5's own initialisation, not TIGER's std 0.02 (T5 does not scale q.k by 1/sqrt(d_head))
    q = t5.encoder.stack.block[0].layer[0].SelfAttention.q.weight
    assert q.std().item() == pytest.approx((t5.settings.d_model * t5.settings.d_head) ** -0.5, rel=0.2)
    assert t5.code_head.weight.std().item() == pytest.approx(t5.settings.initializer_range, rel=0.2)


@pytest.mark.parametrize("overrides", [{}, SEQUENCE_MODE], ids=["last", "all"])
def test_t5_training_lowers_loss(tiny, overrides):
    model = make_model(tiny, config_overrides={**T5, **overrides}).train()
    assert model.settings.causal_encoder == (overrides.get("train_targets") == "all")
    batch = training_rows(tiny[1])[torch.arange(64)] if not overrides else training_rows(tiny[1])
    losses = train_steps(model, batch, 20)
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0] - 0.2, losses
    assert model.encoder.stack.block[0].layer[0].SelfAttention.q.weight.grad.abs().sum() > 0


def test_t5_causal_encoder_ignores_later_items(tiny):
    model = make_model(tiny, config_overrides={**T5, **SEQUENCE_MODE})
    users = tiny[2]
    seq, n = users["item_id_list"], users["item_length"]
    keep = n >= 3
    seq, n, user = seq[keep], n[keep], users["user_id"][keep]
    changed = seq.clone()
    changed[torch.arange(len(seq)), n - 1] = (seq[torch.arange(len(seq)), n - 1] % (model.n_items - 1)) + 1
    with torch.no_grad():
        a, _ = model.encode(seq, n, user)
        b, _ = model.encode(changed, n, user)
    u = 1  # user token first
    for i in range(len(seq)):
        last = u + int(n[i]) - 1
        assert torch.allclose(a[i, :last], b[i, :last], atol=1e-5)      # earlier positions unchanged
        assert not torch.allclose(a[i, last], b[i, last], atol=1e-3)     # the changed item itself


def test_t5_sequence_loss_equals_mean_per_row_log_likelihood(tiny):
    """As for our backbone: one causal pass per user = the per-prefix teacher-forced loss."""
    model = make_model(tiny, config_overrides={**T5, **SEQUENCE_MODE})
    rows = training_rows(tiny[1])
    with torch.no_grad():
        sequence_loss = model.calculate_loss(rows)
        per_row = model.predict(rows)
    assert sequence_loss.item() == pytest.approx(-per_row.mean().item() / model.n_levels, rel=1e-5)


@pytest.mark.parametrize("overrides", [{}, SEQUENCE_MODE], ids=["last", "all"])
def test_t5_incremental_decoding_equals_teacher_forcing(tiny, overrides):
    """W beams per user, reordered between steps: every step's output equals the teacher-forced
    decoder on that beam's full prefix."""
    model = make_model(tiny, config_overrides={**T5, **overrides})
    users = tiny[2]
    B, W, L = len(users), 3, model.n_levels
    g = torch.Generator().manual_seed(0)
    codes = torch.stack([torch.randint(0, k, (B, W), generator=g) for k in model.codebook_sizes], -1)  # [B, W, L]
    with torch.no_grad():
        memory, mask = model.encode(users["item_id_list"], users["item_length"], users["user_id"])
        cache = model.decoder.start(memory, mask)
        rows = torch.arange(B)[:, None]
        for level in range(L):
            if level == 0:
                x = model.teacher_forced_input(codes[:, 0])[:, None, 0]                  # BOS [B, 1, D]
                h = model.decoder.step(x, cache)                                         # [B, 1, D]
                h = h.expand(B, W, -1)
                cache.reorder(torch.zeros(B, W, dtype=torch.long))
            else:
                parent = torch.stack([torch.randperm(W, generator=g) for _ in range(B)])  # [B, W]
                cache.reorder(parent)
                codes = codes[rows, parent]                                              # follow the beams
                x = model.teacher_forced_input(codes.flatten(0, 1))[:, level].view(B, W, -1)
                h = model.decoder.step(x, cache)                                         # [B, W, D]
            full = model.decoder(model.teacher_forced_input(codes.flatten(0, 1)), memory,
                                 mask.repeat_interleave(W, 0),
                                 memory_index=torch.arange(B).repeat_interleave(W))      # [BW, L, D]
            assert torch.allclose(h.flatten(0, 1), full[:, level], atol=1e-5), level


def test_t5_step_chunks_rows_without_changing_results(tiny, monkeypatch):
    import recbole_tiger.model.layers.t5_backbone as t5_backbone

    model = make_model(tiny, config_overrides=T5, sizes=(3, 4, 6))
    model.set_ranking(beam_size=20)
    users = tiny[2]
    whole = model.full_sort_predict(users)
    monkeypatch.setattr(t5_backbone, "_STEP_CHUNK_ELEMENTS", 1)                           # one row per call
    assert torch.allclose(model.full_sort_predict(users), whole, atol=1e-5)


def test_t5_beam_equals_exact_when_beam_covers_catalogue(tiny):
    _, dataset, users = tiny
    model = make_model(tiny, sizes=(3, 4, 6), config_overrides=T5)
    exact_model = make_model(tiny, sizes=(3, 4, 6), config_overrides={**T5, "eval_mode": "exact"})
    model.set_ranking(beam_size=dataset.item_num - 1)
    beam, exact = model.full_sort_predict(users), exact_model.full_sort_predict(users)
    assert bool(torch.isfinite(exact[:, 1:]).all())
    assert torch.allclose(beam[:, 1:], exact[:, 1:], atol=1e-5)
    for k in (5, 10):
        assert torch.equal(beam.topk(k).indices.sort(1).values, exact.topk(k).indices.sort(1).values)
    # predict (given IDs, all candidates sharing BOS) scores the same log-likelihoods
    items = torch.arange(1, dataset.item_num).expand(len(users), -1)
    rows = users.repeat_interleave(items.shape[1])
    rows.update(type(users)({"item_id": items.flatten()}))
    assert torch.allclose(exact_model.predict(rows).view(len(users), -1).float(), exact[:, 1:], atol=1e-5)


def test_t5_checkpoint_round_trip(tiny):
    users = tiny[2]
    trained = make_model(tiny, seed=0, config_overrides=T5)
    rebuilt = make_model(tiny, seed=1, config_overrides=T5)
    before = trained.full_sort_predict(users)
    assert not torch.equal(rebuilt.full_sort_predict(users), before)
    rebuilt.load_state_dict(trained.state_dict())
    assert torch.equal(rebuilt.full_sort_predict(users), before)


def test_unknown_backbone_is_rejected(tiny):
    with pytest.raises(ValueError, match="backbone='gpt'.*expected one of \\('own', 't5'\\)"):
        make_model(tiny, config_overrides={"backbone": "gpt"})
