"""Constraint requests (recbole_tiger.llm.constraints / constrained.ConstraintParser / search):
data that holds combinations out, decoding scored exactly, and LM + retrieval end to end
(fine-tune, evaluation, the weight chosen on valid, ask and the demo) on a catalogue made here."""
import json
import os
import random

import pytest
import torch

from recbole_tiger.llm.catalogue import load_catalogue
from recbole_tiger.llm.constraints import (ANY, Facets, answer_text, build_constraint_data, category_phrase,
                                           read_queries, title_product_words, words)
from recbole_tiger.llm.examples import read_jsonl
from recbole_tiger.semantic_ids.pipeline import ARTIFACT_FORMAT
from test_llm import tiny_lm

FAMILIES = [("Skin Care", "Face", "Creams & Moisturizers", "face cream"), ("Hair Care", "Shampoos", "", "shampoo"),
            ("Makeup", "Eyes", "Mascara", "lash mascara"), ("Fragrance", "Women's", "", "rose perfume")]


def write_shop(tmp_path, n_items=48):
    """A .item file with brands and category paths, and an artifact holding MiniLM embeddings of its texts."""
    from recbole_tiger.semantic_ids.text_encoder import load_sentence_encoder

    os.makedirs(tmp_path, exist_ok=True)
    lines = ["item_id:token\ttitle:token_seq\tbrand:token\tcategories:token_seq"]
    texts = []
    for i in range(n_items):
        top, mid, leaf, words = FAMILIES[i % 4]
        brand = ["Olay", "L&#39;Oreal Paris", "Conair"][(i // 4) % 3]
        path = ", ".join(p for p in (top, mid, leaf) if p)
        title = f"{brand.replace('&#39;', chr(39))} {words.title()} #{i}, 2 oz"
        lines.append(f"it{i}\t{title}\t{brand}\t{path}")
        texts.append(f"{title}. {brand}. {path}")
    (tmp_path / "shop.item").write_text("\n".join(lines) + "\n")
    encoder = load_sentence_encoder(None, torch.device("cpu"))
    codes = [[i % 4, (i // 4) % 4, i // 16] for i in range(n_items)]
    artifact = {"format": ARTIFACT_FORMAT, "key": "test", "key_inputs": {"item_id_field": "item_id"},
                "item_file": str(tmp_path / "shop.item"), "tokens": [f"it{i}" for i in range(n_items)],
                "codes": torch.tensor(codes), "codebook_sizes": [4, 4, 3], "dedup": True,
                "params": {"sid_text_encoder": None},
                "embeddings": torch.as_tensor(encoder.encode(texts, convert_to_numpy=True)), "stats": {}, "texts": texts}
    torch.save(artifact, tmp_path / "shop.pt")
    return str(tmp_path / "shop.pt")


def test_facets_phrases_and_product_words():
    rng = random.Random(0)
    assert {category_phrase(["Skin Care", "Face", "Creams & Moisturizers"], 2, random.Random(s)) for s in range(40)} == {
        "cream", "moisturizer", "face cream", "face moisturizer"}
    assert category_phrase(["Fragrance", "Men's"], 1, rng) == "fragrance for men"
    assert category_phrase(["Men's"], 0, rng) is None
    assert category_phrase(["Hair Care", "Brushes"], 1, rng) == "brush"
    assert title_product_words("OPI Nail Lacquer, Simmer and Shimmer", "OPI", random.Random(3)) in (
        "lacquer", "nail lacquer")
    assert answer_text("Olay", None) == "brand: Olay\ncategory: any"


def test_constraint_data_holds_combinations_out(tmp_path):
    catalogue = load_catalogue(write_shop(tmp_path))
    facets = Facets.of(catalogue)
    assert "L'Oreal Paris" in facets.brand_values and facets.satisfies(1 * 4, "l'oreal paris", "Skin Care")
    summary = build_constraint_data(catalogue, str(tmp_path / "data"), min_items=2, title_requests=20,
                                    paraphrase_requests=10, eval_queries=8, split=(0.5, 0.25, 0.25))
    train = read_jsonl(tmp_path / "data" / "train.jsonl") + read_jsonl(tmp_path / "data" / "valid.jsonl")
    answers = {e["messages"][-1]["content"] for e in train}
    train_queries = {e["messages"][1]["content"] for e in train}
    assert summary["combinations"]["valid"] > 0 and summary["combinations"]["test"] > 0
    for split in ("valid", "test"):
        queries = read_queries(tmp_path / "data" / f"queries-{split}.jsonl")
        constraint = [q for q in queries if q["kind"] == "constraint"]
        assert constraint and any(q["kind"] == "paraphrase" for q in queries)
        for q in constraint:
            assert q["query"] not in train_queries
            assert q["relevant"] == len(facets.matching(q["brand"], q["category"])) >= 2
            if q["brand"] != ANY:   # a held-out (brand, category) is never a training answer
                assert answer_text(q["brand"], q["category"]) not in answers, q
            if q["wording"] == "title words":   # the product as titles say it, never the category's name
                assert q["brand"] != ANY and not set(words(q["category"])) & set(words(q["query"])), q
        assert {q["wording"] for q in constraint} == {"category name", "title words"}
    (tmp_path / "bad.jsonl").write_text('{"kind": "constraint", "query": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: a query needs kind 'constraint'"):
        read_queries(tmp_path / "bad.jsonl")


def test_trie_beam_scores_are_the_models_log_probabilities(tmp_path):
    from recbole_tiger.llm.constrained import ConstraintParser, ValueTrie, trie_beam

    catalogue = load_catalogue(write_shop(tmp_path, n_items=12))
    model, tokenizer = tiny_lm(catalogue)
    model.eval()
    values = ["Olay", "Conair", "L'Oreal Paris", "any"]
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
    sequences = [ids(" " + v) + ids("\n") for v in values]
    prefix = ids("brand:")
    found = trie_beam(model, torch.tensor([prefix]), ValueTrie(sequences), beam_size=len(values))
    assert sorted(i for _, i in found) == list(range(len(values)))
    assert [s for s, _ in found] == sorted((s for s, _ in found), reverse=True)
    for score, index in found:   # the same log-probability as one forward pass over prefix + value
        full = torch.tensor([prefix + sequences[index]])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=full).logits[0, :-1].float(), -1)
        expected = logp[torch.arange(len(prefix) - 1, full.shape[1] - 1), full[0, len(prefix):]].sum()
        assert score == pytest.approx(float(expected.detach()), abs=1e-4)
    assert len(trie_beam(model, torch.tensor([prefix]), ValueTrie(sequences), beam_size=2)) == 2
    readings = ConstraintParser(model, tokenizer, Facets.of(catalogue)).parse("an Olay face cream", 2, 3)
    assert len(readings) == 6 and sum(r.probability for r in readings) == pytest.approx(1.0)
    assert all(r.brand in ["any"] + Facets.of(catalogue).brand_values for r in readings)


def test_lm_plus_retrieval_end_to_end(tmp_path, capsys):
    from benchmarks.query_eval import main as query_eval
    from recbole_tiger.demo.__main__ import language_model_answerer
    from recbole_tiger.llm.ask import answer_rows, ask, load_answerer
    from recbole_tiger.llm.finetune import finetune
    from recbole_tiger.llm.search import ConstraintSearch

    artifact = write_shop(tmp_path)
    catalogue = load_catalogue(artifact)
    data = tmp_path / "data"
    build_constraint_data(catalogue, str(data), min_items=2, title_requests=48, paraphrase_requests=20,
                          eval_queries=10, split=(0.6, 0.2, 0.2), valid_ratio=0.1)
    train_before = (data / "train.jsonl").read_bytes()
    build_constraint_data(catalogue, str(data), min_items=2, title_requests=48, paraphrase_requests=20,
                          eval_queries=10, split=(0.6, 0.2, 0.2), valid_ratio=0.1, fresh_test=1)
    assert (data / "train.jsonl").read_bytes() == train_before
    fresh = read_queries(str(data / "queries-test-fresh1.jsonl"))
    seen = {q["query"] for q in read_queries(str(data / "queries-test.jsonl"))} | {
        e["messages"][1]["content"] for e in read_jsonl(data / "train.jsonl") + read_jsonl(data / "valid.jsonl")}
    assert fresh and not {q["query"] for q in fresh} & seen
    build_constraint_data(catalogue, str(data), min_items=2, title_requests=48, paraphrase_requests=20,
                          eval_queries=10, split=(0.6, 0.2, 0.2), valid_ratio=0.1, fresh_test=2)
    second = read_queries(str(data / "queries-test-fresh2.jsonl"))
    assert not {q["query"] for q in second} & (seen | {q["query"] for q in fresh})
    assert not {q["item"] for q in second if q["kind"] == "paraphrase"} & {q["item"] for q in fresh if q["kind"] == "paraphrase"}
    log = finetune(read_jsonl(data / "train.jsonl"), read_jsonl(data / "valid.jsonl"), catalogue,
                   str(tmp_path / "model"), budget_min=10, epochs=8, batch_size=16, learning_rate=5e-3, eval_steps=0,
                   patience=10, lora_rank=8, model_and_tokenizer=tiny_lm(catalogue), show_progress=False,
                   task="predict_constraints")
    assert log["best_valid_loss"] < log["evaluations"][0]["valid_loss"]
    query_eval([f"--model={tmp_path / 'model'}", f"--data_dir={data}", f"--results_dir={tmp_path / 'results'}",
                "--dataset=shop", "--weights=0,0.5,2", "--gates=0,0.1", "--keeps=0,2", "--n_brands=2", "--n_categories=2",
                "--test_splits=test,test-fresh1"])
    rows = {(r["system"], r["split"], r["weight"], r["gate"], r["keep"]): r
            for r in __import__("csv").DictReader(open(tmp_path / "results" / "shop-queries.csv"))}
    metrics = ("precision@10", "hit@10", "recall@1", "recall@10")
    # weight 0 is the embedding search, whatever the LM read
    for split in ("valid",):
        assert all(rows[("LM + retrieval", split, "0.0", "0.0", "0")][m] == rows[("embedding search", split, "0.0", "0.0", "0")][m]
                   for m in metrics)
    assert {s for s, split, *_ in rows if split == "test"} == {
        "embedding search", "LM", "LM + retrieval", "string match + retrieval"}
    meta = json.loads((tmp_path / "model" / "recbole_tiger_llm.json").read_text())
    assert meta["task"] == "predict_constraints" and meta["search_weight"] in (0.0, 0.5, 2.0)
    assert meta["search_gate"] in (0.0, 0.1) and not (meta["search_weight"] == 0 and meta["search_gate"])
    for split in ("test", "test-fresh1"):
        assert ("LM + retrieval", split, str(meta["search_weight"]), str(meta["search_gate"]),
                str(meta["search_keep"])) in rows
    system = load_answerer(str(tmp_path / "model"))
    assert isinstance(system, ConstraintSearch) and system.weight == meta["search_weight"]
    kind, hits = ask(system, "a face cream by Olay", k=5)
    assert kind == "items" and len(hits) == 5 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # with a large weight the items the LM's readings allow (P >= 0.05) come before those they do not
    # (P < 0.02): 100 x 0.03 outweighs any cosine difference
    system.weight = 100.0
    allowed = [h.satisfies for h in system.answer("a face cream by Olay", k=48)]
    assert max(allowed) >= 0.05
    assert not any(a < 0.02 and b >= 0.05 for i, a in enumerate(allowed) for b in allowed[i + 1:])
    system.weight = meta["search_weight"]
    demo_rows = language_model_answerer(str(tmp_path / "model"), RuntimeError)("a face cream by Olay")
    assert [r["item"] for r in demo_rows] == [r["item"] for r in answer_rows(system, "a face cream by Olay")]


def test_weight_rule_keeps_paraphrase_recall_and_readings_are_cached(tmp_path):
    from benchmarks.query_eval import choose, read_all
    from recbole_tiger.llm.constrained import Parse

    rows = [{"weight": 0.0, "precision@10": 0.5, "recall@10": 0.99}, {"weight": 0.1, "precision@10": 0.7, "recall@10": 0.99},
            {"weight": 0.5, "precision@10": 0.7, "recall@10": 0.99}, {"weight": 1.0, "precision@10": 0.8, "recall@10": 0.98}]
    assert choose(rows, baseline_recall=0.99)["weight"] == 0.1      # 1.0 loses a paraphrase; ties: smaller weight
    assert choose(rows, baseline_recall=1.0)["weight"] == 0.0       # none keeps the recall: the embedding search
    # a setting that loses one lookup and gains another keeps the recall but is not allowed; ties: no gate
    rows = [{"weight": 0.0, "gate": 0.0, "precision@10": 0.5, "recall@10": 0.99, "lost@10": 0},
            {"weight": 0.2, "gate": 0.0, "precision@10": 0.8, "recall@10": 0.99, "lost@10": 1},
            {"weight": 0.2, "gate": 0.1, "precision@10": 0.7, "recall@10": 0.99, "lost@10": 0},
            {"weight": 0.2, "gate": 0.05, "precision@10": 0.7, "recall@10": 0.99, "lost@10": 0}]
    assert (choose(rows, baseline_recall=0.99)["weight"], choose(rows, baseline_recall=0.99)["gate"]) == (0.2, 0.05)
    from recbole_tiger.llm.search import CatalogueSearch
    gated = CatalogueSearch.gated
    assert gated(0.2, torch.tensor([0.9, 0.5, 0.4]), 0.1) == 0.0                       # one item stands out
    assert gated(0.2, torch.tensor([0.52, 0.5, 0.4]), 0.1) == pytest.approx(0.2 * 0.8)  # two about as close
    assert gated(0.2, torch.tensor([0.9, 0.5, 0.4]), 0.0) == 0.2                        # no gate
    # keep: the cosine's best items stay in the top k however the readings move the others
    search = CatalogueSearch.__new__(CatalogueSearch)
    search.items = torch.eye(5)
    query = torch.tensor([0.9, 0.8, 0.1, 0.05, 0.0])
    satisfies = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0])
    assert search.ranking(query, satisfies, 2.0, k=3)[0] == [2, 3, 4]
    top, scores = search.ranking(query, satisfies, 2.0, keep=1, k=3)
    assert top == [2, 3, 0] and scores == sorted(scores, reverse=True)
    assert search.ranking(query, satisfies, 2.0, keep=2, k=3)[0] == [2, 0, 1]
    assert search.ranking(query, satisfies, 0.0, keep=2, k=3)[0] == [0, 1, 2]
    queries = [{"query": "a face cream by Olay"}, {"query": "shampoo"}]
    calls = []
    parse = lambda q: calls.append(q) or [Parse("Olay", "Face", 1.0)]
    cache = tmp_path / "readings.json"
    first, _ = read_all(parse, queries, "x", str(cache), "weights-1")
    again, _ = read_all(parse, queries + [{"query": "mascara"}], "x", str(cache), "weights-1")
    assert calls == ["a face cream by Olay", "shampoo", "mascara"] and again[:2] == first
    read_all(parse, queries, "x", str(cache), "weights-2")          # new weights: read again
    assert calls[3:] == ["a face cream by Olay", "shampoo"]
