"""First-stage candidates: a trained RecBole model's top-K per user, on RecBole's own split.

    python -m recbole_tiger.rerank.candidates --model_file=saved/SASRec-….pth --k=20 \\
        --n_eval_users=500 --n_train_users=2000 --out=saved/rerank/amazon-beauty-SASRec.pt

For a fixed random sample of users (the same users for valid and test) the model ranks the
full catalogue exactly as RecBole's full-sort evaluation does (padding item masked; history
items masked too under the ``exclude_history`` protocol), and the top-K are kept with the
held-out target. Training queries are each sampled user's last *training* target (its longest
training row), ranked the same way: the reranker's negatives come from these lists, so no
valid or test item enters its training data.

Two first stages' files of the same users fuse into one (reciprocal rank fusion, ``union``):

    python -m recbole_tiger.rerank.candidates --union saved/rerank/amazon-beauty-SASRec.pt \
        saved/rerank/amazon-beauty-TIGER.pt --out=saved/rerank/amazon-beauty-SASRec+TIGER.pt
"""
import argparse
import os

import numpy as np
import torch

from recbole_tiger.atomic_io import atomic_torch_save


def longest_rows(inter, uid_field, length_field):
    """Index of each user's longest row (its last training target) in an augmented training set."""
    users = inter[uid_field].numpy()
    lengths = inter[length_field].numpy()
    order = np.lexsort((lengths, users))                  # by user, then length ascending
    last = np.r_[users[order][1:] != users[order][:-1], True]
    return order[last]


@torch.no_grad()
def rank_rows(model, inter, rows, k, exclude_history, item_seq_field, batch_size=256, device="cpu"):
    """(candidates [R, k], scores [R, k]) for the given rows of an ``Interaction``."""
    model.eval()
    candidates, scores = [], []
    for start in range(0, len(rows), batch_size):
        batch = inter[torch.as_tensor(rows[start: start + batch_size])].to(device)
        full = model.full_sort_predict(batch).view(len(batch), -1).float()
        full[:, 0] = -np.inf
        if exclude_history:
            full.scatter_(1, batch[item_seq_field], -np.inf)
        top = full.topk(k, dim=-1)
        candidates.append(top.indices.cpu())
        scores.append(top.values.cpu())
    return torch.cat(candidates), torch.cat(scores)


def split_queries(model, dataset, rows, k, exclude_history, config):
    inter = dataset.inter_feat
    iid, seq = config["ITEM_ID_FIELD"], config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
    length = config["ITEM_LIST_LENGTH_FIELD"]
    candidates, scores = rank_rows(model, inter, rows, k, exclude_history, seq, device=config["device"])
    return {"users": inter[config["USER_ID_FIELD"]][rows], "history": inter[seq][rows],
            "length": inter[length][rows], "target": inter[iid][rows], "candidates": candidates, "scores": scores}


def build_candidates(model_file, k=20, n_eval_users=500, n_train_users=2000, seed=0, protocol=None):
    from recbole_tiger.quick_start import load_data_and_model

    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(model_file)
    exclude = bool(config["eval_exclude_history"]) if protocol is None else protocol == "exclude_history"
    rng = np.random.default_rng(seed)
    uid = config["USER_ID_FIELD"]
    valid_users = valid_data._dataset.inter_feat[uid].numpy()
    test_users = test_data._dataset.inter_feat[uid].numpy()
    common = np.intersect1d(valid_users, test_users)
    sample = np.sort(rng.choice(common, min(n_eval_users, len(common)), replace=False))
    row_of = lambda users: {u: i for i, u in enumerate(users)}
    valid_rows = np.array([row_of(valid_users)[u] for u in sample])
    test_rows = np.array([row_of(test_users)[u] for u in sample])
    train_rows = longest_rows(train_data._dataset.inter_feat, uid, config["ITEM_LIST_LENGTH_FIELD"])
    train_rows = np.sort(rng.choice(train_rows, min(n_train_users, len(train_rows)), replace=False))
    counts = torch.bincount(train_data._dataset.inter_feat[config["ITEM_ID_FIELD"]], minlength=dataset.item_num)
    return {
        "model_file": os.path.abspath(model_file), "model": config["model"], "dataset": config["dataset"],
        "data_path": config["data_path"], "k": k, "protocol": "exclude_history" if exclude else "repeatable",
        "seed": seed, "item_tokens": list(dataset.field2id_token[config["ITEM_ID_FIELD"]]),
        "item_train_count": counts,
        "splits": {name: split_queries(model, data._dataset, rows, k, exclude, config)
                   for name, data, rows in (("train", train_data, train_rows), ("valid", valid_data, valid_rows),
                                            ("test", test_data, test_rows))},
    }


def union(first, second, k=None, rrf_k=60):
    """Two first stages' candidate files (the same dataset, protocol and users) as one: each
    user's list ordered by reciprocal rank fusion, score = sum over the lists of 1 / (rrf_k +
    rank), top ``k`` (default: the first file's K). Items both lists hold come first."""
    for key in ("dataset", "protocol", "item_tokens"):
        if first[key] != second[key]:
            raise ValueError(f"candidate files differ in {key}: {str(first[key])[:60]} vs {str(second[key])[:60]}")
    k = k or first["k"]
    splits = {}
    for name, a in first["splits"].items():
        b = second["splits"][name]
        if not torch.equal(a["users"], b["users"]):
            raise ValueError(f"candidate files hold different {name} users: build both with the same "
                             "--n_eval_users/--n_train_users/--seed")
        candidates, scores = [], []
        for row in range(len(a["users"])):
            fused = {}
            for items in (a["candidates"][row], b["candidates"][row]):
                for rank, item in enumerate(items.tolist(), start=1):
                    fused[item] = fused.get(item, 0.0) + 1.0 / (rrf_k + rank)
            top = sorted(fused.items(), key=lambda x: -x[1])[:k]
            if len(top) < k:
                raise ValueError(f"{name} row {row}: the two lists hold {len(top)} items, fewer than k={k}")
            candidates.append(torch.tensor([i for i, _ in top]))
            scores.append(torch.tensor([v for _, v in top]))
        splits[name] = {**{key: a[key] for key in ("users", "history", "length", "target")},
                        "candidates": torch.stack(candidates), "scores": torch.stack(scores)}
    return {**first, "model": f"{first['model']} + {second['model']} (RRF)", "k": k, "splits": splits,
            "model_file": [first["model_file"], second["model_file"]]}


def main(argv=None):
    import sys

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_file", default=None)
    parser.add_argument("--union", nargs=2, metavar="CANDIDATES", default=None,
                        help="instead of --model_file: two candidate files of the same users, fused (RRF)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--k", type=int, default=None, help="list length (default 20; --union: the first file's)")
    parser.add_argument("--n_eval_users", type=int, default=500)
    parser.add_argument("--n_train_users", type=int, default=2000)
    parser.add_argument("--protocol", default=None, choices=[None, "repeatable", "exclude_history"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config must not read these flags
    if (args.model_file is None) == (args.union is None):
        parser.error("give --model_file (a trained model) or --union (two candidate files)")
    if args.union:
        first, second = (torch.load(f, map_location="cpu", weights_only=False) for f in args.union)
        result = union(first, second, args.k)
    else:
        result = build_candidates(args.model_file, args.k or 20, args.n_eval_users, args.n_train_users, args.seed,
                                  args.protocol)
    atomic_torch_save(args.out, result)
    for name, split in result["splits"].items():
        hit = (split["candidates"] == split["target"][:, None]).any(1).float().mean()
        print(f"{name}: {len(split['users'])} users, target among the top-{result['k']}: {hit:.3f}")


if __name__ == "__main__":
    main()
