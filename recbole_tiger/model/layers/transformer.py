"""A small T5-style encoder–decoder with an incremental (KV-cached) decoder for beam search.

T5 flavour: pre-norm RMSNorm, bias-free projections, ReLU feed-forward, attention inner width
``n_heads * d_head`` that may differ from ``d_model`` (the TIGER paper uses 6 x 64 = 384 with
d_model 128 — which ``nn.MultiheadAttention`` cannot express, hence our own attention module
on top of ``F.scaled_dot_product_attention``).

Positions are *not* handled here: the caller adds learned position embeddings to the token
embeddings (see ``TIGER`` for why that fits semantic-ID sequences better than T5's relative
bias), so every attention call can use SDPA's fused kernels with at most a boolean mask.

Incremental decoding is built for beam search over many users at once:
  * encoder keys/values for cross-attention are projected once per user, ``[B, H, S, dh]``, and
    *shared* by all beams of that user: the W beams of one user are simply W queries of one
    attention call, so nothing is copied per beam;
  * decoder self-attention keys/values are cached per beam, ``[B, W, H, t, dh]``, and
    re-gathered by parent-beam index after every top-k (``DecoderCache.reorder``).
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention, inner width ``n_heads * d_head`` (not tied to ``d_model``).

    ``dropout`` is on the attention weights; with it SDPA on CPU falls back to its unfused
    math path, hence a separate config key.
    """

    def __init__(self, d_model: int, n_heads: int, d_head: int, dropout: float):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_head
        inner = n_heads * d_head
        self.q = nn.Linear(d_model, inner, bias=False)
        self.kv = nn.Linear(d_model, 2 * inner, bias=False)
        self.o = nn.Linear(inner, d_model, bias=False)
        self.dropout = dropout

    def keys_values(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """[B, S, D] -> k, v each [B, H, S, dh]"""
        k, v = self.kv(x).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, H*dh] -> [B, H, T, dh]"""
        return x.unflatten(-1, (self.n_heads, self.d_head)).transpose(1, 2)

    def forward(self, x, k, v, mask=None, is_causal=False) -> torch.Tensor:
        """x [B, T, D] attends to k, v [B, H, S, dh]; mask bool [B, 1, 1, S] (True = keep)."""
        q = self._heads(self.q(x))                                     # [B, H, T, dh]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
        )                                                              # [B, H, T, dh]
        return self.o(out.transpose(1, 2).flatten(2))                  # [B, T, D]


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.wi = nn.Linear(d_model, d_ff, bias=False)
        self.wo = nn.Linear(d_ff, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.wo(self.dropout(F.relu_(self.wi(x))))


class EncoderLayer(nn.Module):
    def __init__(self, d_model, n_heads, d_head, d_ff, dropout, attn_dropout):
        super().__init__()
        self.attn_norm = nn.RMSNorm(d_model, eps=1e-6)
        self.attn = Attention(d_model, n_heads, d_head, attn_dropout)
        self.ff_norm = nn.RMSNorm(d_model, eps=1e-6)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask, is_causal=False):
        h = self.attn_norm(x)
        k, v = self.attn.keys_values(h)
        x = x + self.dropout(self.attn(h, k, v, mask=mask, is_causal=is_causal))
        return x + self.dropout(self.ff(self.ff_norm(x)))


class Encoder(nn.Module):
    def __init__(self, *, n_layers, d_model, n_heads, d_head, d_ff, dropout, attn_dropout):
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, n_heads, d_head, d_ff, dropout, attn_dropout) for _ in range(n_layers)
        )
        self.final_norm = nn.RMSNorm(d_model, eps=1e-6)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, causal: bool = False) -> torch.Tensor:
        """x [B, S, D] embedded input, key_mask bool [B, S] (True = real token) -> [B, S, D]

        ``causal``: token i sees tokens <= i only. Inputs must then be right-padded (real
        tokens first), so no real token ever sees padding and the key mask is not needed.
        """
        mask = None if causal else key_mask[:, None, None, :]          # [B, 1, 1, S]
        x = self.dropout(x)
        for layer in self.layers:
            x = layer(x, mask, is_causal=causal)
        return self.dropout(self.final_norm(x))


@dataclass
class DecoderCache:
    """Everything the decoder needs to extend W beams per user by one token.

    cross_kv[i]: encoder keys/values of layer i, [B, H, S, dh] each (shared by all beams)
    memory_mask: [B, 1, 1, S] bool
    self_kv[i]:  this layer's past decoder keys/values, [B, W, H, t, dh] each (per beam)
    """

    cross_kv: List[Tuple[torch.Tensor, torch.Tensor]]
    memory_mask: torch.Tensor
    self_kv: List[Optional[Tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=list)

    def reorder(self, parent: torch.Tensor) -> None:
        """Keep, for each new beam, the history of its parent beam.  parent: [B, W_new]"""
        rows = torch.arange(parent.shape[0], device=parent.device)[:, None]
        self.self_kv = [(k[rows, parent], v[rows, parent]) for k, v in self.self_kv]


class DecoderLayer(nn.Module):
    def __init__(self, d_model, n_heads, d_head, d_ff, dropout, attn_dropout):
        super().__init__()
        self.self_norm = nn.RMSNorm(d_model, eps=1e-6)
        self.self_attn = Attention(d_model, n_heads, d_head, attn_dropout)
        self.cross_norm = nn.RMSNorm(d_model, eps=1e-6)
        self.cross_attn = Attention(d_model, n_heads, d_head, attn_dropout)
        self.ff_norm = nn.RMSNorm(d_model, eps=1e-6)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, cross_k, cross_v, memory_mask):
        """Teacher forcing: x [B, T, D], causal self-attention over all T positions."""
        h = self.self_norm(x)
        k, v = self.self_attn.keys_values(h)
        x = x + self.dropout(self.self_attn(h, k, v, is_causal=True))
        x = x + self.dropout(self.cross_attn(self.cross_norm(x), cross_k, cross_v, memory_mask))
        return x + self.dropout(self.ff(self.ff_norm(x)))

    def step(self, x, cross_k, cross_v, memory_mask, past):
        """One new token per beam: x [B, W, D]; past = cached (k, v) [B, W, H, t, dh] or None.

        Returns the new hidden state [B, W, D] and the extended cache [B, W, H, t+1, dh].
        """
        B, W, D = x.shape
        attn = self.self_attn
        h = self.self_norm(x)
        q = attn.q(h).view(B * W, 1, attn.n_heads, attn.d_head).transpose(1, 2)   # [BW, H, 1, dh]
        k_new, v_new = attn.kv(h).view(B, W, 1, 2, attn.n_heads, attn.d_head).permute(3, 0, 1, 4, 2, 5)
        if past is not None:                                           # [B, W, H, t+1, dh]
            k_new, v_new = torch.cat([past[0], k_new], 3), torch.cat([past[1], v_new], 3)
        # Only past and current tokens are in the cache, so no causal mask is needed.
        out = F.scaled_dot_product_attention(q, k_new.flatten(0, 1), v_new.flatten(0, 1))
        x = x + attn.o(out.reshape(B, W, -1))
        # All W beams of a user are W queries against that user's encoder memory.
        x = x + self.cross_attn(self.cross_norm(x), cross_k, cross_v, memory_mask)
        x = x + self.ff(self.ff_norm(x))
        return x, (k_new, v_new)


class Decoder(nn.Module):
    def __init__(self, *, n_layers, d_model, n_heads, d_head, d_ff, dropout, attn_dropout):
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, n_heads, d_head, d_ff, dropout, attn_dropout) for _ in range(n_layers)
        )
        self.final_norm = nn.RMSNorm(d_model, eps=1e-6)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, memory, memory_key_mask, memory_index=None):
        """Teacher forcing.  x [B, T, D], memory_key_mask [B, S] -> [B, T, D]

        memory [B, S, D], or [M, S, D] shared by several rows: row i then reads memory
        ``memory_index[i]`` (keys/values are projected once per memory row, then gathered).
        """
        mask = memory_key_mask[:, None, None, :]
        x = self.dropout(x)
        for layer in self.layers:
            ck, cv = layer.cross_attn.keys_values(memory)
            if memory_index is not None:
                ck, cv = ck[memory_index], cv[memory_index]
            x = layer(x, ck, cv, mask)
        return self.dropout(self.final_norm(x))

    def start(self, memory: torch.Tensor, memory_key_mask: torch.Tensor) -> DecoderCache:
        """Project the encoder memory once for cross-attention.  memory [B, S, D]"""
        return DecoderCache(
            cross_kv=[layer.cross_attn.keys_values(memory) for layer in self.layers],
            memory_mask=memory_key_mask[:, None, None, :],
            self_kv=[None] * len(self.layers),
        )

    def step(self, x: torch.Tensor, cache: DecoderCache) -> torch.Tensor:
        """Extend every beam by one token (inference only).  x [B, W, D] -> [B, W, D]"""
        for i, layer in enumerate(self.layers):
            ck, cv = cache.cross_kv[i]
            x, cache.self_kv[i] = layer.step(x, ck, cv, cache.memory_mask, cache.self_kv[i])
        return self.final_norm(x)
