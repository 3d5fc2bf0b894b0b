"""Hugging Face T5 (``transformers``' ``T5Stack``) behind the interface of our own
``Encoder`` / ``Decoder`` (``recbole_tiger.model.layers.transformer``), for ``backbone: t5``.

Same sizes and same inputs as ours — TIGER still adds its own token + position embeddings and
feeds them as ``inputs_embeds`` — so the two backbones can be compared on learning alone. What
is T5's and not ours: relative position bias on top of TIGER's embeddings (one bucket table per
stack, in its first self-attention layer), no 1/sqrt(d_head) attention scaling (T5's
initialisation compensates), one dropout rate for everything (attention weights included),
T5's weight initialisation. T5Stack applies its own final RMS norm and dropout.

Causal encoder (``train_targets: all``): a prepared 4-D mask is passed to T5Stack as is
(``masking_utils`` returns 4-D masks unchanged). It is *additive* float (0 = keep, dtype min =
masked), which both the eager and the SDPA attention paths of T5 add to the position bias.

Incremental decoding keeps it simple and exact rather than fast: the cache holds the embedded
decoder inputs so far, ``[B, W, t, D]``, and each step re-runs the whole T5 decoder over the
``t + 1`` tokens of every beam (semantic IDs are <= 4 tokens, so the re-run is quadratic in the
ID length only), returning the last position. The W beams of a user need that user's encoder
memory as W separate T5 rows; rows are processed in chunks so that memory stays bounded when
W is large (``eval_mode: exact`` decodes every valid ID prefix).
"""
from dataclasses import dataclass

import torch
from torch import nn

from transformers import T5Config
from transformers.models.t5.modeling_t5 import T5Stack

# Upper bound on the elements of one [rows, S, width] tensor in one decoder call of ``step``.
_STEP_CHUNK_ELEMENTS = 2**24


def _t5_stack(n_layers, d_model, n_heads, d_head, d_ff, dropout, is_decoder) -> T5Stack:
    config = T5Config(
        d_model=d_model, d_kv=d_head, d_ff=d_ff, num_heads=n_heads, num_layers=n_layers,
        num_decoder_layers=n_layers, dropout_rate=dropout, feed_forward_proj="relu",
        is_decoder=is_decoder, use_cache=False,
        # inputs_embeds only: a one-row vocabulary, and the embedding is removed below
        vocab_size=1, pad_token_id=0, eos_token_id=None, decoder_start_token_id=0,
        attn_implementation="sdpa",
    )
    stack = T5Stack(config)   # post_init() gives it T5's own initialisation
    stack.embed_tokens = None  # TIGER embeds its tokens itself; no unused parameters
    return stack


def _additive(keep: torch.Tensor, dtype) -> torch.Tensor:
    """bool [..] (True = attend) -> float [..] (0 = attend, dtype min = masked)"""
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill_(~keep, torch.finfo(dtype).min)


class T5Encoder(nn.Module):
    def __init__(self, *, n_layers, d_model, n_heads, d_head, d_ff, dropout):
        super().__init__()
        self.stack = _t5_stack(n_layers, d_model, n_heads, d_head, d_ff, dropout, is_decoder=False)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, causal: bool = False) -> torch.Tensor:
        """x [B, S, D] embedded input, key_mask bool [B, S] (True = real token) -> [B, S, D]

        ``causal``: token i sees tokens <= i only (and, of those, real ones: with right padding
        as TIGER builds it, that is the same thing for every real token).
        """
        if causal:
            S = x.shape[1]
            lower = torch.ones(S, S, dtype=torch.bool, device=x.device).tril()
            mask = _additive(lower & key_mask[:, None, :].bool(), x.dtype)[:, None]   # [B, 1, S, S]
        else:
            mask = key_mask
        return self.stack(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state


@dataclass
class T5DecoderCache:
    """memory [B, S, D], memory_mask [B, S] bool, inputs [B, W, t, D]: the decoder inputs of
    every beam so far (None before the first step)."""

    memory: torch.Tensor
    memory_mask: torch.Tensor
    inputs: torch.Tensor = None

    def reorder(self, parent: torch.Tensor) -> None:
        """Keep, for each new beam, the inputs of its parent beam.  parent: [B, W_new]"""
        rows = torch.arange(parent.shape[0], device=parent.device)[:, None]
        self.inputs = self.inputs[rows, parent]


class T5Decoder(nn.Module):
    def __init__(self, *, n_layers, d_model, n_heads, d_head, d_ff, dropout):
        super().__init__()
        self.stack = _t5_stack(n_layers, d_model, n_heads, d_head, d_ff, dropout, is_decoder=True)

    def forward(self, x, memory, memory_key_mask, memory_index=None):
        """Teacher forcing.  x [B, T, D], memory_key_mask [B, S] -> [B, T, D]

        memory [B, S, D], or [M, S, D] shared by several rows: row i then reads memory
        ``memory_index[i]`` (gathered: T5 projects keys/values per row).
        """
        if memory_index is not None:
            memory = memory[memory_index]
        return self.stack(inputs_embeds=x, encoder_hidden_states=memory,
                          encoder_attention_mask=memory_key_mask, use_cache=False).last_hidden_state

    def start(self, memory: torch.Tensor, memory_key_mask: torch.Tensor) -> T5DecoderCache:
        return T5DecoderCache(memory=memory, memory_mask=memory_key_mask)

    def step(self, x: torch.Tensor, cache: T5DecoderCache) -> torch.Tensor:
        """Extend every beam by one token (inference only).  x [B, W, D] -> [B, W, D]"""
        B, W, D = x.shape
        x = x.unsqueeze(2)
        cache.inputs = x if cache.inputs is None else torch.cat([cache.inputs, x], dim=2)   # [B, W, t+1, D]
        inputs = cache.inputs.flatten(0, 1)                                                  # [BW, t+1, D]
        S = cache.memory.shape[1]
        width = max(D, self.stack.config.num_heads * self.stack.config.d_kv)   # memory, cross keys/values
        chunk = max(1, _STEP_CHUNK_ELEMENTS // (S * width))
        if B == 1:   # one user: its memory as a stride-0 view, no copy
            memory, mask = cache.memory.expand(W, -1, -1), cache.memory_mask.expand(W, -1)
        out = []
        for start in range(0, B * W, chunk):
            rows = slice(start, min(start + chunk, B * W))
            if B == 1:
                m, k = memory[rows], mask[rows]
            else:
                user = torch.arange(rows.start, rows.stop, device=x.device) // W
                m, k = cache.memory[user], cache.memory_mask[user]
            h = self.stack(inputs_embeds=inputs[rows], encoder_hidden_states=m,
                           encoder_attention_mask=k, use_cache=False).last_hidden_state
            out.append(h[:, -1])
        return torch.cat(out).view(B, W, D)
