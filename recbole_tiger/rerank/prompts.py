"""Prompts for the reranker: a user's recent items and one candidate, as text.

Every prompt is a *shared part* (the user and their history) followed by a *candidate part*,
so scoring K candidates encodes the history once and only the candidate parts K times.

* sequential: "... bought: A | B | C." + " Next they buy:" + " <candidate title>" (score: mean
  log-probability of the title's tokens)
* direct: "... bought: A | B | C." + " Will they buy <candidate title> next? Answer:" + " yes"/" no"
  (score: log P(yes) - log P(no))
With item features, a placeholder token before the candidate's title in direct prompts carries
its projected feature vector (VIP5's visual token).
"""
import random

from recbole_tiger.semantic_ids.item_text import atomic_item_path, read_item_table

FEATURE_TOKEN = "[ITEM_FEAT]"
YES, NO = " yes", " no"
MAX_TITLE_WORDS = 10
HISTORY_ITEMS = 5
SHARED_TEMPLATES = [
    "user_{user} bought: {history}.",
    "Purchase history of user_{user}: {history}.",
    "user_{user} recently bought {history}.",
]
SEQUENTIAL_TEMPLATES = [" Next they buy:", " The next purchase is:"]
DIRECT_TEMPLATES = [" Will they buy {candidate} next? Answer:", " Is {candidate} their next purchase? Answer:"]


def item_titles(config, item_tokens):
    """Title (else first non-empty field) per internal item id, cut to ``MAX_TITLE_WORDS`` words."""
    table = read_item_table(atomic_item_path(config), item_id_field=config["ITEM_ID_FIELD"])
    titles = []
    for token in item_tokens:
        cells = table.rows.get(str(token))
        text = ""
        if cells is not None:
            named = dict(zip(table.columns, cells))
            text = named.get("title") or named.get("movie_title") or next(
                (c for i, c in enumerate(cells) if i != table.id_column and c.strip()), "")
        titles.append(" ".join(text.split()[:MAX_TITLE_WORDS]) or f"item {token}")
    return titles


def candidate_file_titles(data):
    """``item_titles`` for the dataset a candidates file (``rerank.candidates``) was built on."""
    config = {"data_path": data["data_path"], "dataset": data["dataset"], "ITEM_ID_FIELD": "item_id"}
    return item_titles(config, data["item_tokens"])


def last_items(history, length, n=HISTORY_ITEMS):
    """A user's last ``n`` item ids, oldest first (``history`` [L] padded after ``length``)."""
    return [int(i) for i in history[max(0, int(length) - n): int(length)]]


def target_first_lists(split, n_negatives=None):
    """Per training query (row, [target, the first stage's other candidates in its order]);
    ``n_negatives`` keeps the top-ranked others (None: all). The listwise rerankers train on these."""
    for row in range(len(split["users"])):
        target = int(split["target"][row])
        negatives = [int(c) for c in split["candidates"][row] if int(c) != target][:n_negatives]
        yield row, [target] + negatives


def history_text(history, length, titles):
    """The titles of a user's last ``HISTORY_ITEMS`` items, oldest first, joined by " | "."""
    return " | ".join(titles[i] for i in last_items(history, length))


def shared_text(user, history, length, titles, template=0):
    """The user's part of every prompt: their last ``HISTORY_ITEMS`` items, oldest first."""
    return SHARED_TEMPLATES[template].format(user=int(user), history=history_text(history, length, titles))


def candidate_prompt(task, title, template=0, with_feature=False):
    """(prompt, answer-to-score) of a candidate's part. sequential: (" Next they buy:", " <title>");
    direct: (" Will they buy [ITEM_FEAT] <title> next? Answer:", None) — the answer is " yes"/" no".
    The feature token goes into direct prompts only: in a sequential one it would hand the model
    the very item whose title it must predict."""
    if task == "sequential":
        return SEQUENTIAL_TEMPLATES[template], " " + title
    feature = FEATURE_TOKEN + " " if with_feature else ""
    return DIRECT_TEMPLATES[template].format(candidate=feature + title), None


def training_examples(split, titles, n_negatives=3, seed=0, with_feature=False):
    """From the training queries: per user one sequential example (its target's title) and one
    direct example for the target ("yes") and for ``n_negatives`` other candidates ("no").
    Each example: dict(task, shared, prompt, answer, item); the loss is on ``answer``."""
    rng = random.Random(seed)
    examples = []
    for row, (target, *negatives) in target_first_lists(split):
        shared = shared_text(int(split["users"][row]), split["history"][row], split["length"][row], titles,
                             rng.randrange(len(SHARED_TEMPLATES)))
        prompt, answer = candidate_prompt("sequential", titles[target], rng.randrange(len(SEQUENTIAL_TEMPLATES)))
        examples.append({"task": "sequential", "shared": shared, "prompt": prompt, "answer": answer, "item": target})
        for item, answer in [(target, YES)] + [(n, NO) for n in rng.sample(negatives, min(n_negatives, len(negatives)))]:
            prompt, _ = candidate_prompt("direct", titles[item], rng.randrange(len(DIRECT_TEMPLATES)), with_feature)
            examples.append({"task": "direct", "shared": shared, "prompt": prompt, "answer": answer, "item": item})
    rng.shuffle(examples)
    return examples
