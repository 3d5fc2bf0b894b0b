"""TIGER's encoder input: a user's history as embedded tokens (the encoder itself runs in TIGER).

Token ids: PAD, BOS, then the code tokens of every level (level l's codes from
``level_offset[l]``), then the hashed user tokens. The embedding tables stay attributes of TIGER
(so checkpoints keep their keys) and come in here as an :class:`EmbeddingTables`.

``embed_codes``  one token per semantic-ID code (the paper): [user] + N*L tokens
``embed_items``  one token per history item, the sum of its code embeddings: [user] + N tokens
"""
from typing import NamedTuple, Optional

import torch
from torch import nn

PAD, BOS = 0, 1
N_SPECIAL = 2  # code tokens start after PAD and BOS; user-hash tokens follow the code tokens


class EmbeddingTables(NamedTuple):
    token: nn.Embedding                # [N_SPECIAL + V_code + n_user_tokens, D]
    item_position: nn.Embedding        # [N + 1, D]; the last row marks the user token
    level: nn.Embedding                # [L + 1, D]; the last row marks the user token
    item: Optional[nn.Embedding]       # [n_items, D] (item_id_embedding) or None
    item_codes: torch.Tensor           # [n_items, L], row 0 (padding) = -1
    level_offset: torch.Tensor         # [L]: first code-space index of each level
    n_user_tokens: int


def hash_user(user_id: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Deterministic user bucket: Knuth's multiplicative hash, so neighbouring RecBole ids
    (assigned in order of first appearance) do not land in neighbouring buckets."""
    return (user_id.long() * 2654435761) % (2**32) % n_buckets


def length_buckets(item_seq_len, bucket_size):
    """Row indices in buckets of ``bucket_size`` rows of similar history length, each with its
    longest history: the encoder then pads a bucket only to that length instead of
    MAX_ITEM_LIST_LENGTH (most training prefixes are short).  -> [(rows [b], longest), ...]"""
    order = torch.argsort(item_seq_len, descending=True, stable=True)
    buckets = order.split(bucket_size)
    longest = item_seq_len[torch.stack([b[0] for b in buckets])].tolist()
    return list(zip(buckets, longest))


def code_tokens(item_seq, tables: EmbeddingTables):
    """item_seq [B, N] -> token ids of its items' codes [B, N, L] (PAD for padding items)"""
    codes = tables.item_codes[item_seq]                                  # [B, N, L], -1 = pad
    return torch.where(codes >= 0, codes + tables.level_offset + N_SPECIAL, PAD)


def prepend_user(x, mask, user_id, tables: EmbeddingTables):
    """x [B, S, D], mask [B, S] -> user token first: [B, 1+S, D], [B, 1+S] (if n_user_tokens > 0)"""
    n = tables.n_user_tokens
    if n == 0:
        return x, mask
    user_token = tables.token.num_embeddings - n + hash_user(user_id, n)  # after the code tokens
    u = (tables.token(user_token) + tables.item_position.weight[-1]
         + tables.level.weight[-1])                                      # [B, D]
    return torch.cat([u[:, None], x], dim=1), torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)


def embed_codes(item_seq, item_seq_len, user_id, tables: EmbeddingTables):
    """One token per code, with its item's recency (0 = most recent) and its level.
    item_seq [B, N] (left-aligned, 0-padded) -> x [B, u+N*L, D], key mask [B, u+N*L] (u: user token)"""
    N, L = item_seq.shape[1], tables.item_codes.shape[1]
    tokens = code_tokens(item_seq, tables)                               # [B, N, L]
    real = tokens != PAD
    steps = torch.arange(N, device=item_seq.device)
    recency = (item_seq_len[:, None] - 1 - steps).clamp(min=0)          # 0 = most recent item
    position = recency.repeat_interleave(L, dim=1)                       # [B, N*L]
    level = torch.arange(L, device=item_seq.device).repeat(N)            # [N*L]
    x = tables.token(tokens.flatten(1)) + tables.item_position(position) + tables.level(level)  # [B, N*L, D]
    if tables.item is not None:                                          # each code token of an item
        x = x + tables.item(item_seq).repeat_interleave(L, dim=1)
    return prepend_user(x, real.flatten(1), user_id, tables)


def embed_items(item_seq, item_seq_len, user_id, tables: EmbeddingTables, *, causal):
    """One token per history item: the sum of its code-token embeddings (codes of different
    levels are different tokens, so the sum keeps the level) plus its position.
    item_seq [B, N] -> x [B, u+N, D], key mask [B, u+N]"""
    N = item_seq.shape[1]
    tokens = code_tokens(item_seq, tables)                               # [B, N, L]
    steps = torch.arange(N, device=item_seq.device)
    if causal:
        # Absolute position from the oldest item: under a causal mask item t must not
        # know how many items follow it (recency would tell it).
        position = steps.expand(len(item_seq), N)
    else:
        position = (item_seq_len[:, None] - 1 - steps).clamp(min=0)      # 0 = most recent
    x = tables.token(tokens).sum(2) + tables.item_position(position)     # [B, N, D]
    if tables.item is not None:
        x = x + tables.item(item_seq)
    return prepend_user(x, item_seq > 0, user_id, tables)
