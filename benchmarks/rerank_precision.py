"""Is bf16 mixed precision good enough for the reranker? Scores the same users' candidates with
the untrained LM in float32 and in bfloat16 and writes the time per user and how closely the
two rank the candidates to ``results/<dataset>-rerank-precision.{md,csv}``.

    python -m benchmarks.rerank_precision --candidates=saved/rerank/amazon-beauty-TIGER.pt --n_users=40
"""
import argparse
import time

import torch
from scipy.stats import spearmanr

from recbole_tiger.llm.base_model import DEFAULT_BASE_MODEL, load_base_model
from recbole_tiger.rerank.model import PRECISIONS, Reranker
from recbole_tiger.rerank.prompts import candidate_file_titles
from recbole_tiger.rerank.train import MODES, candidate_scores

COLUMNS = ["mode", "users", "float32_s_per_user", "bfloat16_s_per_user", "median_spearman", "min_spearman",
           "same_top1", "commit", "date", "machine"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", required=True, help="file written by recbole_tiger.rerank.candidates")
    parser.add_argument("--base_model", default=DEFAULT_BASE_MODEL)
    parser.add_argument("--n_users", type=int, default=40, help="first valid users of the candidates file")
    parser.add_argument("--results_dir", default="results")
    args = parser.parse_args(argv)
    from recbole_tiger.benchmark.results_table import git_commit, machine_description, utc_date, write_table

    data = torch.load(args.candidates, map_location="cpu", weights_only=False)
    titles = candidate_file_titles(data)
    valid = data["splits"]["valid"]
    n = min(args.n_users, len(valid["users"]))
    reranker = Reranker(*load_base_model(args.base_model))
    scores, seconds = {}, {}
    for precision in PRECISIONS:
        reranker.precision = precision
        start = time.time()
        scores[precision] = [candidate_scores(reranker, valid, titles, row, False) for row in range(n)]
        seconds[precision] = round((time.time() - start) / n, 2)
    rows = []
    for mode in MODES:
        pairs = [(a[mode], b[mode]) for a, b in zip(scores["float32"], scores["bfloat16"])]
        rho = torch.tensor([spearmanr(a, b)[0] for a, b in pairs])
        rows.append({"mode": mode, "users": n, "float32_s_per_user": seconds["float32"],
                     "bfloat16_s_per_user": seconds["bfloat16"], "median_spearman": round(float(rho.median()), 4),
                     "min_spearman": round(float(rho.min()), 4),
                     "same_top1": f"{sum(int(a.argmax() == b.argmax()) for a, b in pairs)}/{n}",
                     "commit": git_commit(), "date": utc_date(), "machine": machine_description(torch.device("cpu"))})
    title = (f"The untrained {args.base_model} reranker in float32 and bf16 mixed precision on {data['dataset']} "
             f"({data['model']}'s top-{data['k']}, {n} valid users, both modes timed together)")
    write_table(f"{args.results_dir}/{data['dataset']}-rerank-precision", title, COLUMNS, rows, ["mode", "users"])


if __name__ == "__main__":
    main()
