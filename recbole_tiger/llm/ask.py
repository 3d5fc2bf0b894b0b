"""Ask a fine-tuned LM for items.

    python -m recbole_tiger.llm.ask --model=saved/llm/amazon-beauty-constraints/model "a face moisturizer by Olay"

A model trained on constraint requests (``recbole_tiger.llm.constraints``) answers with LM +
retrieval (``search.py``): the LM reads the brand and category, embedding search orders the
items, mixed with the weight ``benchmarks.query_eval`` chose on validation queries. A model
trained on semantic-ID queries (``recbole_tiger.llm.data``) answers by constrained beam search
over semantic IDs, and a question that names an ID ("What is the brand of [SEM_START]...?")
gets a free-text answer. Prints the top items (title and semantic ID, best first).
"""
import argparse
import json
import logging
import os

from recbole_tiger.llm.base_model import load_finetuned
from recbole_tiger.llm.constrained import ConstraintParser, SemanticIDDecoder
from recbole_tiger.llm.examples import SYSTEM_PROMPT
from recbole_tiger.llm.sid_text import REC, SEM_START, semantic_id_to_string

logger = logging.getLogger(__name__)
UNCHOSEN_SEARCH_WEIGHT = 1.0   # until benchmarks.query_eval has chosen one on valid


def load_answerer(model_dir, device="cpu"):
    """The system a fine-tuned model folder answers with: a ``search.ConstraintSearch`` for a
    constraint model, else a ``SemanticIDDecoder``."""
    model, tokenizer, catalogue = load_finetuned(model_dir, device)
    with open(os.path.join(model_dir, "recbole_tiger_llm.json")) as f:
        meta = json.load(f)
    if meta.get("task") != "predict_constraints":
        return SemanticIDDecoder(model, tokenizer, catalogue)
    from recbole_tiger.llm.constraints import Facets
    from recbole_tiger.llm.search import CatalogueSearch, ConstraintSearch

    weight = meta.get("search_weight")
    if weight is None:
        logger.warning(f"{model_dir}: no search_weight chosen on valid yet (python -m benchmarks.query_eval); "
                       f"using {UNCHOSEN_SEARCH_WEIGHT}")
        weight = UNCHOSEN_SEARCH_WEIGHT
    facets = Facets.of(catalogue)
    return ConstraintSearch(ConstraintParser(model, tokenizer, facets),
                            CatalogueSearch.from_artifact(catalogue, device), weight, meta.get("search_gate") or 0.0,
                            int(meta.get("search_keep") or 0))


def ask(decoder, query, k=10):
    """('items', [Recommendation or search.Hit]) or ('text', answer)."""
    if hasattr(decoder, "parser"):
        return "items", decoder.answer(query, k=k)
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    if SEM_START in query:
        return "text", decoder.answer(messages + [{"role": "user", "content": query}])
    text = query if query.rstrip().endswith(REC) else f"{query.rstrip()} {REC}"
    return "items", decoder.recommend(messages + [{"role": "user", "content": text}], k=k, beam_size=max(20, k))


def answer_rows(decoder, query, k=10):
    """The answer as table rows (rank, item, title, semantic ID, score) or one free-text row;
    score: log P(ID | query) for the ID decoder, cosine + gated weight x P(satisfies) for LM + retrieval."""
    kind, answer = ask(decoder, query, k)
    if kind == "text":
        return [{"rank": 1, "item": "", "title": answer, "semantic ID": "", "score": ""}]
    catalogue = decoder.search.catalogue if hasattr(decoder, "search") else decoder.catalogue
    return [{"rank": rank, "item": rec.item.token, "title": catalogue.title(rec.item),
             "semantic ID": semantic_id_to_string(rec.item.codes), "score": round(rec.score, 3)}
            for rank, rec in enumerate(answer, start=1)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("query", nargs="+")
    args = parser.parse_args(argv)
    decoder = load_answerer(args.model)
    for row in answer_rows(decoder, " ".join(args.query), args.k):
        if not row["item"]:
            print(row["title"])
            continue
        print(f"{row['rank']:2d}. {row['title']}  {row['semantic ID']}  (score {row['score']:.3f}, item {row['item']})")


if __name__ == "__main__":
    main()
