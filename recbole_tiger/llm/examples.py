"""Chat examples from the catalogue: queries that ask for an item (answer: its semantic ID)
and questions about an item's semantic ID (answer: one of its fields).

Training and held-out queries come from disjoint template lists, and held-out queries also
paraphrase the item's text (word subsets, lower case, no brand), so a model that only memorised
the training sentences does not score on them.
"""
import json
import os
import random
import re
from collections import Counter

from recbole_tiger.atomic_io import open_atomic
from recbole_tiger.llm.sid_text import REC, semantic_id_to_string

# short on purpose: every training token costs CPU time (a chat without one gets SmolLM2's longer default)
SYSTEM_PROMPT = "Shop assistant. [REC] asks for an item."

# {title} {brand} {category} (the most specific category) {categories} (all of them)
TRAIN_ID_TEMPLATES = [
    "What is the semantic ID of {title}?",
    "Which item is \"{title}\"?",
    "Find this product: {title}",
    "{title}",
    "I'm looking for {title} by {brand}.",
    "Recommend the {brand} product {title}.",
    "Show me the {category} item called {title}.",
    "I want something from {brand} in {categories}: {title}",
]
HELDOUT_ID_TEMPLATES = [
    "Can you find me {title_words}?",
    "do you have {lower_title}",
    "I need the {brand} one, {title_words}.",
    "Looking for {category}: {title_no_brand}",
]
TRAIN_ATTRIBUTE_TEMPLATES = [
    "What is the {field} of {sid}?",
    "Tell me the {field} of item {sid}.",
    "{sid} has which {field}?",
]
HELDOUT_ATTRIBUTE_TEMPLATES = [
    "Please give the {field} for {sid}.",
]
TASKS = ("predict_semantic_id", "predict_attribute")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
MAX_WORDS = 24          # long Amazon titles (some are 100+ words of keywords) cut to this many words


def short(text):
    return " ".join(text.split()[:MAX_WORDS])


def item_slots(catalogue, item, rng):
    """The values templates can use; '' where the item lacks the field."""
    title = short(catalogue.title(item))
    brand = item.fields.get("brand", "")
    categories = item.fields.get("categories", "") or item.fields.get("category", "")
    parts = [p.strip() for p in categories.split(",") if p.strip()]
    words = title.split()
    keep = sorted(rng.sample(range(len(words)), max(1, round(len(words) * 0.7)))) if words else []
    no_brand = " ".join(w for w in words if brand and w.lower() != brand.lower()) if brand else ""
    return {
        "title": title, "brand": brand, "categories": ", ".join(parts), "category": parts[-1] if parts else "",
        "title_words": " ".join(words[i] for i in keep), "lower_title": title.lower(),
        "title_no_brand": no_brand if no_brand and no_brand != title else "",
    }


def usable_templates(templates, slots):
    return [t for t in templates if all(slots.get(name) for name in _PLACEHOLDER.findall(t) if name not in ("sid", "field"))]


def chat(user, assistant):
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user},
            {"role": "assistant", "content": assistant}]


def id_examples(catalogue, item, templates, n, rng):
    slots = item_slots(catalogue, item, rng)
    choices = usable_templates(templates, slots)
    if not choices:
        return []
    sid = semantic_id_to_string(item.codes)
    picked = rng.sample(choices, n) if n <= len(choices) else [rng.choice(choices) for _ in range(n)]
    return [{"task": "predict_semantic_id", "item": item.token,
             "messages": chat(f"{t.format(**slots)} {REC}", sid)} for t in picked]


def attribute_examples(catalogue, item, templates, n, rng, fields=None):
    sid = semantic_id_to_string(item.codes)
    present = [f for f in (fields or catalogue.field_names) if item.fields.get(f)]
    out = []
    for _ in range(n if present else 0):
        name = rng.choice(present)
        question = rng.choice(templates).format(field=name.replace("_", " "), sid=sid)
        out.append({"task": "predict_attribute", "item": item.token, "field": name,
                    "messages": chat(question, short(item.fields[name]))})
    return out


def build_examples(catalogue, items, tasks=TASKS, num_examples_per_item=4, seed=0, heldout=False,
                   attribute_examples_per_item=None):
    """``num_examples_per_item`` examples per item and task (``attribute_examples_per_item`` for
    ``predict_attribute`` if given), from the training templates, or the held-out ones with
    ``heldout=True``; shuffled."""
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown task(s) {sorted(unknown)}; known: {list(TASKS)}")
    rng = random.Random(seed)
    id_templates = HELDOUT_ID_TEMPLATES if heldout else TRAIN_ID_TEMPLATES
    attr_templates = HELDOUT_ATTRIBUTE_TEMPLATES if heldout else TRAIN_ATTRIBUTE_TEMPLATES
    examples = []
    for item in items:
        if "predict_semantic_id" in tasks:
            examples += id_examples(catalogue, item, id_templates, num_examples_per_item, rng)
        if "predict_attribute" in tasks:
            n = num_examples_per_item if attribute_examples_per_item is None else attribute_examples_per_item
            examples += attribute_examples(catalogue, item, attr_templates, n, rng)
    rng.shuffle(examples)
    return examples


def split_examples(examples, valid_ratio=0.05, seed=0):
    """(train, valid): a random ``valid_ratio`` of the examples (same templates, unseen sentences)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_valid = max(1, round(len(examples) * valid_ratio)) if len(examples) > 1 else 0
    return [examples[i] for i in order[n_valid:]], [examples[i] for i in order[:n_valid]]


def interaction_counts(catalogue):
    """Training-set popularity of every item: its rows in ``<dataset>.inter`` beside the ``.item``
    file (empty Counter without the file)."""
    item_file = catalogue.item_file
    inter = item_file[: -len(".item")] + ".inter" if item_file.endswith(".item") else ""
    counts = Counter()
    if not os.path.isfile(inter):
        return counts
    with open(inter, encoding="utf-8-sig") as f:
        header = [h.split(":")[0] for h in f.readline().rstrip("\r\n").split("\t")]
        if catalogue.item_id_field not in header:
            return counts
        col = header.index(catalogue.item_id_field)
        for line in f:
            cells = line.rstrip("\r\n").split("\t")
            if len(cells) > col:
                counts[cells[col]] += 1
    return counts


def select_items(catalogue, n_items=None, seed=0):
    """The items to train on: all (``None``), or the ``n_items`` most interacted with (ties and
    catalogues without interactions: a seeded random choice)."""
    items = list(catalogue.items)
    if n_items is None or n_items >= len(items):
        return items
    counts = interaction_counts(catalogue)
    rng = random.Random(seed)
    tiebreak = {item.token: rng.random() for item in items}
    items.sort(key=lambda it: (-counts.get(it.token, 0), tiebreak[it.token]))
    return items[:n_items]


def write_jsonl(path, examples):
    """All or nothing: a temp file renamed into place."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open_atomic(path, "w") as f:
        for example in examples:
            f.write(json.dumps(example, ensure_ascii=False) + "\n")


def jsonl_lines(path):
    """(line number, parsed object) for every non-blank line; a line that is not JSON is an error naming it."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not JSON ({e.msg})") from None


def read_jsonl(path):
    examples = []
    for line_no, example in jsonl_lines(path):
        roles = [m.get("role") for m in example.get("messages", [])] if isinstance(example, dict) else None
        if not roles or roles[-1] != "assistant":
            raise ValueError(f"{path}:{line_no}: an example needs 'messages' ending with an assistant message")
        examples.append(example)
    return examples
