"""Constrained beam search: the LM may only write semantic IDs that belong to catalogue items,
or (``ConstraintParser``) brand and category values that the catalogue has.

After the prompt the answer is ``[SEM_START]`` (forced), then one code token per level chosen
among the children of the beam's trie node (TIGER's :class:`PrefixTrie`), so every finished
beam is a complete ID, and with the collision level one item. Beams are ranked by the sum of
the code tokens' log-probabilities; the prompt is encoded once and its key/value cache is
expanded to the beams.
"""
import copy
from dataclasses import dataclass

import torch

from recbole_tiger.llm.constraints import ANY, CONSTRAINT_SYSTEM_PROMPT
from recbole_tiger.llm.sid_text import SEM_START, code_token
from recbole_tiger.model.layers.prefix_trie import PrefixTrie


@dataclass
class Recommendation:
    item: object        # catalogue Item
    codes: tuple
    score: float        # log P(ID | prompt)


class SemanticIDDecoder:
    def __init__(self, model, tokenizer, catalogue):
        self.model, self.tokenizer, self.catalogue = model, tokenizer, catalogue
        codes = torch.full((len(catalogue.items) + 1, catalogue.n_levels), -1, dtype=torch.long)
        codes[1:] = torch.tensor([item.codes for item in catalogue.items], dtype=torch.long)
        self.trie = PrefixTrie(codes, catalogue.codebook_sizes)       # item i+1 = catalogue.items[i]
        vocab = tokenizer.get_vocab()
        missing = [t for t in [SEM_START] + [code_token(0, 0)] if t not in vocab]
        if missing:
            raise ValueError(f"the tokenizer lacks the semantic-ID tokens {missing}: "
                             "load a model fine-tuned by recbole_tiger.llm.finetune")
        self.start_id = vocab[SEM_START]
        # code_ids[l][c] = token id of [SEM_l_c]                     [K_l] per level
        self.code_ids = [torch.tensor([vocab[code_token(level, c)] for c in range(int(k))])
                         for level, k in enumerate(catalogue.codebook_sizes)]

    def prompt_ids(self, messages):
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return torch.tensor([list(ids)], dtype=torch.long)

    @torch.no_grad()
    def recommend(self, messages, k=10, beam_size=None):
        """The top ``k`` distinct catalogue items for a chat prompt (list of messages without the
        answer), best first."""
        beam_size = max(k, beam_size or k)
        device = next(self.model.parameters()).device
        self.model.eval()
        prompt = torch.cat([self.prompt_ids(messages), torch.tensor([[self.start_id]])], dim=1).to(device)
        out = self.model(input_ids=prompt, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1]          # [1, V]
        node = torch.zeros(1, dtype=torch.long, device=device)          # trie node per beam   [B]
        score = torch.zeros(1, device=device)                           # log P(prefix)        [B]
        for level in range(self.catalogue.n_levels):
            child = self.trie.child(level).to(device)[node]             # [B, K_l], -1 = invalid
            logp = torch.log_softmax(logits.float(), dim=-1)[:, self.code_ids[level].to(device)]
            cand = (score[:, None] + logp).masked_fill(child < 0, float("-inf")).reshape(-1)
            n_keep = min(beam_size, int((child >= 0).sum()))
            score, flat = cand.topk(n_keep)
            parent, code = flat // child.shape[1], flat % child.shape[1]
            node = child[parent, code]
            if level + 1 < self.catalogue.n_levels:
                cache.reorder_cache(parent)
                token = self.code_ids[level].to(device)[code][:, None]  # [B, 1]
                out = self.model(input_ids=token, past_key_values=cache, use_cache=True)
                cache, logits = out.past_key_values, out.logits[:, -1]
        results = []
        for s, leaf in zip(score.tolist(), node.tolist()):
            for item_id in self.trie.leaf_items[leaf].tolist():
                if item_id:
                    item = self.catalogue.items[item_id - 1]
                    results.append(Recommendation(item=item, codes=item.codes, score=s))
        return results[:k]

    @torch.no_grad()
    def answer(self, messages, max_new_tokens=48):
        """Free text (attribute questions): greedy decoding up to the end of the turn."""
        device = next(self.model.parameters()).device
        self.model.eval()
        prompt = self.prompt_ids(messages).to(device)
        out = self.model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=max_new_tokens,
                                  do_sample=False, pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.decode(out[0, prompt.shape[1]:], skip_special_tokens=True).strip()


class ValueTrie:
    """Token sequences of a list of values (each ending with its end token) as a trie, so
    decoding can only write one of the values. Values with the same tokens keep the first."""

    def __init__(self, sequences):
        self.children = [{}]     # node -> {token id: child node}
        self.value = [None]      # node -> value index where a sequence ends
        for index, sequence in enumerate(sequences):
            node = 0
            for token in sequence:
                child = self.children[node].get(token)
                if child is None:
                    child = len(self.children)
                    self.children[node][token] = child
                    self.children.append({})
                    self.value.append(None)
                node = child
            if self.value[node] is None:
                self.value[node] = index


@torch.no_grad()
def trie_beam(model, prefix, trie, beam_size, max_tokens=48):
    """The ``beam_size`` most likely values of ``trie`` after ``prefix``, as
    [(log P(value tokens | prefix), value index)], best first. ``prefix``: token ids [1, T], or
    ``(cache, logits)`` of a prefix already run (``prefix_state``; the cache is consumed).
    Scores only fall as a beam grows, so the search stops once no open beam can beat the
    finished ones."""
    device = next(model.parameters()).device
    cache, logits = prefix if isinstance(prefix, tuple) else prefix_state(model, prefix)     # logits [1, V]
    beams = [(0.0, 0)]                                                          # (score, node)
    finished = []
    for _ in range(max_tokens):
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        candidates = []
        for row, (score, node) in enumerate(beams):
            tokens = list(trie.children[node])
            scores = (score + logp[row, tokens]).tolist()
            candidates += [(s, row, t, trie.children[node][t]) for s, t in zip(scores, tokens)]
        candidates.sort(key=lambda c: -c[0])
        kept = []
        for score, row, token, child in candidates[:beam_size]:
            if trie.value[child] is not None and not trie.children[child]:
                finished.append((score, trie.value[child]))
            else:
                kept.append((score, row, token, child))
        finished = sorted(finished, key=lambda f: -f[0])[:beam_size]
        if not kept or (len(finished) >= beam_size and kept[0][0] <= finished[-1][0]):
            break
        cache.reorder_cache(torch.tensor([row for _, row, _, _ in kept], device=device))
        tokens = torch.tensor([[token] for _, _, token, _ in kept], device=device)
        out = model(input_ids=tokens, past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1]
        beams = [(score, child) for score, _, _, child in kept]
    return finished


def prefix_state(model, ids, cache=None):
    """(key/value cache, last position's logits [1, V]) after token ids [1, T] (following ``cache``)."""
    device = next(model.parameters()).device
    out = model(input_ids=ids.to(device), past_key_values=cache, use_cache=True)
    return out.past_key_values, out.logits[:, -1]


@dataclass
class Parse:
    brand: str          # a catalogue brand or 'any'
    category: str       # a catalogue category name or 'any'
    probability: float  # P(this reading | request), normalised over the readings returned


class ConstraintParser:
    """Reads a request into (brand, category) readings with a model fine-tuned on
    ``constraints.py``'s data: ``brand:`` is forced, the brand is decoded among the catalogue's
    brands (or ``any``), then ``category:`` among its category names (or ``any``)."""

    def __init__(self, model, tokenizer, facets):
        self.model, self.tokenizer, self.facets = model, tokenizer, facets
        self.brands = [ANY] + list(facets.brand_values)
        self.categories = [ANY] + list(facets.category_values)
        newline = self._ids("\n")
        self.brand_trie = ValueTrie([self._ids(" " + b) + newline for b in self.brands])
        self.category_trie = ValueTrie([self._ids(" " + c) + [tokenizer.eos_token_id] for c in self.categories])

    def _ids(self, text):
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, query):
        messages = [{"role": "system", "content": CONSTRAINT_SYSTEM_PROMPT}, {"role": "user", "content": query}]
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    @torch.no_grad()
    def parse(self, query, n_brands=3, n_categories=3):
        """The most likely readings of ``query`` (at most n_brands x n_categories), best first."""
        self.model.eval()
        # the prompt runs once; each brand's continuation starts from a copy of its cache
        cache, logits = prefix_state(self.model, torch.tensor([self.prompt_ids(query) + self._ids("brand:")]))
        readings = []
        for brand_logp, b in trie_beam(self.model, (copy.deepcopy(cache), logits), self.brand_trie, n_brands):
            continuation = self._ids(" " + self.brands[b]) + self._ids("\n") + self._ids("category:")
            state = prefix_state(self.model, torch.tensor([continuation]), copy.deepcopy(cache))
            for category_logp, c in trie_beam(self.model, state, self.category_trie, n_categories):
                readings.append((brand_logp + category_logp, self.brands[b], self.categories[c]))
        readings.sort(key=lambda r: -r[0])
        weights = torch.softmax(torch.tensor([r[0] for r in readings]), dim=0).tolist()
        return [Parse(brand, category, w) for (_, brand, category), w in zip(readings, weights)]
