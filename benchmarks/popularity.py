"""Where a model's hits come from, by how popular the target item was in training.

    python -m benchmarks.popularity saved/TIGER-….pth saved/SASRec-….pth [--results_dir=results]
        [--ranking=text_fusion_weight=0.5]   (ranking settings for every TIGER checkpoint given)

For each checkpoint, on the valid and the test split (full ranking, the checkpoint's own
protocol): NDCG@10 over all users and within three target buckets by training interactions
(tail: the least popular third of the targets' items, head: the most popular third), the share
of targets in each bucket, and the median training count of the items the model puts in its
top-10. A model that leans on popular items loses more when the targets drift to less popular
items, as Beauty's test targets do relative to its valid targets. Rows merge into
``results/<dataset>-popularity.{csv,md}``.
"""
import argparse
import os

import torch

from recbole_tiger.benchmark.results_table import git_commit, machine_description, utc_date, write_table
from recbole_tiger.benchmark.side_by_side import parse_ranking

COLUMNS = ["model", "split", "ndcg@10", "tail_ndcg@10", "middle_ndcg@10", "head_ndcg@10", "tail_share",
           "head_share", "median_count_target", "median_count_top10", "bucket_edges", "checkpoint", "commit",
           "date", "machine"]
KEY = ("checkpoint", "model", "split")  # model: its label, with the ranking settings


def model_label(config, ranking=None):
    """The model's name, "+ dense head" for TIGER with ``dense_head: True``, and its ranking settings."""
    label = config["model"] + (" + dense head" if config["dense_head"] else "")
    return label + "".join(f", {k}={v}" for k, v in (ranking or {}).items())


@torch.no_grad()
def ranked(trainer, eval_data):
    """(top-10 item ids [U, 10], target item ids [U]) of every user of ``eval_data``."""
    tops, targets = [], []
    trainer.model.eval()
    trainer.tot_item_num = eval_data._dataset.item_num          # what Trainer.evaluate sets up first
    trainer.item_tensor = eval_data._dataset.get_item_feature().to(trainer.device)
    for batch in eval_data:
        _, scores, positive_u, positive_i = trainer._full_sort_batch_eval(batch)
        top = scores.topk(10, dim=1).indices
        tops.append(top[positive_u.to(top.device)].cpu())
        targets.append(positive_i.cpu())
    return torch.cat(tops), torch.cat(targets)


def bucket_rows(model_name, split, top, target, counts, edges):
    hit_rank = (top == target[:, None]).float()                          # [U, 10]
    ndcg = (hit_rank / torch.log2(torch.arange(2, 12).float())).sum(1)    # one target per user
    count = counts[target]
    bucket = torch.bucketize(count, edges)                                # 0 tail, 1 middle, 2 head
    row = {"model": model_name, "split": split, "ndcg@10": round(ndcg.mean().item(), 4),
           "median_count_target": float(count.median()), "median_count_top10": float(counts[top].median()),
           "bucket_edges": f"<{int(edges[0])} / <{int(edges[1])} / more training interactions"}
    for b, name in enumerate(("tail", "middle", "head")):
        inside = bucket == b
        row[f"{name}_ndcg@10"] = round(ndcg[inside].mean().item(), 4) if inside.any() else ""
        if name != "middle":
            row[f"{name}_share"] = round(inside.float().mean().item(), 4)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--results_dir", default="results")
    parser.add_argument("--ranking", default=None,
                        help="key=value[,key=value]: ranking settings (set_ranking) for the models that have them")
    args = parser.parse_args(argv)
    ranking = parse_ranking(args.ranking)

    from recbole_tiger.quick_start import load_data_and_model
    from recbole_tiger.trainer import get_trainer

    rows, dataset_name, edges = [], None, None
    for checkpoint in args.checkpoints:
        config, model, dataset, train_data, valid_data, test_data = load_data_and_model(checkpoint)
        dataset_name = config["dataset"]
        counts = torch.bincount(train_data._dataset.inter_feat[config["ITEM_ID_FIELD"]], minlength=dataset.item_num)
        applied = ranking if ranking and hasattr(model, "set_ranking") else {}
        if applied:
            model.set_ranking(**applied)
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        per_split = {split: ranked(trainer, data) for split, data in (("valid", valid_data), ("test", test_data))}
        if edges is None:  # thirds of the valid targets' counts; the same edges for every model and split
            valid_counts = counts[per_split["valid"][1]].float()
            edges = torch.quantile(valid_counts, torch.tensor([1 / 3, 2 / 3])).round()
        for split, (top, target) in per_split.items():
            row = bucket_rows(model_label(config, applied), split, top, target, counts, edges)
            rows.append({**row, "checkpoint": checkpoint, "commit": git_commit(), "date": utc_date(),
                         "machine": machine_description(config["device"])})
            print(" | ".join(f"{k}={row[k]}" for k in COLUMNS[:10]), flush=True)

    write_table(os.path.join(args.results_dir, f"{dataset_name}-popularity"),
                f"## {dataset_name}: hits by how popular the target was in training (`python -m benchmarks.popularity <checkpoints>`)", COLUMNS, rows, KEY)


if __name__ == "__main__":
    main()
