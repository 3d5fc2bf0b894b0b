"""Semantic IDs for TIGER: item text → sentence embeddings → RQ-VAE (or residual k-means)
→ unique code tuples, stored as a reusable artifact with diagnostics.

Public API: :func:`load_or_build_semantic_ids` (what ``TIGERDataset`` calls) and
:class:`SemanticIDs` (what it gets). ``python -m recbole_tiger.data.build_semantic_ids --help``
builds or loads a dataset's artifact from the command line and prints its diagnostics.
"""
from recbole_tiger.semantic_ids.pipeline import load_or_build_semantic_ids
from recbole_tiger.semantic_ids.types import SemanticIDs

__all__ = ["load_or_build_semantic_ids", "SemanticIDs"]
