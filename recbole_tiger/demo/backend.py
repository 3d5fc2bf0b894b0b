"""What the demo shows, computed without any UI: a checkpoint's recommendations for a user,
its semantic IDs, and the results tables. The Gradio app (``app.py``) only lays these out.

Every public method returns plain data (lists of dicts, pandas frames, strings) and raises
:class:`DemoError` with a readable message for bad input; the app shows that message.
"""
import os
from collections import Counter

import pandas as pd
import torch

from recbole_tiger.semantic_ids.item_text import atomic_item_path, read_item_table


class DemoError(ValueError):
    """Bad input or an unusable checkpoint, in words the page can show."""


class DemoBackend:
    def __init__(self, model_file, baseline_file=None, results_dir="results"):
        from recbole_tiger.quick_start import load_data_and_model

        if not os.path.isfile(model_file):
            raise DemoError(f"No checkpoint at {model_file}: pass --model_file=saved/TIGER-….pth.")
        self.config, self.model, self.dataset, _, _, self.test_data = load_data_and_model(model_file)
        if not hasattr(self.model, "item_codes") or getattr(self.dataset, "semantic_ids", None) is None:
            raise DemoError(f"{model_file} holds a {self.config['model']} model without semantic IDs; the demo "
                            "needs a TIGER checkpoint (--model_file), other models go in --baseline_file.")
        self.model.eval()
        self.semantic_ids = self.dataset.semantic_ids
        self.results_dir = results_dir
        self.item_tokens = list(self.dataset.field2id_token[self.dataset.iid_field])
        self.user_tokens = list(self.dataset.field2id_token[self.dataset.uid_field])
        self.user_index = {t: i for i, t in enumerate(self.user_tokens)}
        self._load_item_text()
        self._index_test_rows()
        self.baseline, self.baseline_name = None, None
        if baseline_file:
            self._load_baseline(baseline_file)

    # ------------------------------------------------------------------ loading
    def _load_item_text(self):
        table = read_item_table(atomic_item_path(self.config), self.config["ITEM_ID_FIELD"] or "item_id",
                                self.config["field_separator"] or "\t")
        columns = table.columns

        def cell(token, name):
            row = table.rows.get(token)
            return row[columns.index(name)] if row is not None and name in columns else ""

        self.titles = [cell(t, "title") or str(t) for t in self.item_tokens]
        self.categories = [cell(t, "categories") for t in self.item_tokens]

    def _index_test_rows(self):
        """user id -> (history [N], length, held-out item) from the test split."""
        inter = self.test_data._dataset.inter_feat
        seq_field = self.config["ITEM_ID_FIELD"] + self.config["LIST_SUFFIX"]
        self._history = inter[seq_field]
        self._length = inter[self.config["ITEM_LIST_LENGTH_FIELD"]]
        self._target = inter[self.config["ITEM_ID_FIELD"]]
        self._row_of_user = {int(u): r for r, u in enumerate(inter[self.config["USER_ID_FIELD"]].tolist())}

    def _load_baseline(self, baseline_file):
        from recbole_tiger.compat import load_checkpoint
        from recbole_tiger.utils import get_model

        if not os.path.isfile(baseline_file):
            raise DemoError(f"No baseline checkpoint at {baseline_file}.")
        checkpoint = load_checkpoint(baseline_file)
        config = checkpoint["config"]
        config.compatibility_settings()
        if config["dataset"] != self.config["dataset"]:
            raise DemoError(f"The baseline {baseline_file} was trained on {config['dataset']}, the TIGER "
                            f"checkpoint on {self.config['dataset']}.")
        config["single_spec"], config["device"] = True, torch.device("cpu")
        model = get_model(config["model"])(config, self.test_data._dataset)
        model.load_state_dict(checkpoint["state_dict"])
        model.load_other_parameter(checkpoint.get("other_parameter"))
        self.baseline, self.baseline_name = model.eval(), config["model"]

    # ------------------------------------------------------------------ user view
    def users(self, limit=None):
        """Users of the test split (their dataset tokens), in id order."""
        users = [self.user_tokens[u] for u in sorted(self._row_of_user)]
        return users[:limit] if limit else users

    def sid(self, item):
        return "-".join(str(c) for c in self.model.item_codes[item].tolist())

    def item_row(self, item, **extra):
        return {"item": self.item_tokens[item], "title": self.titles[item], "semantic ID": self.sid(item), **extra}

    def _interaction(self, user_token=None, item_tokens=None):
        """The test row of a user, or a history typed as item tokens (no held-out item)."""
        from recbole.data.interaction import Interaction

        n = self.model.max_seq_length
        if item_tokens is not None:
            index = {t: i for i, t in enumerate(self.item_tokens)}
            unknown = [t for t in item_tokens if t not in index]
            if not item_tokens or unknown:
                raise DemoError(f"Unknown item id(s): {', '.join(unknown) or '(none given)'}; type item ids of "
                                f"the dataset, e.g. {', '.join(self.item_tokens[1:4])}.")
            items = [index[t] for t in item_tokens][-n:]
            history = torch.zeros(1, n, dtype=torch.long)
            history[0, : len(items)] = torch.tensor(items)
            length, target, user = torch.tensor([len(items)]), None, torch.tensor([0])
        else:
            uid = self.user_index.get(str(user_token).strip())
            if uid is None or uid not in self._row_of_user:
                raise DemoError(f"Unknown user {user_token!r}: pick one of the test users "
                                f"(e.g. {', '.join(self.users(3))}).")
            row = self._row_of_user[uid]
            history, length = self._history[row : row + 1], self._length[row : row + 1]
            target, user = int(self._target[row]), torch.tensor([uid])
        inter = Interaction({self.config["USER_ID_FIELD"]: user,
                             self.config["ITEM_ID_FIELD"] + self.config["LIST_SUFFIX"]: history,
                             self.config["ITEM_LIST_LENGTH_FIELD"]: length})
        return inter, target

    @torch.no_grad()
    def recommend(self, user_token=None, item_tokens=None, k=10):
        """{'history': rows, 'target': row or None, 'tiger': rows, 'baseline': rows or None,
        'baseline_name': str} for a test user or a typed history. TIGER's rows carry the beam's
        log-probability of the item's ID; a row is marked where it is the held-out item."""
        inter, target = self._interaction(user_token, item_tokens)
        history = [int(i) for i in inter[self.config["ITEM_ID_FIELD"] + self.config["LIST_SUFFIX"]][0] if i > 0]
        out = {"history": [self.item_row(i, position=p + 1) for p, i in enumerate(history)],
               "target": self.item_row(target) if target is not None else None,
               "tiger": self._top(self.model, inter, k, target, "log-prob"),
               "baseline": None, "baseline_name": self.baseline_name}
        if self.baseline is not None:
            out["baseline"] = self._top(self.baseline, inter, k, target, "score")
        return out

    def _top(self, model, inter, k, target, score_name):
        inter = self._fit_history(model, inter)
        scores = model.full_sort_predict(inter)
        scores = scores.view(1, -1) if scores.dim() == 1 else scores
        scores[:, 0] = -float("inf")
        values, items = scores[0].topk(k)
        return [self.item_row(int(i), rank=r + 1, **{score_name: round(float(v), 4)},
                              **{"held-out item": "✔" if int(i) == target else ""})
                for r, (v, i) in enumerate(zip(values, items)) if torch.isfinite(v)]

    def _fit_history(self, model, inter):
        """The same history for a model with another MAX_ITEM_LIST_LENGTH: its most recent items."""
        from recbole.data.interaction import Interaction

        seq_field = self.config["ITEM_ID_FIELD"] + self.config["LIST_SUFFIX"]
        len_field = self.config["ITEM_LIST_LENGTH_FIELD"]
        history, length = inter[seq_field], inter[len_field]
        n = model.max_seq_length
        if history.shape[1] == n:
            return inter
        items = history[0, : int(length[0])][-n:]
        fitted = torch.zeros(1, n, dtype=torch.long)
        fitted[0, : len(items)] = items
        return Interaction({**inter.interaction, seq_field: fitted, len_field: torch.tensor([len(items)])})

    # ------------------------------------------------------------------ semantic-ID view
    def codebook_frame(self):
        """Usage and perplexity per quantised level (from the artifact's diagnostics)."""
        stats = self.semantic_ids.stats
        return pd.DataFrame({"level": [str(i + 1) for i in range(len(stats["usage"]))],
                             "usage": stats["usage"], "perplexity": stats["perplexity"]})

    def collision_frame(self):
        """How many items share each full prefix (collision-group sizes), as a histogram."""
        codes = self.semantic_ids.codes[1:]
        n_levels = codes.shape[1] - int(bool(self.semantic_ids.dedup))
        _, counts = torch.unique(codes[:, :n_levels], dim=0, return_counts=True)
        sizes = Counter(counts.tolist())
        return pd.DataFrame({"items per prefix": [str(s) for s in sorted(sizes)],
                             "prefixes": [sizes[s] for s in sorted(sizes)]})

    def summary(self):
        from recbole_tiger.semantic_ids.diagnostics import format_stats

        return f"Artifact: {self.semantic_ids.artifact_path}\n\n" + format_stats(self.semantic_ids.stats)

    def items_with_prefix(self, prefix, limit=50):
        """Items whose semantic ID starts with ``prefix`` ("12" or "12-7")."""
        try:
            codes = [int(c) for c in str(prefix).replace(" ", "").split("-") if c != ""]
        except ValueError:
            raise DemoError(f"Prefix {prefix!r}: type codes separated by '-', e.g. 12 or 12-7.") from None
        if not codes or len(codes) > self.semantic_ids.codes.shape[1]:
            raise DemoError(f"Prefix {prefix!r}: give 1 to {self.semantic_ids.codes.shape[1]} codes, e.g. 12-7.")
        match = (self.semantic_ids.codes[:, : len(codes)] == torch.tensor(codes)).all(1)
        items = match.nonzero()[:, 0].tolist()
        return [self.item_row(i, categories=self.categories[i]) for i in items[:limit]], len(items)

    def category_agreement_frame(self, top=20):
        """Per first-level code: items, their most common top category and its share."""
        first = self.semantic_ids.codes[1:, 0].tolist()
        top_category = [(c.split(",")[0].strip() if c else "") for c in self.categories[1:]]
        groups = {}
        for code, cat in zip(first, top_category):
            groups.setdefault(code, Counter())[cat] += 1
        rows = []
        for code, cats in groups.items():
            cat, n = cats.most_common(1)[0]
            total = sum(cats.values())
            rows.append({"first code": code, "items": total, "most common category": cat,
                         "share": round(n / total, 3)})
        frame = pd.DataFrame(rows).sort_values("items", ascending=False)
        return frame.head(top).reset_index(drop=True)

    # ------------------------------------------------------------------ results view
    def results(self):
        """(markdown of results/<dataset>.md or a note, path of its .png or None)."""
        base = os.path.join(self.results_dir, self.config["dataset"])
        if not os.path.isfile(base + ".md"):
            return f"No benchmark results for {self.config['dataset']} in {self.results_dir}/ yet.", None
        with open(base + ".md", encoding="utf-8") as f:
            text = f.read()
        return text, base + ".png" if os.path.isfile(base + ".png") else None
