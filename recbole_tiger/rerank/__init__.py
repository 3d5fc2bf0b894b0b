"""A trained language-model reranker (P5/VIP5 style) over any RecBole model's top-K.

``candidates`` takes a checkpoint's top-K per user on RecBole's own split; ``prompts`` turns
histories and candidates into sequential and direct (yes/no) prompts; ``model`` is the LM with
an optional item-feature projection (VIP5's visual tokens) that scores candidates by
likelihood; ``train`` fits it (LoRA or full) with validation NDCG@10 and early stopping;
``compare`` writes the first stage / trained / untrained / baselines table.
"""
