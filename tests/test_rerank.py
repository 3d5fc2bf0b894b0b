"""The LM reranker (recbole_tiger.rerank): candidates from a RecBole checkpoint, prompts,
examples without leaks, the feature projection, training that beats the untrained model, and
a reload that scores the same."""
import re

import numpy as np
import pytest
import torch

from recbole_tiger.rerank.prompts import (FEATURE_TOKEN, HISTORY_ITEMS, candidate_prompt, shared_text,
                                          training_examples)
from recbole_tiger.rerank.train import evaluate, load_reranker_state, ranking_metrics, train_reranker, wrap_for_method

FAMILIES = [("Face", "Cream"), ("Hair", "Shampoo"), ("Eye", "Mascara"), ("Rose", "Perfume")]
N_ITEMS = 41                                   # ids 1..40 (0 = padding); family = (id - 1) % 4


def titles():
    return ["[PAD]"] + [f"{FAMILIES[(i - 1) % 4][0]} {FAMILIES[(i - 1) % 4][1]} {i}" for i in range(1, N_ITEMS)]


def synthetic_split(n_users, seed, k=8):
    """Users buy within one family; the target is another item of it; the candidates hold the
    target and K-1 items of other families, in random order (the first stage knows nothing)."""
    rng = np.random.default_rng(seed)
    history = torch.zeros(n_users, 10, dtype=torch.long)
    target, cands, length = [], [], []
    for u in range(n_users):
        family = u % 4
        members = [i for i in range(1, N_ITEMS) if (i - 1) % 4 == family]
        picks = rng.choice(members, 5, replace=False)
        history[u, :4] = torch.as_tensor(picks[:4])
        others = rng.choice([i for i in range(1, N_ITEMS) if (i - 1) % 4 != family], k - 1, replace=False)
        row = np.r_[picks[4], others]
        rng.shuffle(row)
        target.append(int(picks[4]))
        cands.append(torch.as_tensor(row))
        length.append(4)
    return {"users": torch.arange(n_users), "history": history, "length": torch.tensor(length),
            "target": torch.tensor(target), "candidates": torch.stack(cands), "scores": torch.zeros(n_users, k)}


def tiny_reranker(features=None, precision="float32"):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from recbole_tiger.llm.base_model import prepare_tokenizer
    from recbole_tiger.rerank.model import Reranker
    from recbole_tiger.rerank.prompts import DIRECT_TEMPLATES, SEQUENTIAL_TEMPLATES, SHARED_TEMPLATES

    corpus = titles()[1:] + SHARED_TEMPLATES + SEQUENTIAL_TEMPLATES + DIRECT_TEMPLATES + [" yes", " no"] * 20 + ["user_1 |"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus * 5, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<|im_end|>"],
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", unk_token="<unk>")
    prepare_tokenizer(tokenizer)
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      tie_word_embeddings=True))
    return Reranker(lm, tokenizer, features=features, precision=precision)


def test_prompts_use_the_recent_history_and_features_only_in_direct_prompts():
    t = titles()
    history = torch.tensor([1, 2, 3, 4, 5, 6, 7, 0, 0])
    text = shared_text(9, history, 7, t)
    assert text.startswith("user_9 ") and t[3] in text and t[7] in text and t[2] not in text
    assert text.index(t[3]) < text.index(t[7])                       # oldest first
    assert text.count(" | ") == HISTORY_ITEMS - 1
    prompt, answer = candidate_prompt("sequential", t[5], with_feature=True)
    assert FEATURE_TOKEN not in prompt and answer == " " + t[5]
    prompt, answer = candidate_prompt("direct", t[5], with_feature=True)
    assert answer is None and f"{FEATURE_TOKEN} {t[5]}" in prompt


def test_training_examples_come_from_training_queries_only():
    split = synthetic_split(12, seed=0)
    examples = training_examples(split, titles(), n_negatives=3)
    assert len(examples) == 12 * (1 + 1 + 3)
    allowed = {int(i) for i in split["candidates"].flatten()} | {int(i) for i in split["target"]}
    assert {ex["item"] for ex in examples} <= allowed
    answers = {(ex["task"], ex["answer"]) for ex in examples}
    assert ("direct", " yes") in answers and ("direct", " no") in answers
    for ex in examples:
        row = int(re.search(r"user_(\d+)", ex["shared"]).group(1))
        if ex["task"] == "direct":
            assert (ex["answer"] == " yes") == (ex["item"] == int(split["target"][row]))
        else:
            assert ex["item"] == int(split["target"][row])


def test_candidates_from_a_checkpoint_follow_recboles_split(tiny_config, tmp_path):
    from recbole_tiger.atomic_io import atomic_torch_save
    from recbole_tiger.quick_start import run_recbole_tiger
    from recbole_tiger.rerank import compare
    from recbole_tiger.rerank.candidates import build_candidates

    result = run_recbole_tiger(model="SASRec", config_dict=dict(tiny_config, train_neg_sample_args=None))
    data = build_candidates(result["saved_model_file"], k=5, n_eval_users=10, n_train_users=15)
    valid, test, train = data["splits"]["valid"], data["splits"]["test"], data["splits"]["train"]
    assert torch.equal(valid["users"], test["users"]) and len(valid["users"]) == 10 and len(train["users"]) == 15
    assert valid["candidates"].shape == (10, 5) and (valid["candidates"] > 0).all()
    # a user's training query is their last training item: the valid history ends with it and the
    # test history with the valid target
    last = lambda split, row: int(split["history"][row, int(split["length"][row]) - 1])
    for row in range(10):
        assert last(test, row) == int(valid["target"][row])
    valid_rows = {int(u): r for r, u in enumerate(valid["users"])}
    for row, user in enumerate(train["users"].tolist()):
        if user in valid_rows:
            assert int(train["target"][row]) == last(valid, valid_rows[user])
    # the candidates are the model's own top-5 ranking
    assert (valid["scores"][:, :-1] >= valid["scores"][:, 1:]).all()

    # the comparison command end to end, with a tiny LM saved as a local model folder
    reranker = tiny_reranker()
    reranker.lm.save_pretrained(tmp_path / "lm")
    reranker.tokenizer.save_pretrained(tmp_path / "lm")
    atomic_torch_save(str(tmp_path / "cands.pt"), data)
    # split over invocations as on Beauty: baselines and the untrained LM first, then training
    common = [f"--candidates={tmp_path / 'cands.pt'}", f"--base_model={tmp_path / 'lm'}", "--n_valid_users=5",
              f"--results_dir={tmp_path / 'results'}", f"--out={tmp_path / 'reranker.pt'}"]
    compare.main(common + ["--systems=baselines,untrained"])
    table = (tmp_path / "results" / "tiny-rerank.md").read_text()
    assert "| LM reranker, untrained" in table and "| LM reranker, trained" not in table
    compare.main(common + ["--systems=trained", "--method=lora", "--budget=1", "--epochs=1"])
    table = (tmp_path / "results" / "tiny-rerank.md").read_text()
    for system in ("first stage", "popularity", "MiniLM history-candidate cosine", "LM reranker, untrained",
                   "LM reranker, trained"):
        assert table.count(f"| {system}") == 1, table
    assert table.count("| fusion with the first stage: LM reranker, ") == 2
    measured = lambda md: next(line for line in md.splitlines()  # all but commit, date, machine
                               if line.startswith("| LM reranker, trained")).split("|")[1:12]
    trained_row = measured(table)
    # a later invocation tests the saved reranker again (LoRA re-wrapped from the file's meta): same row
    compare.main(common + ["--systems=trained", "--use_saved"])
    again = (tmp_path / "results" / "tiny-rerank.md").read_text()
    assert measured(again) == trained_row
    with pytest.raises(SystemExit, match="unknown"):
        compare.main(common + ["--systems=trained,reranked"])
    first = ranking_metrics(test["candidates"], test["target"])
    in_list = round(float((test["candidates"] == test["target"][:, None]).any(1).float().mean()), 4)
    assert f"| first stage | SASRec (repeatable) |  |  | 10 | 5 | {in_list} | {first['recall@5']} |" in table
    # every row's valid column covers the same first --n_valid_users users
    first_valid = ranking_metrics(valid["candidates"][:5], valid["target"][:5])["ndcg@10"]
    assert f"| {first_valid} | 5 |" in next(line for line in table.splitlines() if line.startswith("| first stage"))


def test_feature_projection_replaces_only_the_feature_token():
    features = torch.randn(N_ITEMS, 6)
    reranker = tiny_reranker(features)
    ids = torch.tensor([[5, reranker.feature_id, 7], [reranker.feature_id, 3, 3]])
    items = torch.tensor([4, 9])
    embeds = reranker.embed(ids, items)
    assert embeds.shape == (2, 3, 48)
    plain = reranker.lm.get_input_embeddings()(ids)
    assert torch.allclose(embeds[0, 1], reranker.projection(features[4]))
    assert torch.allclose(embeds[1, 0], reranker.projection(features[9]))
    assert torch.equal(embeds[0, 0], plain[0, 0]) and torch.equal(embeds[1, 2], plain[1, 2])


def train_tiny_reranker(reranker, train, valid, t, out):
    """Full fine-tuning (a tiny random LM has nothing for LoRA to adapt) for 7 epochs. The time
    budget is only a safety net: at 3 minutes it cut training short on a busy CI machine (216 s
    next to two training runs) and the test failed for want of epochs, not of learning."""
    log = train_reranker(reranker, training_examples(train, t, n_negatives=3), valid, t, out,
                         method="full", budget_min=30, epochs=7, batch_size=16, learning_rate=3e-3, patience=7,
                         n_valid_users=32, show_progress=False)
    assert len(log["epochs"]) == 7, log["epochs"]              # all epochs ran (patience 7: no early stop)
    return log


def test_training_beats_the_untrained_reranker_and_a_reload_scores_the_same(tmp_path):
    t = titles()
    train, valid = synthetic_split(96, seed=1), synthetic_split(32, seed=2)
    untrained = evaluate(tiny_reranker(), valid, t, False, show_progress=False)
    reranker = tiny_reranker()
    log = train_tiny_reranker(reranker, train, valid, t, str(tmp_path / "r.pt"))
    best = log["best_valid_ndcg10"]
    chance = ranking_metrics(valid["candidates"], valid["target"])["ndcg@10"]
    assert best > max(m["ndcg@10"] for m in untrained.values()) + 0.2 and best > chance + 0.2, (untrained, log)
    # reload: a fresh reranker given the saved (best-epoch) weights scores identically
    fresh = tiny_reranker()
    load_reranker_state(fresh, str(tmp_path / "r.pt"))
    load_reranker_state(reranker, str(tmp_path / "r.pt"))
    a, b = evaluate(reranker, valid, t, False, show_progress=False), evaluate(fresh, valid, t, False, show_progress=False)
    assert a == b and a[log["best_mode"]]["ndcg@10"] == best
    # LoRA: the saved adapter weights load into a freshly wrapped reranker
    lora = tiny_reranker()
    train_reranker(lora, training_examples(train, t, n_negatives=1)[:32], valid, t,
                   str(tmp_path / "lora.pt"), method="lora", epochs=1, batch_size=16, lora_rank=4,
                   n_valid_users=8, show_progress=False)
    again = wrap_for_method(tiny_reranker(), "lora", 4)
    load_reranker_state(again, str(tmp_path / "lora.pt"))
    assert evaluate(lora, valid, t, False, 8, show_progress=False) == evaluate(again, valid, t, False, 8,
                                                                             show_progress=False)
    with pytest.raises(ValueError, match="do not fit"):
        load_reranker_state(tiny_reranker(), str(tmp_path / "lora.pt"))


def test_mixed_precision_trains_and_ranks_like_float32(tmp_path):
    from recbole_tiger.rerank.model import resolve_precision

    t = titles()
    train, valid = synthetic_split(96, seed=1), synthetic_split(32, seed=2)
    reranker = tiny_reranker(precision="bfloat16")
    log = train_tiny_reranker(reranker, train, valid, t, str(tmp_path / "r.pt"))
    chance = ranking_metrics(valid["candidates"], valid["target"])["ndcg@10"]
    assert log["best_valid_ndcg10"] > chance + 0.2, log
    # the same weights scored exactly: bf16 changes scores a little, rankings hardly
    load_reranker_state(reranker, str(tmp_path / "r.pt"))
    mixed = evaluate(reranker, valid, t, False, show_progress=False)
    reranker.precision = "float32"
    exact = evaluate(reranker, valid, t, False, show_progress=False)
    for mode in exact:
        assert abs(mixed[mode]["ndcg@10"] - exact[mode]["ndcg@10"]) < 0.05, (mode, mixed, exact)
    assert resolve_precision("auto", "cpu") in ("float32", "bfloat16") and resolve_precision("float32") == "float32"
    with pytest.raises(ValueError, match="precision"):
        tiny_reranker(precision="float16")


def test_item_feature_files(tmp_path):
    from recbole_tiger.rerank.compare import load_item_features

    tokens = ["[PAD]", "a", "b", "c"]
    good = tmp_path / "f.itememb"
    good.write_text("item_id:token\titem_emb:float_seq\na\t1 2\nc\t3 4\n")
    features = load_item_features(str(good), tokens)
    assert features.shape == (4, 2) and features[1].tolist() == [1, 2] and features[2].tolist() == [0, 0]
    bad = tmp_path / "bad.itememb"
    bad.write_text("item_id:token\titem_emb:float_seq\na\t1 2\nb\t1 x\n")
    with pytest.raises(ValueError, match=r"bad.itememb:3: feature of 'b'"):
        load_item_features(str(bad), tokens)
    np.save(tmp_path / "f.npy", np.zeros((3, 2)))
    with pytest.raises(ValueError, match="one row per internal item id"):
        load_item_features(str(tmp_path / "f.npy"), tokens)


def test_scoring_only_the_chosen_modes_gives_the_same_scores():
    from recbole_tiger.rerank.train import candidate_scores

    reranker, split = tiny_reranker(), synthetic_split(3, seed=4)
    every = candidate_scores(reranker, split, titles(), 1, False)
    assert set(every) == {"direct", "sequential", "both"}
    for modes in (("direct",), ("sequential",), ("both",), ("sequential", "direct")):
        some = candidate_scores(reranker, split, titles(), 1, False, modes)
        assert list(some) == list(modes) and all(torch.equal(some[m], every[m]) for m in modes)


def test_training_in_pieces_matches_one_run(tmp_path):
    """Paused after every step and resumed (piece_min=0: one step a piece): the same weights, curve and best epoch
    as one uninterrupted run, and no resume file left."""
    t = titles()
    train, valid = synthetic_split(24, seed=1), synthetic_split(8, seed=2)
    examples = training_examples(train, t, n_negatives=1)
    kwargs = dict(method="full", budget_min=30, epochs=2, batch_size=16, learning_rate=3e-3, patience=5,
                  n_valid_users=8, show_progress=False)
    whole = tiny_reranker()
    one = train_reranker(whole, examples, valid, t, str(tmp_path / "one.pt"), **kwargs)
    pieces, log = 0, {"paused": True}
    while log.get("paused"):
        log = train_reranker(tiny_reranker(), examples, valid, t, str(tmp_path / "pieces.pt"), piece_min=0, **kwargs)
        pieces += 1
        assert pieces < 20
    assert pieces == log["pieces"] == one["steps"] and not (tmp_path / "pieces.pt.resume").exists()
    assert [e["valid"] for e in log["epochs"]] == [e["valid"] for e in one["epochs"]]
    assert [e["train_loss"] for e in log["epochs"]] == [e["train_loss"] for e in one["epochs"]]
    a = torch.load(tmp_path / "one.pt", weights_only=True)
    b = torch.load(tmp_path / "pieces.pt", weights_only=True)
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    assert [c["valid_ndcg@10"] for c in b["meta"]["curve"]] == [c["valid_ndcg@10"] for c in a["meta"]["curve"]]
    torch.save({"n_examples": 3, "weights": {}}, tmp_path / "pieces.pt.resume")
    with pytest.raises(ValueError, match="a paused training of other examples"):
        train_reranker(tiny_reranker(), examples, valid, t, str(tmp_path / "pieces.pt"), **kwargs)
