"""``popularity_penalty``: rank IDs by log P(ID | history) − α·log P_train(ID).

Logit adjustment: generation favours IDs that were frequent in training; this takes part of that
prior back out. P_train of a trie node = training interactions of its items (+1 per item, so
cold items have one) over all. The penalty telescopes along the path: reaching a depth-(l+1)
node adds −α·(log P(node) − log P(parent)), so beams compare prefixes by their adjusted scores
at every level, and a complete ID carries −α·log P_train(ID).
"""
import torch

from .prefix_trie import PrefixTrie


class PopularityPrior:
    """The bias tensors for one (trie, training counts, α > 0); rebuild it when any changes.

    node_bias[l]  [N_{l+1}]  added when a depth-(l+1) node is reached (beam / exact scoring)
    leaf_bias     [N_L]      the whole path's bias of each complete ID (scoring given IDs)
    """

    def __init__(self, trie: PrefixTrie, item_train_count: torch.Tensor, *, alpha: float):
        self.alpha = alpha
        count = item_train_count.double() + 1.0                              # [n_items]
        leaf_count = torch.zeros(trie.n_leaves, dtype=torch.float64, device=count.device)
        leaf_count.index_add_(0, trie.item_leaf[1:], count[1:])
        counts = [leaf_count]                                                # depth L first
        for level in range(trie.n_levels - 1, 0, -1):
            parent_count = torch.zeros(trie.n_nodes(level), dtype=torch.float64, device=count.device)
            parent_count.index_add_(0, trie.parent(level), counts[0])
            counts.insert(0, parent_count)                                   # counts[l]: depth l+1
        log_total = count[1:].sum().log()
        self.node_bias = []
        for level in range(trie.n_levels):
            log_parent = log_total if level == 0 else counts[level - 1].log()[trie.parent(level)]
            self.node_bias.append((-alpha * (counts[level].log() - log_parent)).float())
        self.leaf_bias = (-alpha * (leaf_count.log() - log_total)).float()

    @property
    def device(self):
        return self.leaf_bias.device
