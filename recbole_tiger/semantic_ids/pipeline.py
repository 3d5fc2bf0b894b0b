"""item text → embeddings → quantizer → unique IDs → artifact, and artifact → :class:`SemanticIDs`.

The artifact is keyed by item *token* and named by a hash of every input that changes the
codes (the ``.item`` file's bytes, text fields, encoder fingerprint, quantizer settings,
seed), so it is reused across runs and filterings of the same data, and an artifact built
from other inputs is never picked up: it simply has another name. Loading checks the key
stored inside the file as well, in case a file was renamed or copied by hand.
"""
import glob
import hashlib
import logging
import os
import time

import numpy as np
import torch

from recbole_tiger.settings import setting
from recbole_tiger.semantic_ids.dedup import append_collision_code
from recbole_tiger.semantic_ids.diagnostics import (
    category_agreement,
    collision_stats,
    format_stats,
    level_usage_and_perplexity,
)
from recbole_tiger.semantic_ids.item_text import (
    atomic_item_path,
    build_item_texts,
    category_column,
    read_item_table,
    top_category,
)
from recbole_tiger.semantic_ids.kmeans import residual_kmeans
from recbole_tiger.semantic_ids.opq import opq_codes
from recbole_tiger.semantic_ids.rqvae import train_rqvae
from recbole_tiger.semantic_ids.settings import SemanticIDSettings
from recbole_tiger.atomic_io import atomic_torch_save, sha256_file, stable_hash
from recbole_tiger.semantic_ids.text_encoder import embed_texts, encoder_identity
from recbole_tiger.semantic_ids.types import SemanticIDs

logger = logging.getLogger()

ARTIFACT_FORMAT = 1


def artifact_dir(config, params):
    if params.sid_artifact_dir:
        return str(params.sid_artifact_dir)
    return os.path.join(setting(config, "checkpoint_dir", "saved"), "semantic_ids")


class ArtifactInputs:
    """Everything that determines an artifact: read once, hashed into its key."""

    def __init__(self, config, dataset_tokens, collaborative=None, settings=None):
        self.params = SemanticIDSettings.from_config(config) if settings is None else settings
        # co-purchase vectors {token: vector} from the training split (TIGERDataset), when used
        self.collaborative = collaborative if self.params.sid_collaborative_weight > 0 else None
        if self.params.sid_collaborative_weight > 0 and collaborative is None:
            raise ValueError("sid_collaborative_weight > 0 needs the training sequences: semantic IDs with "
                             "co-purchase features are built from a RecBole dataset (a TIGER run, or "
                             "`python -m recbole_tiger.data.build_semantic_ids`), not from the item file alone; "
                             "sid_collaborative_weight: 0 gives text-only IDs.")
        self.dataset_name = config["dataset"]
        self.item_path = atomic_item_path(config)
        self.table = read_item_table(
            self.item_path,
            item_id_field=setting(config, "ITEM_ID_FIELD", "item_id"),
            separator=setting(config, "field_separator", "\t"),
            encoding=setting(config, "encoding", "utf-8"),
        )
        # items of the dataset with no row in .item: part of the training set, hence of the key
        self.extra_tokens = [t for t in dataset_tokens if t not in self.table.rows]
        self.seed = int(self.params.sid_seed if self.params.sid_seed is not None
                        else setting(config, "seed", 2020))
        self.encoder_name, _, self.encoder_fingerprint = encoder_identity(self.params.sid_text_encoder)
        self.key_inputs = {
            "format": ARTIFACT_FORMAT,
            "item_file_sha256": sha256_file(self.item_path),
            "item_id_field": self.table.columns[self.table.id_column],
            "extra_tokens": stable_hash(sorted(self.extra_tokens)),
            "encoder": self.encoder_fingerprint,
            "seed": self.seed,
            **self.params.code_inputs(),
        }
        if self.collaborative is not None:
            tokens = sorted(self.collaborative["vectors"])
            matrix = np.stack([self.collaborative["vectors"][t] for t in tokens]).astype(np.float32)
            self.key_inputs["collaborative_vectors"] = stable_hash(
                [stable_hash(tokens), hashlib.sha256(np.round(matrix, 4).tobytes()).hexdigest()])
        self.key = stable_hash(self.key_inputs)
        self.directory = artifact_dir(config, self.params)
        self.path = os.path.join(
            self.directory, f"{self.dataset_name}-{self.params.sid_quantizer}-{self.key[:12]}.pt"
        )


def load_artifact(path, expected_key=None):
    """The artifact dict at ``path``; ``None`` if it is unreadable or its stored key differs."""
    try:
        artifact = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        logger.warning(f"Semantic IDs: cannot read {path} ({type(e).__name__}: {e}); rebuilding it.")
        return None
    if artifact.get("format") != ARTIFACT_FORMAT or (expected_key and artifact.get("key") != expected_key):
        logger.warning(f"Semantic IDs: {path} was built from other inputs (stale); rebuilding it.")
        return None
    return artifact


def load_or_build_artifact(config, dataset_tokens, collaborative=None, settings=None):
    """The artifact dict for ``config`` covering ``dataset_tokens``, built first if missing/stale
    (``collaborative``: co-purchase vectors, see ``ArtifactInputs``; ``settings``: the
    :class:`SemanticIDSettings` of ``config`` when the caller has built them already)."""
    inputs = ArtifactInputs(config, dataset_tokens, collaborative, settings)
    if os.path.isfile(inputs.path):
        artifact = load_artifact(inputs.path, inputs.key)
        if artifact is not None:
            missing = set(dataset_tokens) - set(artifact["tokens"])
            if not missing:
                logger.info(f"Semantic IDs: loaded {inputs.path}")
                artifact["path"] = inputs.path
                return artifact
            logger.warning(f"Semantic IDs: {inputs.path} lacks {len(missing)} dataset items (stale); rebuilding it.")
    else:
        others = [p for p in glob.glob(os.path.join(inputs.directory, f"{inputs.dataset_name}-*.pt"))
                  if p != inputs.path]
        why = (f"{len(others)} artifact(s) for other inputs exist there and are stale for this config"
               if others else "none built yet")
        logger.info(f"Semantic IDs: no artifact for these inputs at {inputs.path} ({why}); building it.")
    # Fork the global RNG: loading the encoder (random init before its weights are loaded) and
    # training the RQ-VAE would otherwise shift the random state RecBole seeded for the model,
    # so a run that builds the artifact and one that loads it would initialise TIGER differently.
    with torch.random.fork_rng(devices=[]):
        return build_artifact(inputs, config)


def build_artifact(inputs, config):
    params, t0 = inputs.params, time.time()
    device = torch.device(str(setting(config, "device", "cpu")))
    show_progress = setting(config, "show_progress", True) is not False
    seconds = {}

    texts = build_item_texts(inputs.table, params.sid_text_fields, inputs.extra_tokens,
                             params.sid_max_missing_text_ratio)
    seconds["text"] = time.time() - t0

    t = time.time()
    embeddings, _ = embed_texts(texts.texts, params.sid_text_encoder, device,
                                os.path.join(inputs.directory, "embeddings"),
                                params.sid_encode_batch_size, show_progress)
    seconds["embed"] = time.time() - t

    t = time.time()
    extra = None
    if inputs.collaborative is not None:
        vectors = inputs.collaborative["vectors"]
        dim = len(next(iter(vectors.values())))
        extra = np.stack([vectors.get(tok, np.zeros(dim, dtype=np.float32)) for tok in texts.tokens])
    codes, recon_mse, history = quantize(embeddings, params, device, inputs.seed, extra)
    seconds["quantize"] = time.time() - t

    n_levels, k = params.sid_n_levels, params.sid_codebook_size
    codebook_sizes = [k] * n_levels
    stats = {
        "n_items": len(texts.tokens),
        "n_items_without_text": texts.n_without_text,
        "text_fields": texts.text_fields,
        "encoder": inputs.encoder_name,
        "embedding_dim": int(embeddings.shape[1]),
        "quantizer": params.sid_quantizer,
        "n_quantized_levels": n_levels,
        "recon_mse": recon_mse,
        **level_usage_and_perplexity(codes, codebook_sizes),
        **collision_stats(codes),
        "category_agreement": _category_agreement(inputs.table, texts.tokens, codes[:, 0], params),
        **({"collaborative": {"weight": params.sid_collaborative_weight, "pairs": inputs.collaborative["n_pairs"],
                              "items_with_pairs": int((np.abs(extra).sum(1) > 0).sum())}} if extra is not None else {}),
        "history": history,
    }
    if params.sid_dedup:
        codes, needed = append_collision_code(codes, params.sid_dedup_size, texts.tokens)
        codebook_sizes.append(needed)
    stats["codebook_sizes"] = codebook_sizes
    stats["dedup"] = bool(params.sid_dedup)
    stats["unique_id_rate"] = collision_stats(codes)["unique_prefix_rate"]
    seconds["total"] = time.time() - t0
    stats["seconds"] = {k: round(v, 2) for k, v in seconds.items()}

    artifact = {
        "format": ARTIFACT_FORMAT,
        "key": inputs.key,
        "key_inputs": inputs.key_inputs,
        "dataset": inputs.dataset_name,
        "item_file": inputs.item_path,
        "params": params.as_dict(),
        "encoder": inputs.encoder_name,
        "tokens": texts.tokens,
        "texts": texts.texts,
        "codes": codes.long(),                                   # [N, L]
        "codebook_sizes": codebook_sizes,
        "dedup": bool(params.sid_dedup),
        "embeddings": torch.from_numpy(np.ascontiguousarray(embeddings)),  # [N, d]
        "stats": stats,
    }
    atomic_torch_save(inputs.path, artifact)
    logger.info(f"Semantic IDs: wrote {inputs.path}\n{format_stats(stats)}")
    artifact["path"] = inputs.path  # where it lives (not stored: files can move)
    return artifact


def quantize(embeddings, params, device, seed, extra=None):
    """Codes [N, n_levels] (cpu), reconstruction MSE (None for rqkmeans), training history.
    ``extra`` [N, d'] (co-purchase vectors; rqkmeans and opq) joins the embeddings with weight
    ``sid_collaborative_weight``."""
    threads = torch.get_num_threads()
    if device.type == "cpu" and params.sid_num_threads:
        # Batches of 128 × 512 are too small to split across threads: on a shared 2-core
        # machine 2 threads made ml-100k's RQ-VAE 7× slower (103 s vs 14.5 s) than 1.
        torch.set_num_threads(int(params.sid_num_threads))
    try:
        return _quantize(embeddings, params, device, seed, extra)
    finally:
        torch.set_num_threads(threads)


def standardise(x, inplace=False):
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    return x.sub_(mean).div_(std) if inplace else (x - mean) / std


def _quantize(embeddings, params, device, seed, extra=None):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        n_levels, k = params.sid_n_levels, params.sid_codebook_size
        if len(embeddings) < k:
            raise ValueError(
                f"Only {len(embeddings)} items but sid_codebook_size={k}: codebooks cannot be "
                "initialised; lower sid_codebook_size."
            )
        if params.sid_quantizer in ("rqkmeans", "opq"):
            x = _kmeans_input(embeddings, params, device, extra)
            if params.sid_quantizer == "opq":
                codes = torch.from_numpy(opq_codes(x.cpu().numpy(), n_codebooks=n_levels, codebook_size=k,
                                                   seed=seed, iters=params.sid_kmeans_iters))
                logger.info(f"OPQ: {level_usage_and_perplexity(codes, [k] * n_levels)}")
                return codes, None, []
            _, codes = residual_kmeans(x, n_levels, k, generator, params.sid_kmeans_iters, overwrite_input=True)
            logger.info(f"Residual k-means: {level_usage_and_perplexity(codes.cpu(), [k] * n_levels)}")
            return codes.cpu(), None, []
        return train_rqvae(embeddings, params, device, generator)


def _kmeans_input(embeddings, params, device, extra):
    """[N, D (+ d')] float32: the embeddings standardised (as the RQ-VAE does) and, with ``extra``,
    the co-purchase block joined at weight ``sid_collaborative_weight``. One float32 copy of the
    (possibly memory-mapped) embeddings, standardised in place, which residual k-means then reuses
    as its residual buffer: ~2 x N x D x 4 bytes at the peak."""
    x = torch.tensor(np.asarray(embeddings), dtype=torch.float32, device=device)
    x = standardise(x, inplace=True)
    if extra is not None:
        # each block standardised, then the co-purchase block scaled so its total variance is
        # `weight` x the text block's; items without pairs sit at its centre (0)
        c = torch.as_tensor(extra, dtype=torch.float32, device=device)
        has_pairs = c.abs().sum(1, keepdim=True) > 0
        c = standardise(c) * has_pairs
        c = c * (params.sid_collaborative_weight * x.shape[1] / c.shape[1]) ** 0.5
        x = torch.cat([x, c], dim=1)
    return x


def _category_agreement(table, tokens, first_codes, params):
    col = category_column(table, params.sid_category_field)
    if col is None:
        return {}
    name = table.columns[col]
    values = [table.rows[t][col] if t in table.rows else "" for t in tokens]
    result = {f"top {name}": category_agreement(first_codes.tolist(), [top_category(v) for v in values])}
    if any("," in v for v in values):  # hierarchical lists: the two-level category is more telling
        two = [", ".join(p.strip() for p in v.split(",")[:2]) if v.strip() else "" for v in values]
        result[f"top-2 {name}"] = category_agreement(first_codes.tolist(), two)
    return result


def semantic_ids_for_tokens(artifact, id_tokens, path=None):
    """Map an artifact onto internal ids: ``id_tokens[i]`` is the token of internal id i (0 = pad)."""
    index = {t: i for i, t in enumerate(artifact["tokens"])}
    rows = [index.get(str(t), -1) for t in id_tokens[1:]]
    missing = [str(t) for t, r in zip(id_tokens[1:], rows) if r < 0]
    if missing:
        raise KeyError(f"Semantic-ID artifact {path} has no codes for {len(missing)} items, e.g. {missing[:5]}.")
    rows = torch.tensor(rows, dtype=torch.long)
    codes = artifact["codes"]
    mapped = torch.full((len(id_tokens), codes.shape[1]), -1, dtype=torch.long)
    mapped[1:] = codes[rows]
    emb = artifact.get("embeddings")
    item_embeddings = None
    if emb is not None:
        item_embeddings = torch.zeros(len(id_tokens), emb.shape[1], dtype=emb.dtype)
        item_embeddings[1:] = emb[rows]
    return SemanticIDs(
        codes=mapped,
        codebook_sizes=list(artifact["codebook_sizes"]),
        item_embeddings=item_embeddings,
        dedup=bool(artifact["dedup"]),
        artifact_path=path,
        artifact_key=artifact["key"],
        stats=artifact["stats"],
    )


def load_or_build_semantic_ids(config, dataset, collaborative=None, settings=None):
    """Semantic IDs for every internal item id of a RecBole ``dataset`` (row 0 = padding = -1).

    Loads ``<checkpoint_dir>/semantic_ids/<dataset>-<quantizer>-<key>.pt`` (or
    ``sid_artifact_dir``), building it first when missing or stale.
    """
    id_tokens = [str(t) for t in dataset.field2id_token[dataset.iid_field]]
    if len(id_tokens) != dataset.item_num:
        raise ValueError(f"dataset.field2id_token has {len(id_tokens)} item tokens, item_num={dataset.item_num}.")
    if collaborative is not None:  # vectors by internal id -> by token
        collaborative = {"vectors": {t: collaborative["vectors"][i] for i, t in enumerate(id_tokens) if i},
                         "n_pairs": collaborative["n_pairs"]}
    artifact = load_or_build_artifact(config, id_tokens[1:], collaborative, settings)
    return semantic_ids_for_tokens(artifact, id_tokens, artifact["path"])
