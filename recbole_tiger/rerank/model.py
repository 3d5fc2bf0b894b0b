"""The reranker: a causal LM that scores candidates by likelihood, plus an optional projection
of item feature vectors into its embedding space (VIP5's visual tokens).

Training and scoring tokenise the same three parts separately (shared history text, the
candidate's prompt, the answer), so a candidate scores exactly as it trained.
"""

import numpy as np
import torch
from torch import nn

from recbole_tiger.llm.finetune import collate
from recbole_tiger.precision import RESOLVED, autocast, resolve_precision  # noqa: F401  (re-exported)
from recbole_tiger.rerank.prompts import FEATURE_TOKEN, NO, YES


PRECISIONS = RESOLVED  # a Reranker is built with a resolved precision (resolve_precision)


class Reranker(nn.Module):
    def __init__(self, lm, tokenizer, features=None, precision="float32"):
        """``features``: [n_items, d] item vectors (row = internal item id) or ``None``.
        ``precision``: bfloat16 runs the LM's forward (and backward) under bf16 autocast with the
        weights kept in float32 (mixed precision): faster on a CPU with AVX512-BF16 (scoring 1.6x on
        this project's machine, results/amazon-beauty-rerank-precision.md), on GPUs as usual;
        float32 is exact."""
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"Reranker: precision {precision!r}, expected one of {PRECISIONS}")
        self.lm, self.tokenizer, self.precision = lm, tokenizer, precision
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

    def autocast(self):
        return autocast(self.precision, self.device.type)

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
        with self.autocast():
            logits = self.lm(inputs_embeds=self.embed(batch["input_ids"], items), attention_mask=batch["attention_mask"],
                             position_ids=batch["position_ids"], logits_to_keep=n_keep).logits    # [B, n_keep, V]
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
        parts = [self.ids(p) for p in prompts]
        tails = [self.ids(a) for a in answers] if answers is not None else [[] for _ in prompts]
        length = max(len(p) + len(t) for p, t in zip(parts, tails))
        suffix = torch.full((len(parts), length), self.tokenizer.pad_token_id, dtype=torch.long)
        for row, (p, t) in enumerate(zip(parts, tails)):
            suffix[row, : len(p) + len(t)] = torch.tensor(p + t)
        suffix = suffix.to(self.device)
        decoder, head = self.lm.get_decoder(), self.lm.get_output_embeddings()
        with self.autocast():
            cache = decoder(inputs_embeds=self.embed(shared_ids, torch.zeros(1, dtype=torch.long, device=self.device)),
                            use_cache=True).past_key_values                                 # the shared text once
            cache.batch_repeat_interleave(len(parts))
            # right padding needs no mask: under causal attention real tokens never see later pads
            hidden = decoder(inputs_embeds=self.embed(suffix, torch.as_tensor(items, device=self.device)),
                             past_key_values=cache, use_cache=True).last_hidden_state          # [K, L, hidden]
        # logits only where a score is read, in float32 even under bf16 (yes/no margins are small):
        # direct reads the prompt's last position; sequential position len(p) + j - 1 predicts answer
        # token j (the shared text's last logits would predict the first suffix token, never an
        # answer token: prompts are non-empty)
        rows, positions, targets = [], [], []
        for row, (p, t) in enumerate(zip(parts, tails)):
            span = range(len(p) - 1, len(p) - 1 + (len(t) if answers is not None else 1))
            rows += [row] * len(span)
            positions += span
            targets += t
        logp = torch.log_softmax(head(hidden[rows, positions].float()), dim=-1)              # [N, V]
        if answers is None:
            scores = logp[:, self.yes_id] - logp[:, self.no_id]                              # N = K
        else:
            index = torch.arange(len(targets), device=self.device)
            token_logp = logp[index, torch.tensor(targets, device=self.device)]
            scores = torch.stack([chunk.mean() for chunk in token_logp.split([len(t) for t in tails])])
        self.train(was_training)
        return scores.cpu()
