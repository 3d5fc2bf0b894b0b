"""A two-tower text reranker: one sentence encoder embeds a user's recent items (their titles,
oldest first) and each candidate's title, and a candidate's score is the cosine of the two.

Untrained it is the pre-trained encoder's zero-shot similarity, so "trained > untrained" asks
whether training taught it something. Training fine-tunes the whole encoder *listwise* on the
first stage's own lists: a training query's target against the other candidates the first
stage ranked for it, softmax cross-entropy over the list, which is the reranking task itself.
All-MiniLM-L6-v2 (22M parameters, bundled offline) trains for several epochs in minutes on a
CPU core, where the 135M causal LM of ``model.Reranker`` needs hours per epoch.

Fine-tuning the encoder costs ~7-27 s per step of 16 queries on one of our CPU cores (docs/reranker.md),
so ``AdapterTowerReranker`` keeps it frozen: every title is embedded once, and training learns a
residual linear map on each side and how much each of the last history items counts. Untrained, it
ranks exactly as the MiniLM cosine baseline; an epoch over every training user takes seconds.

Both answer the same calls as ``model.Reranker`` (``loss``, ``training_examples``, scores via
``score_titles`` or ``score_items``), so ``train.train_reranker`` and ``compare`` use any of them.
"""
import random

import torch
from torch import nn

from recbole_tiger.precision import autocast
from recbole_tiger.rerank.prompts import HISTORY_ITEMS, history_text, last_items, target_first_lists

TOWER_MODELS = ("minilm",)   # --base_model values that build a TowerReranker
TOWER_PREFIX = "sentence-transformers:"   # --base_model=sentence-transformers:<name or local folder>
TOWER_METHODS = ("adapter", "full")       # frozen encoder + trained maps / the whole encoder fine-tuned


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
        examples = [{"task": "listwise", "item": items[0],
                     "history": history_text(split["history"][row], split["length"][row], titles),
                     "titles": [titles[i] for i in items]}
                    for row, items in target_first_lists(split, n_negatives)]
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


@torch.no_grad()
def title_vectors(encoder, titles, items, batch_size=64):
    """[len(titles), d] unit sentence embeddings of the ``items``' titles (zero rows elsewhere)."""
    items = sorted({int(i) for i in items} - {0})
    vectors = torch.as_tensor(encoder.encode([titles[i] for i in items], batch_size=batch_size,
                                             normalize_embeddings=True, convert_to_numpy=True))
    out = torch.zeros(len(titles), vectors.shape[1])
    out[items] = vectors
    return out


class AdapterTowerReranker(nn.Module):
    feature_id = None
    method = "adapter"

    def __init__(self, vectors, *, history_items=HISTORY_ITEMS, temperature=0.05):
        """``vectors`` [n_items, d]: frozen unit title embeddings (``title_vectors``); the history is a
        weighted mean of its last ``history_items`` items' vectors."""
        super().__init__()
        self.register_buffer("vectors", vectors.float(), persistent=False)
        d = vectors.shape[1]
        self.history_map, self.item_map = nn.Linear(d, d), nn.Linear(d, d)
        for layer in (self.history_map, self.item_map):     # zero residual: untrained = plain cosine
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.position_logits = nn.Parameter(torch.zeros(history_items))    # [H], the last = most recent
        self.history_items, self.temperature = history_items, temperature

    @property
    def device(self):
        return self.vectors.device

    def encode_items(self, items):
        """[...] item ids -> [..., d] unit vectors"""
        v = self.vectors[items]
        return nn.functional.normalize(v + self.item_map(v), dim=-1)

    def encode_histories(self, histories):
        """[B, H] item ids, right-aligned, 0 = none -> [B, d] unit vectors"""
        present = histories > 0                                                             # [B, H]
        logits = self.position_logits[None].expand_as(histories).masked_fill(~present, -torch.inf)
        weights = torch.softmax(logits, dim=-1).nan_to_num(0.0)                             # [B, H]
        mean = (weights[..., None] * self.vectors[histories]).sum(1)                        # [B, d]
        return nn.functional.normalize(mean + self.history_map(mean), dim=-1)

    def pad_histories(self, histories):
        out = torch.zeros(len(histories), self.history_items, dtype=torch.long)
        for row, items in enumerate(histories):
            if items:
                out[row, -len(items):] = torch.as_tensor(items[-self.history_items:])
        return out.to(self.device)

    def training_examples(self, split, titles, n_negatives=None, seed=0):
        """One example per training query: its last items and its list, the target first;
        ``n_negatives`` keeps the first stage's top-ranked other candidates (None: all)."""
        examples = [{"task": "listwise", "item": items[0],
                     "history": last_items(split["history"][row], split["length"][row], self.history_items),
                     "candidates": items}
                    for row, items in target_first_lists(split, n_negatives)]
        random.Random(seed).shuffle(examples)
        return examples

    def loss(self, examples, task_weights=None):
        """Mean over queries of the softmax cross-entropy of the target (index 0) in its list."""
        width = max(len(ex["candidates"]) for ex in examples)
        candidates = torch.zeros(len(examples), width, dtype=torch.long)
        for row, ex in enumerate(examples):
            candidates[row, :len(ex["candidates"])] = torch.as_tensor(ex["candidates"])
        candidates = candidates.to(self.device)                                             # [B, L], 0 = none
        histories = self.encode_histories(self.pad_histories([ex["history"] for ex in examples]))   # [B, d]
        logits = (self.encode_items(candidates) @ histories[..., None]).squeeze(-1) / self.temperature
        logits = logits.masked_fill(candidates == 0, -torch.inf)                            # [B, L]
        return nn.functional.cross_entropy(logits, torch.zeros(len(examples), dtype=torch.long, device=self.device))

    @torch.no_grad()
    def score_items(self, history, items):
        """Cosine of each candidate [K] with a history (item ids, oldest first) -> [K]"""
        h = self.encode_histories(self.pad_histories([list(history)]))[0]
        return (self.encode_items(torch.as_tensor(items, device=self.device)) @ h).cpu()
