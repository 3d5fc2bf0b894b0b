"""The reranker: a causal LM that scores candidates by likelihood, plus an optional projection
of item feature vectors into its embedding space (VIP5's visual tokens).

Training and scoring tokenise the same three parts separately (shared history text, the
candidate's prompt, the answer), so a candidate scores exactly as it trained.
"""
import numpy as np
import torch
from torch import nn

from recbole_tiger.llm.finetune import collate
from recbole_tiger.rerank.prompts import FEATURE_TOKEN, NO, YES


class Reranker(nn.Module):
    def __init__(self, lm, tokenizer, features=None):
        """``features``: [n_items, d] item vectors (row = internal item id) or ``None``."""
        super().__init__()
        self.lm, self.tokenizer = lm, tokenizer
        self.feature_id = None
        if features is not None:
            tokenizer.add_tokens([FEATURE_TOKEN], special_tokens=True)
            lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            self.feature_id = tokenizer.convert_tokens_to_ids(FEATURE_TOKEN)
            self.register_buffer("features", torch.as_tensor(np.asarray(features), dtype=torch.float32))
            self.projection = nn.Linear(self.features.shape[1], lm.config.hidden_size)   # d -> hidden
        self.yes_id = self._first_token(YES)
        self.no_id = self._first_token(NO)
        if self.yes_id == self.no_id:
            raise ValueError("the tokenizer starts ' yes' and ' no' with the same token")

    def _first_token(self, text):
        return self.tokenizer(text, add_special_tokens=False)["input_ids"][0]

    def ids(self, text):
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    @property
    def device(self):
        return next(self.parameters()).device

    def embed(self, input_ids, items):
        """Token embeddings with each row's feature token replaced by its item's projected vector.
        input_ids [B, T], items [B] -> [B, T, hidden]"""
        embeds = self.lm.get_input_embeddings()(input_ids)
        if self.feature_id is not None:
            projected = self.projection(self.features[items]).to(embeds.dtype)          # [B, hidden]
            embeds = torch.where((input_ids == self.feature_id)[..., None], projected[:, None, :], embeds)
        return embeds

    # ---------------------------------------------------------------- training
    def encode(self, example):
        """(input_ids, labels) of one training example: loss on the answer tokens only."""
        context = self.ids(example["shared"]) + self.ids(example["prompt"])
        answer = self.ids(example["answer"])
        return context + answer, [-100] * len(context) + answer

    def loss(self, examples, task_weights):
        """Weighted mean over examples of each example's mean answer-token cross-entropy."""
        batch = collate([self.encode(ex) for ex in examples], self.tokenizer.pad_token_id)
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        items = torch.tensor([ex["item"] for ex in examples], device=self.device)
        n_keep = batch["n_keep"]
        logits = self.lm(inputs_embeds=self.embed(batch["input_ids"], items), attention_mask=batch["attention_mask"],
                         position_ids=batch["position_ids"], logits_to_keep=n_keep).logits        # [B, n_keep, V]
        targets = batch["labels"][:, -n_keep + 1:]                                             # [B, n_keep-1]
        ce = nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets, ignore_index=-100,
                                         reduction="none")
        per_example = ce.sum(1) / (targets != -100).sum(1).clamp_min(1)
        weights = torch.tensor([task_weights[ex["task"]] for ex in examples], device=self.device)
        return (per_example * weights).sum() / weights.sum()

    # ---------------------------------------------------------------- scoring
    @torch.no_grad()
    def score(self, shared, prompts, answers, items):
        """Scores of K candidates after one shared text. ``answers`` ``None``: direct prompts,
        score log P(yes) - log P(no); else sequential, score = mean log-probability of each
        answer's tokens. -> [K]"""
        was_training = self.training
        self.eval()
        shared_ids = torch.tensor([self.ids(shared)], device=self.device)
        out = self.lm(inputs_embeds=self.embed(shared_ids, torch.zeros(1, dtype=torch.long, device=self.device)),
                      use_cache=True)
        cache, last_logits = out.past_key_values, out.logits[:, -1]                        # [1, V]
        parts = [self.ids(p) for p in prompts]
        tails = [self.ids(a) for a in answers] if answers is not None else [[] for _ in prompts]
        length = max(len(p) + len(t) for p, t in zip(parts, tails))
        suffix = torch.full((len(parts), length), self.tokenizer.pad_token_id, dtype=torch.long)
        for row, (p, t) in enumerate(zip(parts, tails)):
            suffix[row, : len(p) + len(t)] = torch.tensor(p + t)
        suffix = suffix.to(self.device)
        cache.batch_repeat_interleave(len(parts))
        # right padding needs no mask: under causal attention real tokens never see later pads
        logits = self.lm(inputs_embeds=self.embed(suffix, torch.as_tensor(items, device=self.device)),
                         past_key_values=cache, use_cache=True).logits.float()            # [K, L, V]
        logp = torch.log_softmax(logits, dim=-1)
        scores = []
        for row, (p, t) in enumerate(zip(parts, tails)):
            if answers is None:
                at = logp[row, len(p) - 1]
                scores.append(float(at[self.yes_id] - at[self.no_id]))
            else:
                # token j of the answer is predicted at position len(p) + j - 1 (the shared text's
                # last logits predict the first suffix token, never an answer token: prompts are non-empty)
                pos = torch.arange(len(p) - 1, len(p) + len(t) - 1, device=self.device)
                scores.append(float(logp[row, pos, torch.tensor(t, device=self.device)].mean()))
        del last_logits
        self.train(was_training)
        return torch.tensor(scores)
