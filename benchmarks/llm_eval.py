"""Held-out queries: does the fine-tuned LM name the right item, and does a sentence-embedding
nearest-neighbour search do better?

    python -m benchmarks.llm_eval --model=saved/llm/amazon-beauty/model \\
        --data_dir=saved/llm/amazon-beauty --max_queries=500

``predict_semantic_id`` queries: Recall@1/@10 of the asked-for item among the whole catalogue,
for the LM (constrained beam search) and for the baseline (the query embedded with the text
encoder that made the semantic IDs, cosine nearest items by their embedded text).
``predict_attribute`` questions: exact-match accuracy of the answer (case and spaces ignored).
One row per run merges into ``results/<dataset>-llm.csv``/``.md`` with commit, date and machine.
"""
import argparse
import json
import os
import random
import time

import torch
from tqdm import tqdm

from recbole_tiger.llm.base_model import load_finetuned
from recbole_tiger.llm.constrained import SemanticIDDecoder
from recbole_tiger.llm.examples import read_jsonl
from recbole_tiger.llm.sid_text import REC

COLUMNS = ["system", "queries", "recall@1", "recall@10", "attribute_accuracy", "attribute_questions",
           "items_trained", "catalogue_items", "train", "seconds_per_query", "commit", "date", "machine"]


def normalise(text):
    return " ".join(text.lower().split())


def query_of(example):
    return next(m["content"] for m in example["messages"] if m["role"] == "user")


def recall(ranked_tokens, target, k):
    return float(target in ranked_tokens[:k])


def evaluate_lm(decoder, id_queries, attribute_questions, k=10, beam_size=20, show_progress=True):
    hits1 = hits10 = 0.0
    start = time.time()
    for example in tqdm(id_queries, desc="LM queries", disable=not show_progress):
        recs = decoder.recommend(example["messages"][:-1], k=k, beam_size=beam_size)
        tokens = [r.item.token for r in recs]
        hits1 += recall(tokens, example["item"], 1)
        hits10 += recall(tokens, example["item"], 10)
    per_query = (time.time() - start) / max(len(id_queries), 1)
    correct = 0
    for example in tqdm(attribute_questions, desc="LM attributes", disable=not show_progress):
        answer = decoder.answer(example["messages"][:-1])
        correct += normalise(answer) == normalise(example["messages"][-1]["content"])
    n, m = len(id_queries), len(attribute_questions)
    return {"recall@1": round(hits1 / n, 4) if n else "", "recall@10": round(hits10 / n, 4) if n else "",
            "attribute_accuracy": round(correct / m, 4) if m else "", "attribute_questions": m,
            "seconds_per_query": round(per_query, 3)}


def evaluate_embedding_baseline(catalogue, artifact_path, id_queries, k=10, device="cpu"):
    """Nearest items to the query's embedding (the semantic IDs' own text encoder and item embeddings)."""
    from recbole_tiger.semantic_ids.pipeline import load_artifact
    from recbole_tiger.semantic_ids.text_encoder import load_sentence_encoder

    artifact = load_artifact(artifact_path)
    index = {t: i for i, t in enumerate(artifact["tokens"])}
    rows = torch.tensor([index[item.token] for item in catalogue.items])
    items = torch.nn.functional.normalize(artifact["embeddings"][rows].float(), dim=-1)     # [N, d]
    encoder = load_sentence_encoder(artifact["params"]["sid_text_encoder"], torch.device(device))
    texts = [query_of(ex).replace(REC, "").strip() for ex in id_queries]
    start = time.time()
    queries = torch.as_tensor(encoder.encode(texts, batch_size=64, convert_to_numpy=True)).float()
    queries = torch.nn.functional.normalize(queries, dim=-1)
    top = (queries @ items.T).topk(k, dim=-1).indices.tolist()
    per_query = (time.time() - start) / max(len(texts), 1)
    hits1 = hits10 = 0.0
    for example, ranked in zip(id_queries, top):
        tokens = [catalogue.items[i].token for i in ranked]
        hits1 += recall(tokens, example["item"], 1)
        hits10 += recall(tokens, example["item"], 10)
    n = len(id_queries)
    return {"recall@1": round(hits1 / n, 4), "recall@10": round(hits10 / n, 4), "seconds_per_query": round(per_query, 4)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="folder written by recbole_tiger.llm.finetune")
    parser.add_argument("--data_dir", required=True, help="folder with heldout.jsonl and catalogue.json")
    parser.add_argument("--max_queries", type=int, default=500, help="per task (a seeded random subset)")
    parser.add_argument("--beam_size", type=int, default=20)
    parser.add_argument("--results_dir", default="results")
    parser.add_argument("--dataset", default=None, help="name for the results file; default from the artifact")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from recbole_tiger.benchmark.results_table import git_commit, machine_description, utc_date, write_table

    model, tokenizer, catalogue = load_finetuned(args.model)
    with open(os.path.join(args.data_dir, "catalogue.json")) as f:
        source = json.load(f)
    with open(os.path.join(args.model, "recbole_tiger_llm.json")) as f:
        meta = json.load(f)
    heldout = read_jsonl(os.path.join(args.data_dir, "heldout.jsonl"))
    rng = random.Random(args.seed)
    id_queries = [ex for ex in heldout if ex["task"] == "predict_semantic_id"]
    attribute_questions = [ex for ex in heldout if ex["task"] == "predict_attribute"]
    id_queries = rng.sample(id_queries, min(args.max_queries, len(id_queries)))
    attribute_questions = rng.sample(attribute_questions, min(args.max_queries, len(attribute_questions)))
    lm = evaluate_lm(SemanticIDDecoder(model, tokenizer, catalogue), id_queries, attribute_questions,
                     beam_size=args.beam_size)
    baseline = evaluate_embedding_baseline(catalogue, catalogue.artifact_path, id_queries)
    common = {"queries": len(id_queries), "items_trained": source["n_items_trained"],
              "catalogue_items": len(catalogue.items), "commit": git_commit(), "date": utc_date(),
              "machine": machine_description(torch.device("cpu"))}
    train = (f"{meta['method']}, {meta['steps']} steps, {meta['train_seconds'] / 60:.0f} min, "
             f"best valid loss {meta['best_valid_loss']}")
    rows = [{"system": f"LM ({os.path.basename(os.path.normpath(args.model))})", **common, **lm, "train": train},
            {"system": "embedding nearest neighbour", **common, **baseline, "train": "none"}]
    dataset = args.dataset or os.path.basename(source["item_file"]).rsplit(".", 1)[0]
    write_table(os.path.join(args.results_dir, f"{dataset}-llm"),
                f"Natural-language queries to items on {dataset} (held-out queries)", COLUMNS, rows,
                ["system", "queries", "items_trained"])
    for row in rows:
        print({k: row.get(k) for k in ("system", "recall@1", "recall@10", "attribute_accuracy", "seconds_per_query")})


if __name__ == "__main__":
    main()
