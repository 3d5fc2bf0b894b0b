"""The pre-stage's settings: the ``sid_*`` keys, typed and checked once.

Their defaults live in one place, the semantic-ID section of ``properties/model/TIGER.yaml``,
which every TIGER config loads. Code that has no RecBole ``Config`` (a script quantizing
embeddings, a test) starts from that section with :func:`yaml_defaults`.
"""
import dataclasses
import os
from dataclasses import dataclass
from typing import Optional

import yaml

from recbole_tiger.settings import read_settings

TIGER_YAML = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "properties", "model", "TIGER.yaml")
QUANTIZERS = ("rqkmeans", "rqvae", "opq")


@dataclass(frozen=True)
class SemanticIDSettings:
    # item text
    sid_text_fields: Optional[list]
    sid_max_missing_text_ratio: float
    # embeddings
    sid_text_encoder: Optional[str]
    sid_encode_batch_size: int
    # quantizer
    sid_quantizer: str
    sid_n_levels: int
    sid_codebook_size: int
    sid_hidden_sizes: list
    sid_latent_dim: int
    sid_beta: float
    sid_ema_decay: float
    sid_learner: str
    sid_learning_rate: float
    sid_batch_size: int
    sid_epochs: int
    sid_kmeans_init_size: int
    sid_kmeans_iters: int
    sid_dead_code_threshold: int
    sid_seed: Optional[int]
    sid_num_threads: Optional[int]
    # co-purchase features mixed into the text embedding (collaborative.py; rqkmeans and opq)
    sid_collaborative_weight: float
    sid_collaborative_dim: int
    sid_collaborative_window: int
    # unique IDs
    sid_dedup: bool
    sid_dedup_size: Optional[int]
    # diagnostics and storage
    sid_category_field: Optional[str]
    sid_log_interval: int
    sid_artifact_dir: Optional[str]

    @classmethod
    def from_config(cls, config):
        """The settings of ``config`` (a RecBole ``Config`` or a dict). Every key must be there:
        ``~`` means None where None has a meaning (every column, the bundled encoder, an
        uncapped collision level, ``seed``, the torch default) and is an error elsewhere."""
        return read_settings(cls, config, component="semantic IDs", source=TIGER_YAML)

    def __post_init__(self):
        object.__setattr__(self, "sid_hidden_sizes", [int(h) for h in self.sid_hidden_sizes])
        if self.sid_quantizer not in QUANTIZERS:
            raise ValueError(f"sid_quantizer={self.sid_quantizer!r}: expected one of {', '.join(QUANTIZERS)}.")
        if self.sid_collaborative_weight < 0:
            raise ValueError(f"sid_collaborative_weight={self.sid_collaborative_weight}: expected >= 0.")
        if self.sid_collaborative_weight > 0 and self.sid_quantizer == "rqvae":
            raise ValueError(f"sid_quantizer: {self.sid_quantizer} needs sid_collaborative_weight: 0 (co-purchase "
                             "vectors mix only into the k-means quantizers (rqkmeans, opq): the RQ-VAE standardises every input dimension, "
                             "which would undo the weight).")

    @property
    def uses_collaborative(self) -> bool:
        """Co-purchase vectors from the training split enter the codes."""
        return self.sid_collaborative_weight > 0

    def as_dict(self):
        """{key: value}, plain Python values (what an artifact stores)."""
        return dataclasses.asdict(self)

    def code_inputs(self):
        """The settings that determine the codes, hence the artifact key. The others only guard
        (missing-text ratio), log, or say where files go; changing them must not force a rebuild.
        rqkmeans and opq ignore the RQ-VAE training keys; the co-purchase keys count only when they are
        used, so text-only artifacts keep their keys."""
        keys = [k for k in CODE_KEYS if self.sid_quantizer == "rqvae" or k not in RQVAE_ONLY_KEYS]
        if self.uses_collaborative:
            keys += COLLABORATIVE_KEYS
        return {k: getattr(self, k) for k in keys}


CODE_KEYS = [
    "sid_text_fields", "sid_text_encoder", "sid_quantizer", "sid_n_levels", "sid_codebook_size",
    "sid_hidden_sizes", "sid_latent_dim", "sid_beta", "sid_ema_decay", "sid_learner",
    "sid_learning_rate", "sid_batch_size", "sid_epochs", "sid_kmeans_init_size",
    "sid_kmeans_iters", "sid_dead_code_threshold", "sid_dedup", "sid_dedup_size",
]
RQVAE_ONLY_KEYS = {
    "sid_hidden_sizes", "sid_latent_dim", "sid_beta", "sid_ema_decay", "sid_learner",
    "sid_learning_rate", "sid_batch_size", "sid_epochs", "sid_kmeans_init_size",
    "sid_dead_code_threshold",
}
COLLABORATIVE_KEYS = ["sid_collaborative_weight", "sid_collaborative_dim", "sid_collaborative_window"]
KEYS = [f.name for f in dataclasses.fields(SemanticIDSettings)]


def yaml_defaults():
    """{sid_* key: default} as ``properties/model/TIGER.yaml`` sets them."""
    with open(TIGER_YAML, encoding="utf-8") as f:
        values = yaml.safe_load(f)
    return {k: values[k] for k in KEYS if k in values}
