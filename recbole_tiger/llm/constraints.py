"""Constraint requests ("a face moisturizer by Olay"): the LM's training data and an evaluation
set, both built from the ``.item`` fields of the whole catalogue.

    python -m recbole_tiger.llm.constraints --dataset=amazon-beauty --data_path=../shared/data/atomic \\
        --sid_collaborative_weight=0 --out=saved/llm/amazon-beauty-constraints

A *constraint* is a brand (a value of the brand field) and a category (one name of the category
list, at any level), either of them possibly ``any``; an item satisfies it when its brand is the
brand (case and HTML entities ignored) and the category is among its categories. The LM learns
to read a request into its constraint, written ``brand: <value>\\ncategory: <value>``; decoding
is constrained to catalogue values (``constrained.ConstraintParser``) and embedding search orders
the items that satisfy it (``search.CatalogueSearch``).

Request types, each from its own training and held-out template lists: brand + product type,
product type alone, brand alone (the product type is a category name in words, "Creams &
Moisturizers" -> "moisturizer", or with its parent, "face moisturizer"); and, for training only,
requests built from an item's title (its brand and the product words of its title, answer: its
most specific category) and the title paraphrases of ``examples.py``.

Splits: the (brand, category) combinations are split at random into train / valid / test, so a
valid or test request never names a combination (or uses a template) that training saw; valid
chooses how the LM and the embedding search are mixed, test is reported. Constraint requests
come in two wordings: the category said in words of its name ('moisturizer', as the training
templates say it) and the product said as item titles say it ('flat iron' for 'Flattening
Irons', ``title_worded_requests``). Title-paraphrase queries (``examples.HELDOUT_ID_TEMPLATES``, relevance: the item itself) are the second
evaluation, so a system that helps constraint requests must not hurt plain item lookups.

Writes ``train.jsonl`` / ``valid.jsonl`` (chat examples, for ``finetune``), ``queries-valid.jsonl``
/ ``queries-test.jsonl`` (``{"kind": "constraint", "wording", "query", "brand", "category"}`` or
``{"kind": "paraphrase", "query", "item"}``) and ``catalogue.json``.
"""
import argparse
import html
import json
import logging
import os
import random
import re
from collections import Counter
from dataclasses import dataclass

from recbole_tiger.atomic_io import open_atomic
from recbole_tiger.llm.catalogue import load_catalogue
from recbole_tiger.llm.examples import (HELDOUT_ID_TEMPLATES, TRAIN_ID_TEMPLATES, item_slots, jsonl_lines,
                                        usable_templates, write_jsonl)

ANY = "any"
CONSTRAINT_SYSTEM_PROMPT = "Shop assistant. Read the request: brand and category."
BRAND_FIELDS = ("brand", "manufacturer", "maker", "label")
CATEGORY_FIELDS = ("categories", "category", "genre", "genres", "class")

# {brand} {product}: a category in words
TRAIN_TEMPLATES = {
    "brand_product": ["a {product} by {brand}", "{brand} {product}", "I want a {brand} {product}",
                      "show me {product} from {brand}", "any {product} made by {brand}?",
                      "{product}, brand {brand}"],
    "product": ["a {product}", "I need a {product}", "show me {product} options", "{product}",
                "recommend a good {product}"],
    "brand": ["anything by {brand}", "{brand} products", "show me what {brand} sells", "items from {brand}"],
}
HELDOUT_TEMPLATES = {
    "brand_product": ["do you sell {product} made by {brand}?", "looking for a {product} from {brand}",
                      "I'd like {brand}'s {product}", "{product} please, {brand} brand"],
    "product": ["what {product} do you recommend?", "looking for a {product}", "do you have a nice {product}?"],
    "brand": ["what does {brand} make?", "I like {brand}, what do you have?"],
}
_UNIT_WORDS = {"oz", "ounce", "ounces", "fl", "ml", "g", "lb", "lbs", "inch", "inches", "pack", "count", "ct", "pcs",
               "piece", "pieces", "of", "and", "with", "for", "the", "a", "in", "new", "by"}
TITLE_TEMPLATES = ["{brand} {words}", "a {words} by {brand}", "{words}", "I need {words}"]


def normalise(text):
    return " ".join(html.unescape(text).casefold().split())


def split_categories(value):
    """'Makeup, Nails, Nail Polish' -> ['Makeup', 'Nails', 'Nail Polish']; a list without commas
    (ml-100k's 'Action Adventure') splits on spaces."""
    value = html.unescape(value or "").strip()
    parts = value.split(",") if "," in value else value.split()
    return [p.strip() for p in parts if p.strip()]


@dataclass
class Facets:
    """What constraints can name: per item its brand and categories, and the value lists."""
    brand_field: str            # '' when the catalogue has none
    category_field: str         # '' when the catalogue has none
    brands: list                # item index -> brand as written (entities decoded), '' if none
    categories: list            # item index -> [category names, most general first]
    brand_values: list          # every brand, sorted
    category_values: list       # every category name, sorted

    @classmethod
    def of(cls, catalogue):
        names = [n.lower() for n in catalogue.field_names]
        brand_field = next((catalogue.field_names[names.index(f)] for f in BRAND_FIELDS if f in names), "")
        category_field = next((catalogue.field_names[names.index(f)] for f in CATEGORY_FIELDS if f in names), "")
        if not brand_field and not category_field:
            raise ValueError(f"{catalogue.item_file}: constraint requests need a brand field ({', '.join(BRAND_FIELDS)}) "
                             f"or a category field ({', '.join(CATEGORY_FIELDS)}); its fields are {catalogue.field_names}")
        brands = [" ".join(html.unescape(it.fields.get(brand_field, "")).split()) if brand_field else ""
                  for it in catalogue.items]
        categories = [split_categories(it.fields.get(category_field, "")) if category_field else []
                      for it in catalogue.items]
        return cls(brand_field, category_field, brands, categories, sorted({b for b in brands if b}),
                   sorted({c for cs in categories for c in cs}))

    def satisfies(self, index, brand, category):
        """Does item ``index`` satisfy (brand, category)? ``ANY`` or None matches everything."""
        if brand not in (None, ANY) and normalise(self.brands[index]) != normalise(brand):
            return False
        return category in (None, ANY) or category in self.categories[index]

    def matching(self, brand, category):
        return [i for i in range(len(self.brands)) if self.satisfies(i, brand, category)]


def answer_text(brand, category):
    """The LM's answer for a constraint; ``constrained.ConstraintParser`` decodes the same layout."""
    return f"brand: {brand or ANY}\ncategory: {category or ANY}"


def singular(word):
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text):
    """A text's words, casefolded and singular: 'Creams & Moisturizers' -> ['cream', 'moisturizer']."""
    return [singular(w) for w in re.findall(r"[\w']+", normalise(text))]


def category_phrase(path, position, rng):
    """Category ``path[position]`` as a shopper says it: 'Creams & Moisturizers' -> 'cream' or
    'moisturizer'; sometimes with its parent ('face moisturizer'); an audience category
    ("Men's") as its parent 'for men' ('fragrance for men'). None if it cannot be said."""
    name = path[position]
    parent = path[position - 1] if position > 0 else ""
    if name.endswith("'s"):
        return f"{category_phrase(path, position - 1, rng)} for {name[:-2].lower()}" if parent else None
    parts = [p for p in re.split(r"\s*(?:&|/|\band\b)\s*", name) if p.strip()]
    if not parts:
        return None
    words = rng.choice(parts).lower().split()
    words[-1] = singular(words[-1])
    phrase = " ".join(words)
    if parent and len(parent.split()) == 1 and position > 1 and rng.random() < 0.3:
        phrase = f"{singular(parent.lower())} {phrase}"
    return phrase


def title_product_words(title, brand, rng):
    """The product words of a title: before its first comma/dash/bracket, brand removed, the last
    1-3 words ('OPI Nail Lacquer, Simmer and Shimmer' -> 'nail lacquer')."""
    head = re.split(r"\s[-(|]|,|\(", title)[0]
    brand_words = set(normalise(brand).split())
    words = [w for w in head.split() if normalise(w) not in brand_words and not re.search(r"\d", w)
             and normalise(w).strip(".") not in _UNIT_WORDS and len(w) > 1]
    if not words:
        return None
    return " ".join(words[-rng.randint(1, min(3, len(words))):]).lower()


def combinations(facets, min_items=5):
    """Every (brand, category) with at least ``min_items`` items, ``(ANY, category)`` and
    ``(brand, ANY)`` alike, as {key: (item count, a path containing the category, its position)}."""
    count, path_of = Counter(), {}
    for brand, path in zip(facets.brands, facets.categories):
        for position, category in enumerate(path):
            path_of.setdefault(category, (path, position))
            count[(ANY, category)] += 1
            if brand:
                count[(brand, category)] += 1
        if brand:
            count[(brand, ANY)] += 1
    return {key: (n,) + (path_of[key[1]] if key[1] != ANY else ((), -1))
            for key, n in count.items() if n >= min_items}


def _constraint_request(key, info, templates, rng):
    brand, category = key
    kind = "brand" if category == ANY else ("product" if brand == ANY else "brand_product")
    product = category_phrase(info[1], info[2], rng) if category != ANY else ""
    if kind != "brand" and not product:
        return None
    return rng.choice(templates[kind]).format(brand=brand, product=product)


def title_worded_requests(catalogue, facets, held, combos, rng, n, min_head_count=10):
    """Held-out (brand, category) requests that say the product as item titles do, not as the
    category is named: 'looking for a flat iron from Conair' for (Conair, Flattening Irons). The
    product words come from the title of one item of the combination; kept only when their last
    word ends the product words of at least ``min_head_count`` titles (a product noun: 'iron',
    'lacquer', 'sunscreen'), they are letters only, and no word of them is a word of the category's name (string
    matching of names would find those)."""
    product_of = [title_product_words(catalogue.title(it), brand, random.Random(0)) or ""
                  for it, brand in zip(catalogue.items, facets.brands)]
    heads = Counter(p.split()[-1] for p in product_of if p)
    members = {}
    for index, (brand, path) in enumerate(zip(facets.brands, facets.categories)):
        for category in path:
            if brand and (brand, category) in held:
                members.setdefault((brand, category), []).append(index)
    rows = []
    for key in held:
        if len(rows) >= n or key not in members:
            continue
        product = title_product_words(catalogue.title(catalogue.items[rng.choice(members[key])]), key[0], rng)
        if (not product or not re.fullmatch(r"[a-z][a-z' -]*[a-z]", product) or heads[product.split()[-1]] < min_head_count
                or set(words(key[1])) & set(words(product))):
            continue
        rows.append({"kind": "constraint", "wording": "title words",
                     "query": rng.choice(HELDOUT_TEMPLATES["brand_product"]).format(brand=key[0], product=product),
                     "brand": key[0], "category": key[1], "relevant": combos[key][0]})
    return rows


def build_constraint_data(catalogue, out, seed=0, min_items=5, requests_per_combination=2, title_requests=4000,
                          paraphrase_requests=1000, eval_queries=300, split=(0.7, 0.15, 0.15), valid_ratio=0.05,
                          fresh_test=0):
    """Write the files of the module docstring into ``out``; returns a summary. ``fresh_test`` = n
    > 0 writes only ``queries-test-fresh<n>.jsonl`` (``fresh_test_queries``) beside them."""
    rng = random.Random(seed)
    facets = Facets.of(catalogue)
    combos = combinations(facets, min_items)
    keys = sorted(combos)
    rng.shuffle(keys)
    n_train, n_valid = round(len(keys) * split[0]), round(len(keys) * split[1])
    part = {k: "train" for k in keys[:n_train]}
    part.update({k: "valid" for k in keys[n_train:n_train + n_valid]})
    part.update({k: "test" for k in keys[n_train + n_valid:]})

    def chat(query, brand, category):
        return {"task": "predict_constraints", "messages": [
            {"role": "system", "content": CONSTRAINT_SYSTEM_PROMPT}, {"role": "user", "content": query},
            {"role": "assistant", "content": answer_text(brand, category)}]}

    def brand_allowed(brand, path):
        """A training answer may name the brand only where no (brand, category) of the path is held out."""
        return bool(brand) and all(part.get((brand, c), "train") == "train" for c in path)

    examples = []
    for key in keys:
        if part[key] != "train":
            continue
        for _ in range(requests_per_combination):
            query = _constraint_request(key, combos[key], TRAIN_TEMPLATES, rng)
            if query:
                examples.append(chat(query, *key))
    # requests built from item titles: product words of real items -> their most specific category
    # (without the brand when the item's (brand, category) combination is held out)
    order = list(range(len(catalogue.items)))
    rng.shuffle(order)
    for index in order[:title_requests]:
        path, brand = facets.categories[index], facets.brands[index]
        words = title_product_words(catalogue.title(catalogue.items[index]), brand, rng)
        if not words or not path:
            continue
        templates = TITLE_TEMPLATES if brand_allowed(brand, path) else [t for t in TITLE_TEMPLATES if "{brand}" not in t]
        template = rng.choice(templates)
        examples.append(chat(template.format(brand=brand, words=words),
                             brand if "{brand}" in template else ANY, path[-1]))
    # title paraphrases (the item lookups of examples.py): brand when the request names it
    lookups = {"valid": [], "test": []}
    for n, index in enumerate(order[title_requests:title_requests + paraphrase_requests + 2 * eval_queries]):
        item, path, brand = catalogue.items[index], facets.categories[index], facets.brands[index]
        slots = item_slots(catalogue, item, rng)
        if n < paraphrase_requests:
            choices = usable_templates(TRAIN_ID_TEMPLATES, slots)
            if choices and path:
                query = rng.choice(choices).format(**slots)
                named = brand_allowed(brand, path) and normalise(brand) in normalise(query)
                if named or not brand or normalise(brand) not in normalise(query):
                    examples.append(chat(query, brand if named else ANY, path[-1]))
            continue
        choices = usable_templates(HELDOUT_ID_TEMPLATES, slots)
        if choices:
            which = "valid" if n < paraphrase_requests + eval_queries else "test"
            lookups[which].append({"kind": "paraphrase", "query": rng.choice(choices).format(**slots),
                                   "item": item.token})
    rng.shuffle(examples)
    if fresh_test:
        rows = fresh_test_queries(catalogue, facets, [k for k in keys if part[k] == "test"], combos,
                                  order[title_requests + paraphrase_requests + 2 * eval_queries:], examples,
                                  [os.path.join(out, "queries-valid.jsonl"), os.path.join(out, "queries-test.jsonl")]
                                  + [os.path.join(out, f"queries-test-fresh{n}.jsonl") for n in range(1, fresh_test)],
                                  f"{seed}-fresh-{fresh_test}", eval_queries)
        path = os.path.join(out, f"queries-test-fresh{fresh_test}.jsonl")
        write_jsonl(path, rows)
        return {"fresh_test": path, "queries": dict(Counter(f"{r['kind']} ({r['wording']})" if "wording" in r
                                                           else r["kind"] for r in rows))}
    n_lm_valid = max(1, round(len(examples) * valid_ratio))
    queries = {}
    for which in ("valid", "test"):
        held = [k for k in keys if part[k] == which]
        rows = []
        for key in held[:eval_queries]:
            query = _constraint_request(key, combos[key], HELDOUT_TEMPLATES, rng)
            if query:
                rows.append({"kind": "constraint", "wording": "category name", "query": query, "brand": key[0],
                             "category": key[1], "relevant": combos[key][0]})
        # its own random stream: adding these requests leaves the rest of the data as it was
        title_rng = random.Random(f"{seed}-title-worded-{which}")
        queries[which] = rows + title_worded_requests(catalogue, facets, held, combos, title_rng, eval_queries) \
            + lookups[which]
    write_jsonl(os.path.join(out, "train.jsonl"), examples[n_lm_valid:])
    write_jsonl(os.path.join(out, "valid.jsonl"), examples[:n_lm_valid])
    for which, rows in queries.items():
        write_jsonl(os.path.join(out, f"queries-{which}.jsonl"), rows)
    kinds = lambda rows: dict(Counter(f"{r['kind']} ({r['wording']})" if "wording" in r else r["kind"] for r in rows))
    summary = {"artifact": os.path.abspath(catalogue.artifact_path), "item_file": os.path.abspath(catalogue.item_file),
               "task": "predict_constraints", "n_catalogue_items": len(catalogue.items),
               "brand_field": facets.brand_field, "category_field": facets.category_field,
               "n_brands": len(facets.brand_values), "n_categories": len(facets.category_values),
               "combinations": dict(Counter(part.values())), "min_items": min_items,
               "n_train": len(examples) - n_lm_valid, "n_valid": n_lm_valid,
               "queries_valid": kinds(queries["valid"]), "queries_test": kinds(queries["test"]), "seed": seed,
               "n_items_trained": len(catalogue.items)}
    with open_atomic(os.path.join(out, "catalogue.json")) as f:
        json.dump(summary, f, indent=1)
    return summary


def fresh_test_queries(catalogue, facets, held, combos, unused_items, examples, query_files, stream, n):
    """A new test set for a model whose earlier test sets have been looked at: the test split's
    (brand, category) combinations asked again in newly drawn wordings, and title paraphrases of
    items that neither training nor ``query_files`` used (from ``unused_items``), from the random
    stream ``stream``. A request whose text is a training request or one of ``query_files``' is
    drawn again (up to 5 times) or left out."""
    seen = {normalise(e["messages"][1]["content"]) for e in examples}
    asked_items = set()
    for path in query_files:
        if os.path.exists(path):
            earlier = read_queries(path)
            seen |= {normalise(q["query"]) for q in earlier}
            asked_items |= {q["item"] for q in earlier if q["kind"] == "paraphrase"}
    unused_items = [i for i in unused_items if catalogue.items[i].token not in asked_items]
    rng = random.Random(stream)

    def new(draw):
        for _ in range(5):
            query = draw()
            if query and normalise(query) not in seen:
                seen.add(normalise(query))
                return query
        return None

    rows = []
    for key in held[:n]:
        query = new(lambda: _constraint_request(key, combos[key], HELDOUT_TEMPLATES, rng))
        if query:
            rows.append({"kind": "constraint", "wording": "category name", "query": query, "brand": key[0],
                         "category": key[1], "relevant": combos[key][0]})
    asked = set()    # title-worded requests: one per combination, the first new one of 5 draws
    for draw in range(5):
        for row in title_worded_requests(catalogue, facets, held, combos, random.Random(f"{stream}-title-{draw}"), n):
            key = (row["brand"], row["category"])
            if key not in asked and normalise(row["query"]) not in seen and len(asked) < n:
                asked.add(key)
                seen.add(normalise(row["query"]))
                rows.append(row)
    lookups = []
    for index in unused_items:
        if len(lookups) >= n:
            break
        item = catalogue.items[index]
        slots = item_slots(catalogue, item, rng)
        choices = usable_templates(HELDOUT_ID_TEMPLATES, slots)
        query = new(lambda: rng.choice(choices).format(**slots)) if choices else None
        if query:
            lookups.append({"kind": "paraphrase", "query": query, "item": item.token})
    return rows + lookups


def read_queries(path):
    """The evaluation queries of ``queries-<split>.jsonl``; a malformed line is an error naming it."""
    rows = []
    for line_no, row in jsonl_lines(path):
        need = {"constraint": ("query", "brand", "category"), "paraphrase": ("query", "item")}.get(
            row.get("kind") if isinstance(row, dict) else None)
        if need is None or any(k not in row for k in need):
            raise ValueError(f"{path}:{line_no}: a query needs kind 'constraint' (query, brand, category) "
                             f"or 'paraphrase' (query, item), got {sorted(row) if isinstance(row, dict) else row!r}")
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--artifact", default=None, help="a semantic-ID artifact (.pt); default: the dataset's")
    parser.add_argument("--min_items", type=int, default=5, help="combinations with fewer items are not asked for")
    parser.add_argument("--requests_per_combination", type=int, default=2)
    parser.add_argument("--title_requests", type=int, default=4000, help="training requests built from item titles")
    parser.add_argument("--paraphrase_requests", type=int, default=1000, help="training title paraphrases")
    parser.add_argument("--eval_queries", type=int, default=300, help="per split and kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh_test", type=int, default=0,
                        help="n > 0: write only queries-test-fresh<n>.jsonl, a new test set for the same data")
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from recbole_tiger.llm.data import artifact_from_cli

    artifact = artifact_from_cli(parser, args.artifact, rest)
    summary = build_constraint_data(load_catalogue(artifact, strict=False), args.out, args.seed, args.min_items,
                                    args.requests_per_combination, args.title_requests, args.paraphrase_requests,
                                    args.eval_queries, fresh_test=args.fresh_test)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
