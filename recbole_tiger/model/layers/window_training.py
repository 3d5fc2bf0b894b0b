"""``train_targets: all``: one pass per user sequence instead of one per training row.

A causal encoder (item t sees items <= t) reads a window of a user's items once, and one short
decoder sequence per next item cross-attends to the encoder states up to its own prefix.
Windows are anchored on every S-th training row of a user, counted from its last
(S = ``sequence_stride``); a window trains its last S targets, so every training target is
learned once per epoch, with about S times fewer encoder passes than ``train_targets: last``.
"""
from typing import NamedTuple

import torch

from recbole_tiger.data.dataset import USER_ROW_FIELD, USER_ROWS_FIELD


class Windows(NamedTuple):
    items: torch.Tensor    # [W, N+1] history then target, oldest first, 0-padded
    n_items: torch.Tensor  # [W] items per window (>= 2)
    users: torch.Tensor    # [W]
    first: torch.Tensor    # [W] window position of its first trained target (>= 1)

    @property
    def n_targets(self) -> int:
        return int((self.n_items - self.first).sum())


def training_windows(interaction, *, stride, user_field, item_seq_field, item_seq_len_field, target_field):
    """The windows trained by this batch: one per anchor row, its history followed by its
    target, up to N+1 items. Anchors are each user's rows k = T, T - S, T - 2S, ... (k = the
    row's rank among its user's T training rows, from TIGERDataset; S = ``stride``). A window
    trains its last S targets (all of them for a user's first window), so every target is
    trained once per epoch, with >= N - S + 1 items of context when the user has that many."""
    if USER_ROW_FIELD not in interaction or USER_ROWS_FIELD not in interaction:
        raise ValueError(f"TIGER: train_targets=all needs the training rows' {USER_ROW_FIELD} and "
                         f"{USER_ROWS_FIELD} columns, which TIGERDataset adds; got rows without them.")
    anchor = (interaction[USER_ROWS_FIELD] - interaction[USER_ROW_FIELD]) % stride == 0
    user, item_seq = interaction[user_field][anchor], interaction[item_seq_field][anchor]
    seq_len, target = interaction[item_seq_len_field][anchor], interaction[target_field][anchor]
    windows = torch.cat([item_seq, torch.zeros_like(item_seq[:, :1])], dim=1)   # [W, N+1]
    windows[torch.arange(len(windows), device=windows.device), seq_len] = target
    first = (seq_len + 1 - stride).clamp(min=1)
    return Windows(windows, seq_len + 1, user, first)


def window_logits(model, windows: Windows):
    """Per-level logits of every trained target of ``windows`` and their labels in code space:
    logits [M, L, V_code] (level-masked), labels [M, L]; and for the dense head each target's
    encoder state (of the item before it: the causal encoder has seen items <= t) [M, D] and item
    [M]. ``model`` is the TIGER (its encode, decoder, length_buckets, teacher_forced_input and
    code_logits)."""
    logits, labels, states, items = [], [], [], []
    u = int(model.settings.n_user_tokens > 0)
    for idx, n in model.length_buckets(windows.n_items):
        win = windows.items[idx, :n]                                          # [b, n] items
        history, target = win[:, :-1], win[:, 1:]                             # [b, T] each, T = n-1
        memory, _ = model.encode(history, windows.n_items[idx] - 1, windows.users[idx])   # [b, u+T, D]
        # Decode only the window's own targets (real items from its first trained one on).
        steps = torch.arange(1, n, device=win.device)
        row, t = ((target > 0) & (steps >= windows.first[idx, None])).nonzero(as_tuple=True)  # [M] each
        codes = model.item_codes[target[row, t]]                              # [M, L]
        x = model.teacher_forced_input(codes)                                 # [M, L, D]
        # target t (item t+1 of the window) sees the user token and encoder states 0..t
        sees = torch.arange(memory.shape[1], device=win.device) <= (t + u)[:, None]   # [M, S]
        h = model.decoder(x, memory, sees, memory_index=row)                  # [M, L, D]
        logits.append(model.code_logits(h) + model.level_mask)                # [M, L, V]
        labels.append(codes + model.level_offset)
        states.append(memory[row, t + u])
        items.append(target[row, t])
    return torch.cat(logits), torch.cat(labels), torch.cat(states), torch.cat(items)
