"""Ask a fine-tuned semantic-ID LM for items.

    python -m recbole_tiger.llm.ask --model=saved/llm/amazon-beauty/model "a gentle moisturiser for dry skin"

Prints the top items (title and semantic ID, best first). A question that names a semantic ID
("What is the brand of [SEM_START]...[SEM_END]?") gets a free-text answer instead.
"""
import argparse

from recbole_tiger.llm.base_model import load_finetuned
from recbole_tiger.llm.constrained import SemanticIDDecoder
from recbole_tiger.llm.examples import SYSTEM_PROMPT
from recbole_tiger.llm.sid_text import REC, SEM_START, semantic_id_to_string


def ask(decoder, query, k=10):
    """('items', [Recommendation]) or ('text', answer)."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    if SEM_START in query:
        return "text", decoder.answer(messages + [{"role": "user", "content": query}])
    text = query if query.rstrip().endswith(REC) else f"{query.rstrip()} {REC}"
    return "items", decoder.recommend(messages + [{"role": "user", "content": text}], k=k, beam_size=max(20, k))


def answer_rows(decoder, query, k=10):
    """The answer as table rows (rank, item, title, semantic ID, log p) or one free-text row."""
    kind, answer = ask(decoder, query, k)
    if kind == "text":
        return [{"rank": 1, "item": "", "title": answer, "semantic ID": "", "log p": ""}]
    return [{"rank": rank, "item": rec.item.token, "title": decoder.catalogue.title(rec.item),
             "semantic ID": semantic_id_to_string(rec.codes), "log p": round(rec.score, 3)}
            for rank, rec in enumerate(answer, start=1)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("query", nargs="+")
    args = parser.parse_args(argv)
    model, tokenizer, catalogue = load_finetuned(args.model)
    decoder = SemanticIDDecoder(model, tokenizer, catalogue)
    for row in answer_rows(decoder, " ".join(args.query), args.k):
        if not row["item"]:
            print(row["title"])
            continue
        print(f"{row['rank']:2d}. {row['title']}  {row['semantic ID']}  (log p {row['log p']:.2f}, item {row['item']})")


if __name__ == "__main__":
    main()
