"""TIGER's settings, typed and checked once. properties/model/TIGER.yaml documents every key and
is the only source of their defaults (it is always loaded for ``--model=TIGER``)."""
import dataclasses
from dataclasses import dataclass
from typing import Optional

from recbole_tiger.precision import CHOICES as PRECISIONS
from recbole_tiger.settings import check_choice, lookup, read_settings, typed

EVAL_MODES = ("beam", "exact")
EVAL_OUTPUTS = ("dense", "topk")
TIE_BREAKS = ("popularity", "cosine")
ENCODER_TOKENS = ("code", "item")
TRAIN_TARGETS = ("last", "all")
BACKBONES = ("own", "t5")

MODEL_YAML = "properties/model/TIGER.yaml"
# Fields whose default lives in another layer than TIGER.yaml (the evaluation protocol).
DEFINED_ELSEWHERE = {"topk": "properties/overall.yaml", "eval_exclude_history": "properties/overall.yaml"}
# How a trained model ranks, not what it learned: the keys TIGER.set_ranking may change.
RANKING_KEYS = ("eval_mode", "beam_size", "popularity_penalty", "eval_exclude_history", "tie_break",
                "eval_output", "length_bucket_size", "fusion_weight", "text_fusion_weight", "text_nn_decay",
                "cold_candidates")


@dataclass(frozen=True)
class TIGERSettings:
    # architecture
    backbone: str
    d_model: int
    n_encoder_layers: int
    n_decoder_layers: int
    n_heads: int
    d_head: int
    d_ff: int
    dropout_prob: float
    attn_dropout_prob: float
    n_user_tokens: int
    encoder_tokens: str
    initializer_range: float
    item_id_embedding: bool
    tie_code_embeddings: bool
    # the dense head (layers/dense_head.py)
    dense_head: bool
    dense_item_features: list
    dense_temperature: float
    dense_loss_weight: float
    # training
    train_targets: str
    label_smoothing: float
    sequence_stride: Optional[int]       # the yaml's ``~`` (MAX_ITEM_LIST_LENGTH // 2) is resolved by from_config
    precision: str                       # auto | float32 | bfloat16 (recbole_tiger/precision.py), training and ranking
    # ranking
    beam_size: int
    length_bucket_size: int
    eval_exclude_history: bool
    eval_mode: str
    eval_output: str
    tie_break: str
    popularity_penalty: float
    fusion_weight: float
    text_fusion_weight: float
    text_fusion_choices: Optional[list]   # chosen on valid after training (TIGERTrainer.choose_on_valid)
    text_nn_decay: float
    cold_candidates: bool
    topk: list

    @classmethod
    def from_config(cls, config, max_seq_length):
        """The checked settings of ``config`` (a RecBole ``Config`` or a dict); every key must be
        there (``recbole_tiger.config.Config`` loads TIGER.yaml for ``--model=TIGER``)."""
        present, stride = lookup(config, "sequence_stride")  # missing: read_settings names it
        computed = {}
        if present:
            computed["sequence_stride"] = max(1, max_seq_length // 2) if stride is None else int(stride)
        settings = read_settings(cls, config, component="TIGER", source=MODEL_YAML, sources=DEFINED_ELSEWHERE,
                                 **computed)
        settings.check(max_seq_length)
        return settings

    @property
    def causal_encoder(self) -> bool:
        """One pass per sequence needs item t's encoder state to depend on items <= t only."""
        return self.train_targets == "all"

    @property
    def max_topk(self) -> int:
        return max(self.topk) if isinstance(self.topk, (list, tuple)) else int(self.topk)

    def with_ranking(self, max_seq_length, **changes):
        """A checked copy with other ranking-time settings (RANKING_KEYS only)."""
        unknown = sorted(set(changes) - set(RANKING_KEYS))
        if unknown:
            raise ValueError(f"TIGER: {unknown} are not ranking settings; set_ranking changes only {RANKING_KEYS}.")
        types = {f.name: f.type for f in dataclasses.fields(self)}
        try:
            changes = {key: typed(types[key], value) for key, value in changes.items()}
        except (TypeError, ValueError) as err:
            raise ValueError(f"TIGER: set_ranking({changes}): {err}") from None
        settings = dataclasses.replace(self, **changes)
        settings.check(max_seq_length)
        return settings

    def check(self, max_seq_length):
        check_choice("TIGER", "eval_mode", self.eval_mode, EVAL_MODES)
        check_choice("TIGER", "eval_output", self.eval_output, EVAL_OUTPUTS)
        check_choice("TIGER", "tie_break", self.tie_break, TIE_BREAKS)
        check_choice("TIGER", "encoder_tokens", self.encoder_tokens, ENCODER_TOKENS)
        check_choice("TIGER", "train_targets", self.train_targets, TRAIN_TARGETS)
        check_choice("TIGER", "backbone", self.backbone, BACKBONES)
        check_choice("TIGER", "precision", self.precision, PRECISIONS)
        if self.dense_temperature <= 0 or self.dense_loss_weight < 0 or self.fusion_weight < 0:
            raise ValueError(f"TIGER: dense_temperature={self.dense_temperature} (> 0), dense_loss_weight="
                             f"{self.dense_loss_weight}, fusion_weight={self.fusion_weight} (>= 0) out of range.")
        if self.text_fusion_weight < 0 or not 0.0 < self.text_nn_decay <= 1.0:
            raise ValueError(f"TIGER: text_fusion_weight={self.text_fusion_weight} (>= 0), text_nn_decay="
                             f"{self.text_nn_decay} (0 < decay <= 1) out of range.")
        choices = self.text_fusion_choices or []
        if not isinstance(choices, (list, tuple)) or any(not isinstance(w, (int, float)) or w < 0 for w in choices):
            raise ValueError(f"TIGER: text_fusion_choices={self.text_fusion_choices}, expected ~ or a list of "
                             "weights >= 0.")
        if (self.text_fusion_weight > 0 or self.cold_candidates or any(choices)) and not self.dense_head:
            raise ValueError(f"TIGER: text_fusion_weight={self.text_fusion_weight}, text_fusion_choices="
                             f"{self.text_fusion_choices}, cold_candidates={self.cold_candidates} are rankings "
                             "of the dense head; set dense_head: True.")
        if self.cold_candidates and self.eval_mode != "beam":
            raise ValueError("TIGER: cold_candidates ranks the beam's items and the cold items; it needs "
                             "eval_mode: beam (exact mode scores every item).")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"TIGER: label_smoothing={self.label_smoothing}, expected 0 <= ε < 1.")
        if self.beam_size < self.max_topk:
            raise ValueError(
                f"TIGER: beam_size={self.beam_size} < max(topk)={self.max_topk}; beam search returns at "
                "most beam_size items, so Recall/NDCG@K would silently count unranked items. "
                f"Set beam_size >= {self.max_topk}."
            )
        if not 1 <= self.sequence_stride <= max_seq_length:
            raise ValueError(f"TIGER: sequence_stride={self.sequence_stride}, expected 1..MAX_ITEM_LIST_LENGTH "
                             f"({max_seq_length}).")
        if self.train_targets == "all" and self.encoder_tokens != "item":
            raise ValueError("TIGER: train_targets=all needs encoder_tokens=item (the causal encoder "
                             "masks whole items; with one token per code it would not).")
