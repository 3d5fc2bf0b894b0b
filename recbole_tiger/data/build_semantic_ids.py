"""Build or load a dataset's semantic-ID artifact and print its diagnostics.

    python -m recbole_tiger.data.build_semantic_ids --dataset=amazon-beauty --data_path=<folder of prepared datasets>
    python -m recbole_tiger.data.build_semantic_ids --dataset=ml-100k --sid_quantizer=rqvae --sid_collaborative_weight=0

Any ``--key=value`` overrides the defaults of ``properties/overall.yaml`` and
``properties/model/TIGER.yaml`` (values parsed as YAML). With co-purchase features (the default,
``sid_collaborative_weight: 0.3``) the IDs depend on the training split, so RecBole loads the
dataset and the artifact is the one a TIGER run builds. Text-only IDs (weight 0) need no
RecBole dataset: the item set is the union of the ``.item`` file and the item column of the
unfiltered ``.inter`` file; for datasets whose interactions only name items of ``.item`` (e.g.
Amazon Beauty) that is the same artifact a TIGER run builds.
"""
import logging
import os
import random
import sys
from collections import defaultdict

import yaml

from recbole_tiger.config import Config
from recbole_tiger.data.dataset import create_dataset
from recbole_tiger.semantic_ids.diagnostics import format_stats
from recbole_tiger.semantic_ids.pipeline import load_artifact, load_or_build_artifact
from recbole_tiger.semantic_ids.settings import SemanticIDSettings
from recbole_tiger.settings import setting


def parse_args(argv):
    args = {}
    for arg in argv:
        if arg in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        if not arg.startswith("--") or "=" not in arg:
            sys.exit(f"expected --key=value, got {arg!r}")
        key, value = arg[2:].split("=", 1)
        args[key] = yaml.safe_load(value) if value != "" else None
    return args


def build_config(args):
    """TIGER's config for ``args['dataset']`` with the plugin's layered property files, exactly as
    a TIGER run reads it (``recbole_tiger.config.Config``); ``args`` override like ``config_dict``."""
    if "dataset" not in args:
        sys.exit("missing --dataset=NAME")
    saved_argv = sys.argv
    try:
        sys.argv = sys.argv[:1]  # the arguments arrive through `args`, not a second parse of argv
        return Config(model="TIGER", dataset=args["dataset"], config_dict=args)
    finally:
        sys.argv = saved_argv


def interaction_item_tokens(config):
    """Item tokens of the unfiltered ``.inter`` file, first-seen order ([] without the file)."""
    path = os.path.join(config["data_path"], f"{config['dataset']}.inter")
    if not os.path.isfile(path):
        return []
    sep = setting(config, "field_separator", "\t")
    with open(path, encoding="utf-8-sig") as f:
        header = [h.split(":")[0] for h in f.readline().rstrip("\r\n").split(sep)]
        if config["ITEM_ID_FIELD"] not in header:
            return []
        col = header.index(config["ITEM_ID_FIELD"])
        seen = {}
        for line in f:
            cells = line.rstrip("\r\n").split(sep)
            if len(cells) > col and cells[col]:
                seen.setdefault(cells[col], None)
    return list(seen)


def print_examples(artifact, n_codes=8, per_code=3, seed=0):
    """A few item texts per first-level code, so a person can see whether codes mean something."""
    groups = defaultdict(list)
    for i, c in enumerate(artifact["codes"][:, 0].tolist()):
        groups[c].append(i)
    rng = random.Random(seed)
    codes = sorted(rng.sample(sorted(groups), min(n_codes, len(groups))))
    print(f"\nExamples ({per_code} random items for {len(codes)} random first-level codes):")
    for c in codes:
        members = groups[c]
        print(f"  code {c} ({len(members)} items):")
        for i in rng.sample(members, min(per_code, len(members))):
            text = artifact["texts"][i]
            ident = "-".join(str(v) for v in artifact["codes"][i].tolist())
            print(f"    [{ident}] {text[:110]}{'…' if len(text) > 110 else ''}")


def artifact_for(config):
    """The artifact a TIGER run with ``config`` uses, built if missing. With co-purchase features
    (``sid_collaborative_weight`` > 0) the IDs depend on the training split: RecBole builds the
    dataset (filters, split) and the artifact exactly as a TIGER run does. Text-only IDs need no
    RecBole dataset."""
    settings = SemanticIDSettings.from_config(config)
    if not settings.uses_collaborative:
        return load_or_build_artifact(config, interaction_item_tokens(config), settings=settings)
    dataset = create_dataset(config)
    dataset.build()  # builds (or finds) the artifact, as TIGERDataset does in a run
    path = dataset.semantic_ids.artifact_path
    return {**load_artifact(path), "path": path}


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    config = build_config(parse_args(sys.argv[1:] if argv is None else argv))
    artifact = artifact_for(config)
    print(f"\nArtifact: {artifact['path']}")
    print(format_stats(artifact["stats"]))
    print_examples(artifact)


if __name__ == "__main__":
    main()
