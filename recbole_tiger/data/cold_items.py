"""``cold_item_ratio``: the cold-start protocol of the TIGER paper, for every model.

A fraction of the items that are some user's test target (``cold_item_ratio`` of the distinct
test items, drawn with ``cold_item_seed``) becomes *cold*: every interaction with them leaves
the data except a user's last one, so they never occur in a training sequence, a training
target or a validation input, and appear only as test targets. They stay in the item table
(and so in TIGER's semantic-ID catalogue and prefix trie: their text is known). Users keep
RecBole's leave-one-out split. A user who would keep fewer than two interactions loses the cold
one too (RecBole's split would put it in training). Needs ``eval_args`` split LS with order TO,
where "last interaction" is the test target.
"""
from dataclasses import dataclass
from logging import getLogger

import numpy as np
import torch

from recbole_tiger.settings import read_settings

OVERALL_YAML = "properties/overall.yaml"


@dataclass(frozen=True)
class ColdItemSettings:
    cold_item_ratio: float
    cold_item_seed: int

    @classmethod
    def from_config(cls, config):
        settings = read_settings(cls, config, component="cold-start protocol", source=OVERALL_YAML)
        if not 0.0 <= settings.cold_item_ratio < 1.0:
            raise ValueError(f"cold-start protocol: cold_item_ratio={settings.cold_item_ratio}, expected 0 <= ratio < 1 "
                             "(0 = off).")
        return settings

    @property
    def on(self):
        return self.cold_item_ratio > 0.0


def check_split(config):
    args = config["eval_args"] or {}
    split, order = args.get("split") or {}, args.get("order")
    if "LS" not in split or order != "TO":
        raise ValueError(f"cold-start protocol (cold_item_ratio > 0): needs eval_args split LS (leave-one-out) "
                         f"with order TO, so that a user's last interaction is the test target; got split={split}, "
                         f"order={order}.")


def last_per_user(users, times):
    """Bool [n]: the row is its user's last interaction in time order (ties: the later row, as
    RecBole's stable sort keeps file order)."""
    order = np.lexsort((np.arange(len(users)), times, users))          # by user, then time, then row
    last = np.zeros(len(users), dtype=bool)
    sorted_users = users[order]
    is_last = np.append(sorted_users[1:] != sorted_users[:-1], True)
    last[order[is_last]] = True
    return last


def choose_cold_items(users, items, times, ratio, seed):
    """The cold item ids: ``ratio`` of the distinct last (test) items, at least one, drawn with ``seed``."""
    test_items = np.unique(items[last_per_user(users, times)])
    n = max(1, int(round(ratio * len(test_items))))
    return np.sort(np.random.RandomState(seed).choice(test_items, size=n, replace=False))


def apply_cold_item_protocol(dataset, settings):
    """Remove the cold items' interactions from ``dataset.inter_feat`` (a RecBole Dataset before
    ``build()``), keeping each as a test target where the user keeps >= 2 interactions. Sets
    ``dataset.cold_items`` (sorted item ids, a LongTensor) and returns a dict of counts."""
    check_split(dataset.config)
    inter = dataset.inter_feat  # a DataFrame until build() turns it into an Interaction
    column = lambda field: np.asarray(inter[field])                   # noqa: E731
    users, items = column(dataset.uid_field), column(dataset.iid_field)
    times = column(dataset.time_field) if dataset.time_field in inter else np.arange(len(users))
    cold = choose_cold_items(users, items, times, settings.cold_item_ratio, settings.cold_item_seed)
    is_cold = np.isin(items, cold)
    keep = ~is_cold
    # a cold last item stays (the test target) where the user keeps another interaction before it
    kept_per_user = np.bincount(users[keep], minlength=int(users.max()) + 1)
    last = last_per_user(users, times)
    keep |= is_cold & last & (kept_per_user[users] >= 1)
    rows = np.flatnonzero(keep)
    dataset.inter_feat = inter.iloc[rows].reset_index(drop=True) if hasattr(inter, "iloc") else inter[torch.from_numpy(rows)]
    dataset.cold_items = torch.from_numpy(cold).long()
    counts = {"cold_items": len(cold), "removed_interactions": int((~keep).sum()),
              "cold_test_targets": int((keep & is_cold).sum())}
    getLogger().info(f"cold-start protocol: cold_item_ratio={settings.cold_item_ratio} (seed "
                     f"{settings.cold_item_seed}): {counts['cold_items']} cold items, "
                     f"{counts['removed_interactions']} interactions removed, "
                     f"{counts['cold_test_targets']} cold test targets")
    return counts


def cold_item_mask(dataset, item_train_count):
    """Bool [n_items]: the items the cold metrics count. Under the protocol its cold items; without
    it the items no training row contains (``item_train_count`` == 0)."""
    cold_items = getattr(dataset, "cold_items", None)
    if cold_items is not None:
        mask = torch.zeros(dataset.item_num, dtype=torch.bool)
        mask[cold_items] = True
        return mask
    mask = item_train_count == 0
    mask[0] = False  # the padding item is never a target
    return mask
