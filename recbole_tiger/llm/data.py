"""Build the LM's training, validation and held-out data from a dataset's catalogue.

    python -m recbole_tiger.llm.data --dataset=amazon-beauty --data_path=../shared/data/atomic \\
        --sid_collaborative_weight=0 --n_items=1000 --num_examples_per_item=4 --out=saved/llm/amazon-beauty

The semantic IDs are the artifact a TIGER run with the same ``--sid_*`` settings uses (built
first if missing; ``--artifact=PATH`` takes one directly). Writes ``train.jsonl`` and
``valid.jsonl`` (training templates, random split), ``heldout.jsonl`` (other templates and
paraphrases, for ``benchmarks.llm_eval``) and ``catalogue.json`` (where the IDs and
items come from, and which items were trained on).
"""
import argparse
import json
import logging
import os

import yaml

from recbole_tiger.atomic_io import open_atomic
from recbole_tiger.llm.catalogue import load_catalogue
from recbole_tiger.llm.examples import TASKS, build_examples, select_items, split_examples, write_jsonl


def artifact_for_dataset(overrides):
    """Path of the semantic-ID artifact of ``overrides`` (dataset, data_path, sid_* ...), built if needed."""
    from recbole_tiger.data.build_semantic_ids import artifact_for, build_config

    return artifact_for(build_config(overrides))["path"]


def artifact_from_cli(parser, artifact, rest):
    """``--artifact=PATH``, or the artifact of the ``--key=value`` dataset settings in ``rest``
    (built if needed); a command-line error otherwise."""
    if artifact is not None:
        if rest:
            parser.error(f"unrecognised arguments with --artifact: {rest}")
        return artifact
    overrides = {}
    for arg in rest:
        if not arg.startswith("--") or "=" not in arg:
            parser.error(f"expected --key=value for the dataset config, got {arg!r}")
        key, value = arg[2:].split("=", 1)
        overrides[key] = yaml.safe_load(value)
    if "dataset" not in overrides:
        parser.error("give --artifact=PATH or --dataset=NAME (with --data_path and --sid_* settings)")
    return artifact_for_dataset(overrides)


def build_data(artifact, out, n_items=None, tasks=TASKS, num_examples_per_item=4, heldout_per_item=1,
               valid_ratio=0.05, strict=True, seed=0, item_file=None, attribute_examples_per_item=None):
    catalogue = load_catalogue(artifact, item_file, strict=strict)
    items = select_items(catalogue, n_items, seed)
    train, valid = split_examples(build_examples(catalogue, items, tasks, num_examples_per_item, seed,
                                                  attribute_examples_per_item=attribute_examples_per_item),
                                   valid_ratio, seed)
    heldout = build_examples(catalogue, items, tasks, heldout_per_item, seed + 1, heldout=True)
    write_jsonl(os.path.join(out, "train.jsonl"), train)
    write_jsonl(os.path.join(out, "valid.jsonl"), valid)
    write_jsonl(os.path.join(out, "heldout.jsonl"), heldout)
    summary = {"artifact": os.path.abspath(artifact), "item_file": os.path.abspath(catalogue.item_file),
               "n_catalogue_items": len(catalogue.items), "n_items_trained": len(items), "tasks": list(tasks),
               "num_examples_per_item": num_examples_per_item,
               "attribute_examples_per_item": attribute_examples_per_item, "n_train": len(train), "n_valid": len(valid),
               "n_heldout": len(heldout), "seed": seed, "items": [item.token for item in items]}
    with open_atomic(os.path.join(out, "catalogue.json")) as f:
        json.dump(summary, f, indent=1)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--artifact", default=None, help="a semantic-ID artifact (.pt); default: the dataset's")
    parser.add_argument("--n_items", type=int, default=None, help="train on the N most interacted-with items")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--num_examples_per_item", type=int, default=4, help="per item and task")
    parser.add_argument("--attribute_examples_per_item", type=int, default=None,
                        help="predict_attribute examples per item (default: --num_examples_per_item)")
    parser.add_argument("--heldout_per_item", type=int, default=1, help="held-out queries per item and task")
    parser.add_argument("--valid_ratio", type=float, default=0.05)
    parser.add_argument("--no_strict", action="store_true", help="skip .item rows without a semantic ID")
    parser.add_argument("--seed", type=int, default=0)
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    artifact = artifact_from_cli(parser, args.artifact, rest)
    summary = build_data(artifact, args.out, args.n_items, [t for t in args.tasks.split(",") if t],
                         args.num_examples_per_item, args.heldout_per_item, args.valid_ratio,
                         not args.no_strict, args.seed, attribute_examples_per_item=args.attribute_examples_per_item)
    print(json.dumps({k: v for k, v in summary.items() if k != "items"}, indent=1))


if __name__ == "__main__":
    main()
