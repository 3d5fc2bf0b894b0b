"""The ``sid_*`` config keys and their defaults.

The same defaults are written in ``properties/model/TIGER.yaml`` (semantic IDs section, where
users read them); ``tests/test_semantic_ids.py`` checks the two agree. They live here too so
the pre-stage works from any RecBole ``Config`` (e.g. the CLI or a baseline's config), where
missing keys read as ``None``.
"""
from recbole_tiger.settings import lookup

DEFAULTS = {
    # item text
    "sid_text_fields": None,
    "sid_max_missing_text_ratio": 0.05,
    # embeddings
    "sid_text_encoder": None,
    "sid_encode_batch_size": 32,
    # quantizer
    "sid_quantizer": "rqkmeans",
    "sid_n_levels": 3,
    "sid_codebook_size": 256,
    "sid_hidden_sizes": [512, 256, 128],
    "sid_latent_dim": 32,
    "sid_beta": 0.25,
    "sid_ema_decay": 0.99,
    "sid_learner": "adam",
    "sid_learning_rate": 0.001,
    "sid_batch_size": 128,
    "sid_epochs": 20,
    "sid_kmeans_init_size": 16384,
    "sid_kmeans_iters": 25,
    "sid_dead_code_threshold": 1,
    "sid_seed": None,
    "sid_num_threads": 1,
    # co-purchase features mixed into the text embedding (collaborative.py; rqkmeans only)
    "sid_collaborative_weight": 0.3,
    "sid_collaborative_dim": 64,
    "sid_collaborative_window": 3,
    # unique IDs
    "sid_dedup": True,
    "sid_dedup_size": 256,
    # diagnostics and storage
    "sid_category_field": None,
    "sid_log_interval": 5,
    "sid_artifact_dir": None,
}

# Keys that change the codes, hence the artifact key. The others only guard (missing-text
# ratio), log, or say where files go; changing them must not force a rebuild.
CODE_KEYS = [
    "sid_text_fields", "sid_text_encoder", "sid_quantizer", "sid_n_levels", "sid_codebook_size",
    "sid_hidden_sizes", "sid_latent_dim", "sid_beta", "sid_ema_decay", "sid_learner",
    "sid_learning_rate", "sid_batch_size", "sid_epochs", "sid_kmeans_init_size",
    "sid_kmeans_iters", "sid_dead_code_threshold", "sid_dedup", "sid_dedup_size",
]
NULLABLE = {"sid_text_fields", "sid_text_encoder", "sid_dedup_size", "sid_category_field",
            "sid_artifact_dir", "sid_seed", "sid_num_threads"}
RQVAE_ONLY_KEYS = {
    "sid_hidden_sizes", "sid_latent_dim", "sid_beta", "sid_ema_decay", "sid_learner",
    "sid_learning_rate", "sid_batch_size", "sid_epochs", "sid_kmeans_init_size",
    "sid_dead_code_threshold",
}


def resolve_params(config):
    """``sid_*`` settings from ``config`` (dict-like, missing → None) over the defaults.

    A key set explicitly to ``~`` keeps ``None`` (meaning: every column / the bundled
    encoder / an uncapped collision level); a missing key takes the default.
    """
    params = {}
    for key, default in DEFAULTS.items():
        present, value = lookup(config, key)
        explicit_none = present and value is None and key in NULLABLE
        params[key] = value if value is not None or explicit_none else default
    if params["sid_quantizer"] not in ("rqvae", "rqkmeans"):
        raise ValueError(f"sid_quantizer={params['sid_quantizer']!r}: expected rqvae or rqkmeans.")
    params["sid_hidden_sizes"] = [int(h) for h in params["sid_hidden_sizes"]]
    for key in ("sid_n_levels", "sid_codebook_size", "sid_latent_dim", "sid_batch_size", "sid_epochs",
                "sid_kmeans_init_size", "sid_kmeans_iters", "sid_log_interval"):
        params[key] = int(params[key])
    for key in ("sid_beta", "sid_ema_decay", "sid_learning_rate", "sid_max_missing_text_ratio"):
        params[key] = float(params[key])
    params["sid_collaborative_weight"] = float(params["sid_collaborative_weight"])
    for key in ("sid_collaborative_dim", "sid_collaborative_window"):
        params[key] = int(params[key])
    if params["sid_collaborative_weight"] < 0:
        raise ValueError(f"sid_collaborative_weight={params['sid_collaborative_weight']}: expected >= 0.")
    if params["sid_collaborative_weight"] > 0 and params["sid_quantizer"] != "rqkmeans":
        raise ValueError(f"sid_quantizer: {params['sid_quantizer']} needs sid_collaborative_weight: 0 (co-purchase "
                         "vectors mix only into residual k-means: the RQ-VAE standardises every input dimension, "
                         "which would undo the weight).")
    if params["sid_dedup_size"] is not None:
        params["sid_dedup_size"] = int(params["sid_dedup_size"])
    return params


COLLABORATIVE_KEYS = ["sid_collaborative_weight", "sid_collaborative_dim", "sid_collaborative_window"]


def code_inputs(params):
    """The settings that determine the codes (rqkmeans ignores the RQ-VAE training keys; the
    co-purchase keys count only when they are used, so text-only artifacts keep their keys)."""
    keys = [k for k in CODE_KEYS if params["sid_quantizer"] == "rqvae" or k not in RQVAE_ONLY_KEYS]
    if params["sid_collaborative_weight"] > 0:
        keys += COLLABORATIVE_KEYS
    return {k: params[k] for k in keys}
