"""A two-tower text reranker: one sentence encoder embeds a user's recent items (their titles,
oldest first) and each candidate's title, and a candidate's score is the cosine of the two.

Untrained it is the pre-trained encoder's zero-shot similarity, so "trained > untrained" asks
whether training taught it something. Training fine-tunes the whole encoder *listwise* on the
first stage's own lists: a training query's target against the other candidates the first
stage ranked for it, softmax cross-entropy over the list, which is the reranking task itself.
All-MiniLM-L6-v2 (22M parameters, bundled offline) trains for several epochs in minutes on a
CPU core, where the 135M causal LM of ``model.Reranker`` needs hours per epoch.

It answers the same calls as ``model.Reranker`` (``loss``, ``training_examples``, scores via
``score_titles``), so ``train.train_reranker`` and ``compare`` use either.
"""
import random

import torch
from torch import nn

from recbole_tiger.precision import autocast
from recbole_tiger.rerank.prompts import history_text

TOWER_MODELS = ("minilm",)   # --base_model values that build a TowerReranker
TOWER_PREFIX = "sentence-transformers:"   # --base_model=sentence-transformers:<name or local folder>


def is_tower(base_model):
    return base_model in TOWER_MODELS or str(base_model).startswith(TOWER_PREFIX)


def load_tower_encoder(base_model, device="cpu"):
    """The SentenceTransformer a ``--base_model`` names (``minilm``: the bundled all-MiniLM-L6-v2)."""
    from recbole_tiger.semantic_ids.text_encoder import load_sentence_encoder

    name = None if base_model in TOWER_MODELS else str(base_model)[len(TOWER_PREFIX):]
    return load_sentence_encoder(name, device)


class TowerReranker(nn.Module):
    feature_id = None            # no VIP5 feature token: the towers read text only
    method = "full"              # the whole encoder is fine-tuned (LoRA targets are a causal LM's)

    def __init__(self, encoder, precision="float32", temperature=0.05):
        """``encoder``: a SentenceTransformer (its modules end in a sentence embedding);
        ``temperature``: cosines are divided by it before the softmax (0.05, as in
        sentence-transformers' MultipleNegativesRankingLoss)."""
        super().__init__()
        self.encoder, self.precision, self.temperature = encoder, precision, temperature

    @property
    def device(self):
        return next(self.parameters()).device

    def embed(self, texts):
        """[N] texts -> [N, d] unit vectors (float32 whatever the precision)."""
        # sentence-transformers' tokenize also returns non-tensor entries (e.g. the text's modality)
        features = {k: v.to(self.device) if torch.is_tensor(v) else v
                    for k, v in self.encoder.tokenize(list(texts)).items()}
        with autocast(self.precision, self.device.type):
            vectors = self.encoder(features)["sentence_embedding"]
        return nn.functional.normalize(vectors.float(), dim=-1)

    def training_examples(self, split, titles, n_negatives=None, seed=0):
        """One example per training query: its history text and the titles of its list, the target
        first; ``n_negatives`` keeps the first stage's top-ranked other candidates (None: all)."""
        examples = []
        for row in range(len(split["users"])):
            target = int(split["target"][row])
            negatives = [int(c) for c in split["candidates"][row] if int(c) != target][:n_negatives]
            examples.append({"task": "listwise", "item": target,
                             "history": history_text(split["history"][row], split["length"][row], titles),
                             "titles": [titles[target]] + [titles[i] for i in negatives]})
        random.Random(seed).shuffle(examples)
        return examples

    def loss(self, examples, task_weights=None):
        """Mean over queries of the softmax cross-entropy of the target (index 0) in its list."""
        histories = self.embed([ex["history"] for ex in examples])                      # [B, d]
        unique = sorted({t for ex in examples for t in ex["titles"]})                   # each title once
        index = {t: i for i, t in enumerate(unique)}
        candidates = self.embed(unique)                                                 # [T, d]
        losses = []
        for row, ex in enumerate(examples):
            logits = candidates[[index[t] for t in ex["titles"]]] @ histories[row] / self.temperature   # [L]
            losses.append(nn.functional.cross_entropy(logits[None], torch.zeros(1, dtype=torch.long,
                                                                                device=self.device)))
        return torch.stack(losses).mean()

    @torch.no_grad()
    def score_titles(self, history, titles):
        """Cosine of each candidate title [K] with the history text -> [K]"""
        was_training = self.training
        self.eval()
        vectors = self.embed([history] + list(titles))
        self.train(was_training)
        return (vectors[1:] @ vectors[0]).cpu()
