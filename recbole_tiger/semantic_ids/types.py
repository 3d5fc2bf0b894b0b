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

    def validate(self, n_items: int):
        """Raise ``ValueError`` naming the artifact unless these IDs fit a dataset with ``n_items``
        internal item ids (incl. padding id 0): shape, padding row, code ranges, uniqueness."""
        where = f"semantic IDs ({self.artifact_path or 'in memory'})"
        codes = self.codes
        if codes.dim() != 2 or codes.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"TIGER: {where}: codes must be an integer [n_items, n_levels] tensor, "
                             f"got {tuple(codes.shape)} {codes.dtype}.")
        if codes.shape[0] != n_items:
            raise ValueError(f"TIGER: {where} cover {codes.shape[0]} item ids, the dataset has "
                             f"{n_items} (incl. padding id 0): artifact built for another dataset?")
        if len(self.codebook_sizes) != codes.shape[1]:
            raise ValueError(f"TIGER: {where}: {codes.shape[1]} code levels but codebook_sizes="
                             f"{list(self.codebook_sizes)}.")
        if not bool((codes[0] == -1).all()):
            raise ValueError(f"TIGER: {where}: row 0 (padding item) must be all -1, got {codes[0].tolist()}.")
        for level, size in enumerate(self.codebook_sizes):
            bad = ((codes[1:, level] < 0) | (codes[1:, level] >= size)).nonzero()
            if len(bad):
                item = int(bad[0]) + 1
                raise ValueError(
                    f"TIGER: {where}: item id {item} has code {int(codes[item, level])} at level "
                    f"{level}, outside [0, {size}) (codebook_sizes={list(self.codebook_sizes)})."
                )
        if self.dedup and len(torch.unique(codes[1:], dim=0)) != codes.shape[0] - 1:
            raise ValueError(f"TIGER: {where}: dedup=True but only {len(torch.unique(codes[1:], dim=0))} "
                             f"distinct IDs for {codes.shape[0] - 1} items.")
