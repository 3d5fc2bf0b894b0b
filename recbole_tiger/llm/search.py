"""LM + retrieval: the LM reads the request's constraints, embedding search orders the items.

    score(item) = cosine(query, item text) + weight * gate * P(item satisfies the request's constraint)
    gate = max(0, 1 - (cosine of the best item - cosine of the second) / search_gate)   (1 without a gate)

where P sums the LM's readings (``constrained.ConstraintParser``) that the item satisfies.
``weight`` = 0 is plain embedding search; a large weight keeps the satisfying items first and
orders them by cosine. The gate lowers the LM's say where the text already singles out one item
(a request naming a product, whose catalogue category may not be the one its words suggest) and
keeps it where many items are about as close (a request for a kind of product). ``keep`` > 0
holds the embedding search's ``keep`` best items in the top k whatever the LM read (they replace
the lowest others), so a misreading cannot push out an item the text matches best. Weight, gate
and keep are chosen on validation queries (``benchmarks.query_eval``) and stored in the model
folder's ``recbole_tiger_llm.json`` as ``search_weight`` / ``search_gate`` / ``search_keep``.

The embeddings are the semantic-ID artifact's item embeddings and its own sentence encoder, the
same ones the embedding baseline uses, so the difference between the two is the LM's reading.
"""
from dataclasses import dataclass

import torch

from recbole_tiger.llm.constraints import ANY, Facets


@dataclass
class Hit:
    item: object        # catalogue Item
    score: float        # cosine + gated weight * P(satisfies)
    satisfies: float    # P(item satisfies the constraint) under the LM's readings


class CatalogueSearch:
    def __init__(self, catalogue, item_vectors, encoder, facets=None):
        self.catalogue = catalogue
        self.facets = facets or Facets.of(catalogue)
        self.items = torch.nn.functional.normalize(item_vectors.float(), dim=-1)     # [N, d]
        self.encoder = encoder
        self._brand_masks, self._category_masks = {}, {}
        n = len(catalogue.items)
        for i, brand in enumerate(self.facets.brands):
            if brand:
                self._brand_masks.setdefault(brand.casefold(), torch.zeros(n, dtype=torch.bool))[i] = True
        for i, categories in enumerate(self.facets.categories):
            for category in categories:
                self._category_masks.setdefault(category, torch.zeros(n, dtype=torch.bool))[i] = True

    @classmethod
    def from_artifact(cls, catalogue, device="cpu"):
        """Item vectors and sentence encoder of the catalogue's semantic-ID artifact."""
        from recbole_tiger.semantic_ids.pipeline import load_artifact
        from recbole_tiger.semantic_ids.text_encoder import load_sentence_encoder

        artifact = load_artifact(catalogue.artifact_path)
        index = {t: i for i, t in enumerate(artifact["tokens"])}
        rows = torch.tensor([index[item.token] for item in catalogue.items])
        encoder = load_sentence_encoder(artifact["params"]["sid_text_encoder"], torch.device(device))
        return cls(catalogue, artifact["embeddings"][rows], encoder)

    def embed(self, queries):
        """[Q, d] unit vectors of the query texts."""
        vectors = torch.as_tensor(self.encoder.encode(list(queries), batch_size=64, convert_to_numpy=True)).float()
        return torch.nn.functional.normalize(vectors, dim=-1)

    def mask(self, brand, category):
        """[N] bool: the items satisfying (brand, category); ``any`` matches everything."""
        n = len(self.catalogue.items)
        out = torch.ones(n, dtype=torch.bool)
        if brand not in (None, ANY):
            out &= self._brand_masks.get(brand.casefold(), torch.zeros(n, dtype=torch.bool))
        if category not in (None, ANY):
            out &= self._category_masks.get(category, torch.zeros(n, dtype=torch.bool))
        return out

    def satisfies(self, parses):
        """[N] P(item satisfies the request) = sum of the probabilities of the readings it satisfies."""
        total = torch.zeros(len(self.catalogue.items))
        for p in parses:
            total += p.probability * self.mask(p.brand, p.category).float()
        return total

    @staticmethod
    def gated(weight, cosine, gate):
        """``weight`` times the gate of the module docstring; ``gate`` 0: no gate."""
        if not gate or not weight:
            return weight
        best = cosine.topk(min(2, len(cosine))).values
        margin = float(best[0] - best[-1])
        return weight * max(0.0, 1.0 - margin / gate)

    def ranking(self, query_vector, satisfies, weight, gate=0.0, keep=0, k=10):
        """(indices, scores) of the top ``k``, best score first, the cosine's ``keep`` best among them."""
        cosine = self.items @ query_vector
        scores = cosine + self.gated(weight, cosine, gate) * satisfies
        top = scores.topk(min(k, len(scores))).indices.tolist()
        if keep:
            kept = set(cosine.topk(min(keep, k, len(cosine))).indices.tolist())
            missing = sorted(kept - set(top), key=lambda i: -float(scores[i]))
            if missing:   # drop the lowest items that are not kept; the kept ones go last (lower scores)
                drop = set([i for i in top if i not in kept][-len(missing):])
                top = [i for i in top if i not in drop] + missing
        return top, [float(scores[i]) for i in top]

    def search(self, query, parses=(), weight=0.0, k=10, gate=0.0, keep=0):
        """The top ``k`` items for ``query`` (best first)."""
        satisfies = self.satisfies(parses)
        top, scores = self.ranking(self.embed([query])[0], satisfies, weight, gate, keep, k)
        return [Hit(self.catalogue.items[i], s, float(satisfies[i])) for s, i in zip(scores, top)]


class ConstraintSearch:
    """The ``ask`` CLI's and the demo's system for a constraint model: parse, then search."""

    def __init__(self, parser, search, weight, gate=0.0, keep=0):
        self.parser, self.search, self.weight, self.gate, self.keep = parser, search, weight, gate, keep

    def answer(self, query, k=10):
        return self.search.search(query, self.parser.parse(query), self.weight, k, self.gate, self.keep)
