"""A synthetic catalogue whose item text spells out the structure that drives the sequences.

    python -m recbole_tiger.data.synthetic --out=dataset_atomic --name=taxonomy --n_users=3000

Items sit on shelves of a department > aisle > shelf taxonomy, and their title and
categories name all three levels (``"organic baking goods no. 2"``; categories
``"kitchen, baking, organic"``). A user browses: the next item is another item of the same
shelf with probability ``p_shelf``, of the same aisle ``p_aisle``, of the same department
``p_department``, else any item. Which *item* of a shelf comes next is uniform, so a ranker
that knows the taxonomy is the best one can do, and item text carries all of it: the
setting where a text-aware model such as TIGER should match or beat an ID-only model such as
SASRec. Popularity is flat by construction, so the popularity ranker is weak.

Used by the tests as a regression guard (TIGER must learn what the text gives it) and by
the diagnosis tool as a second dataset. ``oracle_ndcg`` computes what the taxonomy ranker
scores on RecBole's leave-one-out test target, for reference.
"""
import argparse
import math
import os

import numpy as np

from recbole_tiger.atomic_io import open_atomic

TAXONOMY = {
    "kitchen": ["baking", "spices", "cookware", "coffee"],
    "garden": ["seeds", "pruning", "planters", "irrigation"],
    "bathroom": ["towels", "shaving", "dental", "bathing"],
    "office": ["paper", "pens", "desks", "printing"],
    "garage": ["tires", "wrenches", "paint", "batteries"],
    "nursery": ["diapers", "strollers", "toys", "bottles"],
}
SHELVES = ["organic", "premium", "travel", "family"]
BRANDS = ["acme", "globex", "initech", "umbrella", "hooli", "vandelay", "stark", "wayne"]


def make_catalogue(items_per_shelf=3):
    """[(department, aisle, shelf)] per item, item index = position in the list."""
    return [(d, a, s) for d, aisles in TAXONOMY.items() for a in aisles for s in SHELVES
            for _ in range(items_per_shelf)]


def make_sequences(catalogue, n_users, min_len, max_len, p_shelf, p_aisle, p_department, seed):
    """One browsing walk per user over the catalogue's items (no item twice in a row)."""
    rng = np.random.default_rng(seed)
    n_items = len(catalogue)
    by_level = [{}, {}, {}]  # shelf / aisle / department -> item indices
    for i, (d, a, s) in enumerate(catalogue):
        by_level[0].setdefault((d, a, s), []).append(i)
        by_level[1].setdefault((d, a), []).append(i)
        by_level[2].setdefault(d, []).append(i)
    keys = [lambda c: c, lambda c: c[:2], lambda c: c[0]]
    cumulative = np.cumsum([p_shelf, p_aisle, p_department])
    sequences = []
    for _ in range(n_users):
        length = int(rng.integers(min_len, max_len + 1))
        seq = [int(rng.integers(n_items))]
        while len(seq) < length:
            level = int(np.searchsorted(cumulative, rng.random(), side="right"))
            pool = (by_level[level][keys[level](catalogue[seq[-1]])] if level < 3 else range(n_items))
            pool = [i for i in pool if i != seq[-1]]
            seq.append(int(rng.choice(pool)))
        sequences.append(seq)
    return sequences


def oracle_ndcg(catalogue, sequences, k=10):
    """NDCG@k of the ranker that knows the taxonomy, on each user's last item: items of the
    last history item's shelf first, then its aisle, then its department (the history item
    itself excluded, ties in a fixed order)."""
    total = 0.0
    for seq in sequences:
        last, target = catalogue[seq[-2]], seq[-1]
        score = np.array([3 * (c == last) + 2 * (c[:2] == last[:2]) + (c[0] == last[0]) for c in catalogue], float)
        score -= np.arange(len(catalogue)) * 1e-6
        score[seq[-2]] = -np.inf
        rank = int((score > score[target]).sum())
        total += 1.0 / math.log2(rank + 2) if rank < k else 0.0
    return total / len(sequences)


def write_taxonomy_dataset(root, name="taxonomy", n_users=3000, min_len=6, max_len=14, items_per_shelf=3,
                           p_shelf=0.6, p_aisle=0.25, p_department=0.1, seed=0):
    """Write ``root/name/name.{inter,item}`` (RecBole atomic files); returns the sequences
    (item indices) and the catalogue."""
    catalogue = make_catalogue(items_per_shelf)
    sequences = make_sequences(catalogue, n_users, min_len, max_len, p_shelf, p_aisle, p_department, seed)
    rng = np.random.default_rng(seed + 1)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    with open_atomic(os.path.join(folder, f"{name}.item")) as f:
        f.write("item_id:token\ttitle:token_seq\tbrand:token\tcategories:token_seq\n")
        seen = {}
        for i, (d, a, s) in enumerate(catalogue):
            seen[(d, a, s)] = seen.get((d, a, s), 0) + 1
            f.write(f"i{i}\t{s} {a} goods no. {seen[(d, a, s)]}\t{BRANDS[rng.integers(len(BRANDS))]}\t{d}, {a}, {s}\n")
    with open_atomic(os.path.join(folder, f"{name}.inter")) as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u, seq in enumerate(sequences):
            for t, i in enumerate(seq):
                f.write(f"u{u}\ti{i}\t{1_400_000_000 + 86_400 * t}\n")
    return sequences, catalogue


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="dataset_atomic", help="data_path to write <name>/ into")
    parser.add_argument("--name", default="taxonomy")
    parser.add_argument("--n_users", type=int, default=3000)
    parser.add_argument("--items_per_shelf", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sequences, catalogue = write_taxonomy_dataset(args.out, args.name, n_users=args.n_users,
                                                  items_per_shelf=args.items_per_shelf, seed=args.seed)
    print(f"{len(catalogue)} items, {len(sequences)} users, {sum(map(len, sequences))} interactions -> "
          f"{os.path.join(args.out, args.name)}; taxonomy ranker test NDCG@10 {oracle_ndcg(catalogue, sequences):.4f}")


if __name__ == "__main__":
    main()
