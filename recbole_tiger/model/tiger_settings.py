"""TIGER's settings (properties/model/TIGER.yaml documents each key), typed and checked once."""
from dataclasses import dataclass, field

from recbole_tiger.settings import check_choice, settings_from_config

EVAL_MODES = ("beam", "exact")
EVAL_OUTPUTS = ("dense", "topk")
TIE_BREAKS = ("popularity", "cosine")
ENCODER_TOKENS = ("code", "item")
TRAIN_TARGETS = ("last", "all")
BACKBONES = ("own", "t5")


@dataclass
class TIGERSettings:
    # architecture
    backbone: str = "own"
    d_model: int = 128
    n_encoder_layers: int = 4
    n_decoder_layers: int = 4
    n_heads: int = 6
    d_head: int = 64
    d_ff: int = 1024
    dropout_prob: float = 0.1
    attn_dropout_prob: float = 0.1
    n_user_tokens: int = 0
    encoder_tokens: str = "code"
    initializer_range: float = 0.02
    item_id_embedding: bool = False    # history items: + an embedding of their own item id (input side only)
    tie_code_embeddings: bool = False  # output layer = the code tokens' input embeddings (T5, GRID)
    # training
    train_targets: str = "last"
    label_smoothing: float = 0.0       # ε: (1-ε)·CE + ε·mean over the level's codes of -log p (0 = the paper's)
    sequence_stride: int = None        # None = MAX_ITEM_LIST_LENGTH // 2 (filled in by from_config)
    # ranking
    beam_size: int = 20
    length_bucket_size: int = 64
    eval_exclude_history: bool = False  # the protocol (overall.yaml); True: beams skip history IDs
    eval_mode: str = "beam"            # mutable at run time: the beam-vs-exact check switches it
    eval_output: str = "dense"         # dense: RecBole's [users, items] scores; topk: top-K only
    tie_break: str = "popularity"
    popularity_penalty: float = 0.0    # α: rank by log P(ID | history) − α·log P_train(ID); 0 = the paper's
    topk: list = field(default_factory=lambda: [10])

    @classmethod
    def from_config(cls, config, max_seq_length):
        stride = settings_from_config(cls, config).sequence_stride
        settings = settings_from_config(
            cls, config, sequence_stride=max(1, max_seq_length // 2) if stride is None else int(stride))
        settings.check(max_seq_length)
        return settings

    @property
    def causal_encoder(self) -> bool:
        """One pass per sequence needs item t's encoder state to depend on items <= t only."""
        return self.train_targets == "all"

    @property
    def max_topk(self) -> int:
        return max(self.topk) if isinstance(self.topk, (list, tuple)) else int(self.topk)

    def check(self, max_seq_length):
        check_choice("TIGER", "eval_mode", self.eval_mode, EVAL_MODES)
        check_choice("TIGER", "eval_output", self.eval_output, EVAL_OUTPUTS)
        check_choice("TIGER", "tie_break", self.tie_break, TIE_BREAKS)
        check_choice("TIGER", "encoder_tokens", self.encoder_tokens, ENCODER_TOKENS)
        check_choice("TIGER", "train_targets", self.train_targets, TRAIN_TARGETS)
        check_choice("TIGER", "backbone", self.backbone, BACKBONES)
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
