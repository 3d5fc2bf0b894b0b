"""A small language model that answers free-text queries with semantic IDs.

The same semantic IDs TIGER generates become tokens of a causal LM (``sid_text``); the
catalogue's ``.item`` file turns into chat examples (``examples``); the LM is fine-tuned on a
CPU (``finetune``) and decodes only valid IDs (``constrained``). ``evaluate`` measures it on
held-out queries next to a sentence-embedding nearest-neighbour baseline; ``ask`` answers one.
"""
