"""Shared fixtures: a small RecBole atomic dataset the tests write themselves."""
import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_ATOMIC = os.path.join(REPO_ROOT, "..", "shared", "data", "atomic")

PYTEST_ARGV = list(sys.argv)  # as pytest was invoked, before the fixture below hides it

CATEGORIES = ["Skin Care, Face, Creams", "Hair Care, Shampoos", "Makeup, Eyes, Mascara", "Fragrance, Women"]
BRANDS = ["Olay", "Pantene", "Maybelline", "Chanel", ""]


@pytest.fixture(autouse=True)
def _isolated_argv(monkeypatch):
    """RecBole's Config parses every ``--key=value`` in sys.argv; pytest's own flags
    (e.g. ``--durations=10``) would leak into every config built during the tests."""
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])


def write_atomic(root, name="tiny", n_users=40, n_items=60, seq_len=12, with_item_file=True):
    """Write ``root/name/name.inter`` (and ``.item``) and return ``root``.

    User u interacts with items of a per-user stride walk, so sequences have learnable
    structure; timestamps are day-level with deliberate same-day ties at the end of each
    sequence (rows stay in file order for ties, as in the Amazon data).
    """
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.inter"), "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u in range(n_users):
            items = [(u * 7 + 3 * t) % n_items for t in range(seq_len)]
            items = list(dict.fromkeys(items))
            for t, i in enumerate(items):
                day = 1_400_000_000 + 86_400 * min(t, len(items) - 3)  # last 3 share a day
                f.write(f"u{u}\ti{i}\t{day}\n")
    if with_item_file:
        with open(os.path.join(folder, f"{name}.item"), "w", encoding="utf-8") as f:
            f.write("item_id:token\ttitle:token_seq\tbrand:token\tcategories:token_seq\n")
            for i in range(n_items):
                cat = CATEGORIES[i % len(CATEGORIES)]
                f.write(f"i{i}\t{cat.split(', ')[-1]} product número {i}\t{BRANDS[i % len(BRANDS)]}\t{cat}\n")
    return str(root)


@pytest.fixture
def tiny_atomic(tmp_path):
    """(data_path, dataset_name) of a fresh ~40-user dataset with item text."""
    return write_atomic(tmp_path / "atomic"), "tiny"


@pytest.fixture
def tiny_config(tiny_atomic, tmp_path):
    """Config dict for fast runs on the tiny dataset (copy it and override keys)."""
    data_path, dataset = tiny_atomic
    return {
        "data_path": data_path,
        "dataset": dataset,
        "checkpoint_dir": str(tmp_path / "saved"),
        "show_progress": False,
        "state": "WARNING",
        "epochs": 1,
        "train_batch_size": 64,
        "eval_batch_size": 64,
        "MAX_ITEM_LIST_LENGTH": 10,
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
    }
