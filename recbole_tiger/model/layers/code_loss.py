"""TIGER's training loss: cross-entropy of the target's codes, level by level."""
import torch
import torch.nn.functional as F


def level_mask(codebook_sizes):
    """[L, V_code]: 0 where code token v belongs to level l, -inf elsewhere (added to logits over
    all code tokens, it makes one softmax per level)."""
    n_levels = len(codebook_sizes)
    code_level = torch.repeat_interleave(torch.arange(n_levels), torch.tensor(codebook_sizes))  # [V_code]
    return torch.where(code_level[None] == torch.arange(n_levels)[:, None], 0.0, float("-inf"))


def code_loss(logits, labels, *, level_mask, label_smoothing=0.0):
    """Mean cross-entropy of the target codes.  logits [M, L, V] level-masked (-inf outside a
    level's codes), labels [M, L] in code space, level_mask [L, V].

    With label smoothing ε the target gets 1-ε and the level's own codes share ε uniformly (the
    other levels' codes, which the masked logits rule out, get nothing, so the loss stays finite).
    """
    eps = label_smoothing
    if eps == 0.0:
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten())
    logp = logits.float().log_softmax(-1)                                # [M, L, V]
    nll = -logp.gather(-1, labels[..., None]).squeeze(-1)               # [M, L]
    in_level = torch.isfinite(level_mask)                               # [L, V]
    uniform = -logp.masked_fill(~in_level, 0.0).sum(-1) / in_level.sum(-1)   # [M, L]
    return ((1.0 - eps) * nll + eps * uniform).mean()
