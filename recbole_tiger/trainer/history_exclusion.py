"""``eval_exclude_history``: the evaluation protocol that never ranks a user's history items.

RecBole ranks history items for sequential models ("repeatable" recommendation; it masks
history only for general models, from the training matrix). Much of the literature on
Amazon data (the S3-Rec line) masks them. With ``eval_exclude_history: True`` every item of
the evaluated sequence gets score -inf, for every sequential model, in full-sort and sampled
evaluation alike, here in the trainer rather than in each model. TIGER additionally keeps
history items out of its beams (so it still ranks K items; see the model).
"""
import numpy as np
import torch

PROTOCOLS = {"repeatable": False, "exclude_history": True}  # name -> eval_exclude_history


class ExcludeHistoryMixin:
    def __init__(self, config, model):
        super().__init__(config, model)
        self.eval_exclude_history = self.run_settings.eval_exclude_history

    def set_protocol(self, protocol):
        """Switch the evaluation protocol (``repeatable`` / ``exclude_history``) of this trainer
        and its model, e.g. to test one checkpoint under both."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"eval protocol {protocol!r}: expected one of {sorted(PROTOCOLS)}")
        self.eval_exclude_history = PROTOCOLS[protocol]
        if hasattr(self.model, "set_ranking"):  # a model that keeps history out of its own ranking (TIGER)
            self.model.set_ranking(eval_exclude_history=self.eval_exclude_history)

    @property
    def protocol(self):
        return "exclude_history" if self.eval_exclude_history else "repeatable"

    def _history(self, interaction):
        item_seq_field = self.config["ITEM_ID_FIELD"] + self.config["LIST_SUFFIX"]
        if not self.eval_exclude_history or item_seq_field not in interaction:
            return None  # the protocol is off, or not a sequential model's rows
        return interaction[item_seq_field].to(self.device)              # [B, N], 0 = padding

    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        history = self._history(interaction)
        if history is not None and isinstance(scores, torch.Tensor):  # (a top-K model excluded them itself)
            scores.scatter_(1, history, -np.inf)                         # padding 0 is -inf already
        return interaction, scores, positive_u, positive_i

    def _neg_sample_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._neg_sample_batch_eval(batched_data)
        history = self._history(interaction)
        if history is not None and scores.dim() == 2:                    # ranking, not value, eval
            _, row_idx, _, _ = batched_data
            item = interaction[self.config["ITEM_ID_FIELD"]].to(self.device)
            seen = (history == item[:, None]).any(1)                     # candidate in its own history
            scores[row_idx.to(self.device)[seen], item[seen]] = -np.inf
        return interaction, scores, positive_u, positive_i

