"""The contract between the semantic-ID pre-stage and the TIGER model.

The pre-stage stores codes per item *token* (stable across runs); TIGER needs them per
RecBole *internal* item id. :class:`SemanticIDs` is that mapped view.
"""
from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass
class SemanticIDs:
    # codes[i, l] = code of internal item id i at level l, in [0, codebook_sizes[l]).
    # Row 0 is RecBole's padding item: all -1, never a valid code.   [n_items, n_levels]
    codes: torch.Tensor
    # Size of each level's code range, e.g. [256, 256, 256, 8] (the last one is the
    # collision level when `dedup` is on; its size is what the artifact actually used).
    codebook_sizes: list
    # Text embeddings of the items, row 0 zeros (for tie-breaks / diagnostics).  [n_items, d]
    item_embeddings: Optional[torch.Tensor] = None
    # Whether the last level is the collision-numbering level.
    dedup: bool = True
    # Where the artifact lives and its content key (travels with checkpoints).
    artifact_path: Optional[str] = None
    artifact_key: Optional[str] = None
    stats: dict = field(default_factory=dict)

    @property
    def n_levels(self) -> int:
        return self.codes.shape[1]

    @property
    def n_items(self) -> int:
        return self.codes.shape[0]
