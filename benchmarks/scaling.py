"""How ranking and the semantic-ID pre-stage cost grow with the catalogue: TIGER vs SASRec.

    python -m benchmarks.scaling --sizes=10000,100000,1000000 [--parts=decode,prestage]

Everything is synthetic and made by this tool (no download): a catalogue of N items, users'
sequences over it (popular items drawn more often), and 384-d "text embeddings" drawn around
random topic centres. Each (part, N) runs in its own child process (each quantiser in its
own), so its peak memory (``ru_maxrss``) is that measurement's alone; rows merge into
``results/scaling.{csv,md,png}``, stamped with commit, date and machine.

decode    Untrained TIGER (the CPU preset's sizes, random 3 x 256 semantic IDs + collision level:
          the shape of a real artifact; what is measured does not depend on the weights) and
          SASRec (its property file's sizes) rank the same test users, RecBole's way: one
          [users x N] score row per user, then top-10. Reported: seconds per user, peak memory,
          and the prefix trie's build time and size. TIGER's beam search touches
          beam_size x codebook_size entries per level whatever N is; SASRec scores all N.
prestage  Residual k-means (and the RQ-VAE, for N up to --rqvae_max_items) on the embeddings,
          read from a memory-mapped float32 .npy file. Reported: seconds and peak memory.
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np

from benchmarks import child_env
from recbole_tiger.atomic_io import write_text_atomic
from recbole_tiger.benchmark.child_process import run_child_process
from recbole_tiger.benchmark.results_table import (git_commit, machine_description, markdown_grid, merge_rows,
                                                   read_rows, utc_date, write_csv)

COLUMNS = ["part", "n_items", "model", "seconds_per_user", "users", "peak_mem_mb", "trie_build_s", "trie_mb",
           "seconds", "detail", "commit", "date", "machine"]
KEY = ("part", "n_items", "model")
TIGER_SIZES = {"n_encoder_layers": 2, "n_decoder_layers": 2, "n_heads": 4, "d_head": 32, "d_ff": 512,
               "encoder_tokens": "item", "train_targets": "last", "n_user_tokens": 0, "dropout_prob": 0.0,
               "attn_dropout_prob": 0.0, "beam_size": 20}


def peak_mem_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ----------------------------------------------------------------------------- synthetic data
def write_catalogue(folder, n_items, n_users, seq_len, seed):
    """RecBole atomic files: ``n_items`` items (all in the .item file, so all are rankable) and
    ``n_users`` sequences of ``seq_len`` distinct items drawn Zipf-like."""
    rng = np.random.default_rng(seed)
    name = os.path.basename(folder)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.item"), "w") as f:
        f.write("item_id:token\n")
        f.write("\n".join(f"i{i}" for i in range(n_items)) + "\n")
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    weights /= weights.sum()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(n_users):
        items = rng.choice(n_items, size=seq_len, replace=False, p=weights)
        lines += [f"u{u}\ti{i}\t{t}" for t, i in enumerate(items)]
    with open(os.path.join(folder, f"{name}.inter"), "w") as f:
        f.write("\n".join(lines) + "\n")


def random_semantic_ids(n_items, seed, n_levels=3, k=256):
    """[n_items+1, n_levels+1] codes (row 0 padding) with a collision level, like an artifact."""
    from recbole_tiger.semantic_ids.dedup import append_collision_code
    from recbole_tiger.semantic_ids.types import SemanticIDs

    import torch

    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, k, (n_items, n_levels), generator=g)
    codes, collision_size = append_collision_code(codes)
    full = torch.cat([torch.full((1, codes.shape[1]), -1), codes])
    return SemanticIDs(codes=full, codebook_sizes=[k] * n_levels + [int(collision_size)], artifact_key="synthetic")


# ----------------------------------------------------------------------------- measurements
def measure_decode(n_items, n_users, seed):
    """Both models rank the test users of one synthetic catalogue (this process only)."""
    import torch

    from recbole.data import create_dataset, data_preparation
    from recbole_tiger.config import Config
    from recbole_tiger.model.layers.prefix_trie import PrefixTrie
    from recbole_tiger.utils import get_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write_catalogue(os.path.join(tmp, "scale"), n_items, n_users, seq_len=12, seed=seed)
        common = {"data_path": tmp, "checkpoint_dir": tmp, "state": "ERROR", "show_progress": False,
                  "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
                  "MAX_ITEM_LIST_LENGTH": 20, "eval_batch_size": 64 * n_items, "load_col": None}
        sys.argv = sys.argv[:1]
        for model_name in ("SASRec", "TIGER"):
            overrides = dict(TIGER_SIZES) if model_name == "TIGER" else {}
            config = Config(model="SASRec", dataset="scale", config_dict={**common})  # RecBole's dataset, no pre-stage
            dataset = create_dataset(config)
            _, _, test_data = data_preparation(config, dataset)
            config = Config(model=model_name, dataset="scale", config_dict={**common, **overrides})
            test_dataset = test_data._dataset
            trie_build_s = trie_mb = ""
            if model_name == "TIGER":
                sid = random_semantic_ids(test_dataset.item_num - 1, seed)
                start = time.perf_counter()
                trie = PrefixTrie(sid.codes, sid.codebook_sizes)
                trie_build_s = round(time.perf_counter() - start, 3)
                trie_mb = round(sum(b.numel() * b.element_size() for b in trie.buffers()) / 2**20, 1)
                test_dataset.semantic_ids, test_dataset.item_train_count = sid, torch.zeros(
                    test_dataset.item_num, dtype=torch.long)
            torch.manual_seed(seed)
            model = get_model(model_name)(config, test_dataset).eval()
            # TIGER twice: RecBole's dense score rows, and its top-K output (eval_output: topk);
            # the top-K path runs second, so its peak memory is at most the dense path's
            outputs = ["dense", "topk"] if model_name == "TIGER" else ["dense"]
            for output in outputs:
                users = 0
                start = time.perf_counter()
                with torch.no_grad():
                    for batch in test_data:
                        interaction = batch[0]
                        if output == "topk":
                            model.full_sort_topk(interaction, 10)
                        else:
                            model.full_sort_predict(interaction).view(len(interaction), -1).topk(10, dim=1)
                        users += len(interaction)
                seconds = time.perf_counter() - start
                detail = ("full scores over every item" if model_name == "SASRec" else
                          "beam 20, 3x256 IDs + collision level, " + ("top-10 output" if output == "topk"
                                                                      else "dense score rows"))
                rows.append({"part": "decode", "n_items": n_items,
                             "model": model_name + (" (top-K output)" if output == "topk" else ""),
                             "seconds_per_user": round(seconds / users, 5), "users": users,
                             "peak_mem_mb": peak_mem_mb(), "trie_build_s": trie_build_s, "trie_mb": trie_mb,
                             "seconds": round(seconds, 2), "detail": detail})
            del model
    return rows


def write_embeddings(path, n_items, seed, n_topics=2000, dim=384):
    """Synthetic "text embeddings" around random topic centres, written in blocks to a float32
    .npy file (never a full in-memory copy)."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((n_topics, dim)).astype(np.float32)
    emb = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_items, dim))
    for start in range(0, n_items, 65536):
        n = min(65536, n_items - start)
        emb[start:start + n] = topics[rng.integers(0, n_topics, n)] + 0.5 * rng.standard_normal(
            (n, dim)).astype(np.float32)
    emb.flush()
    del emb


def measure_prestage(path, quantizer, seed):
    """One quantiser on the memory-mapped embeddings at ``path``, alone in this process, so the
    peak memory is the quantiser's (the file is written by the parent)."""
    import torch

    from recbole_tiger.semantic_ids.pipeline import quantize
    from recbole_tiger.semantic_ids.settings import SemanticIDSettings, yaml_defaults

    embeddings = np.load(path, mmap_mode="r")
    # the quantizer alone, on text embeddings (co-purchase vectors would only add columns)
    params = SemanticIDSettings.from_config(
        {**yaml_defaults(), "sid_quantizer": quantizer, "sid_collaborative_weight": 0.0, "sid_epochs": 5})
    start = time.perf_counter()
    quantize(embeddings, params, torch.device("cpu"), seed)
    seconds = time.perf_counter() - start
    return [{"part": "prestage", "n_items": len(embeddings), "model": quantizer, "peak_mem_mb": peak_mem_mb(),
             "seconds": round(seconds, 1),
             "detail": f"3x256 codes, {embeddings.shape[1]}-d float32 embeddings (memory-mapped, "
                       f"{embeddings.nbytes / 2**20:.0f} MB)" + (", 5 RQ-VAE epochs" if quantizer == "rqvae" else "")}]


# ----------------------------------------------------------------------------- driver
def run_child(part, n_items, args, extra=()):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.json")
        cmd = [sys.executable, "-m", "benchmarks.scaling", "--child", f"--parts={part}",
               f"--sizes={n_items}", f"--users={args.users}", f"--seed={args.seed}", f"--child_out={out}", *extra]
        run_child_process(cmd, env=child_env())
        with open(out) as f:
            return json.load(f)


def measurements(part, n_items, args):
    """Rows of one (part, N): decode in one child; each quantiser in its own child."""
    if part == "decode":
        return run_child(part, n_items, args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "emb.npy")
        write_embeddings(path, n_items, args.seed)
        for quantizer in ("rqkmeans", "rqvae"):
            if quantizer == "rqkmeans" or n_items <= args.rqvae_max_items:
                rows += run_child(part, n_items, args, [f"--embeddings={path}", f"--quantizer={quantizer}"])
    return rows


def write_results(results_dir, new_rows):
    os.makedirs(results_dir, exist_ok=True)
    base = os.path.join(results_dir, "scaling")
    rows = merge_rows(read_rows(base + ".csv"), new_rows, KEY)
    rows.sort(key=lambda r: (r["part"], r["model"], int(r["n_items"])))
    write_csv(base + ".csv", rows)
    lines = ["## Cost against catalogue size (synthetic catalogues; `python -m benchmarks.scaling`)",
             "", "decode: per test user, RecBole's full-ranking path (a score row over all items, then top-10); "
             "prestage: semantic-ID quantisers on memory-mapped embeddings.", ""]
    lines += markdown_grid(COLUMNS, rows)
    write_text_atomic(base + ".md", "\n".join(lines) + "\n")
    plot(rows, base + ".png")
    return rows


def plot(rows, png_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recbole_tiger.atomic_io import open_atomic

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for model in sorted({r["model"] for r in rows if r["part"] == "decode"}):
        points = sorted((int(r["n_items"]), r) for r in rows if r["part"] == "decode" and r["model"] == model)
        sizes = [n for n, _ in points]
        axes[0].plot(sizes, [float(r["seconds_per_user"]) * 1000 for _, r in points], "o-", label=model)
        axes[1].plot(sizes, [float(r["peak_mem_mb"]) for _, r in points], "o-", label=model)
    for ax, label in zip(axes, ("ms per user (rank + top-10)", "peak memory (MB)")):
        ax.set_xscale("log")
        ax.set_xlabel("items in the catalogue")
        ax.set_ylabel(label)
        ax.legend()
    fig.tight_layout()
    with open_atomic(png_path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--parts", default="decode,prestage")
    parser.add_argument("--users", type=int, default=512, help="test users per catalogue (decode)")
    parser.add_argument("--rqvae_max_items", type=int, default=100000)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--results_dir", default="results")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child_out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--embeddings", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quantizer", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    parts = args.parts.split(",")
    unknown = set(parts) - {"decode", "prestage"}
    if unknown:
        raise SystemExit(f"scaling: --parts: unknown {sorted(unknown)}, expected decode and/or prestage")

    if args.child:
        part, n_items = parts[0], sizes[0]
        rows = (measure_decode(n_items, args.users, args.seed) if part == "decode"
                else measure_prestage(args.embeddings, args.quantizer, args.seed))
        write_text_atomic(args.child_out, json.dumps(rows))
        return

    stamp = {"commit": git_commit(), "date": utc_date(), "machine": machine_description("cpu")}
    for part in parts:
        for n_items in sizes:
            rows = [{**row, **stamp} for row in measurements(part, n_items, args)]
            write_results(args.results_dir, rows)
            for row in rows:
                print(" | ".join(f"{k}={row.get(k)}" for k in COLUMNS[:9]), flush=True)
    print(f"results in {os.path.join(args.results_dir, 'scaling')}.{{md,csv,png}}")


if __name__ == "__main__":
    main()
