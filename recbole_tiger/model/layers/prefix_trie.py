"""The set of valid semantic IDs as a trie stored in dense tensors.

Node numbering: the nodes at depth ``d`` are the distinct length-``d`` prefixes of the item
codes, numbered in lexicographic order (depth 0 = the root, node 0). Depth ``n_levels`` nodes
are complete IDs ("leaves"); without the collision level several items can share a leaf.

Tensors (all built once, vectorised with numpy, rebuilt whenever the code table changes):
  child[l]    [N_l, K_l]   node at depth l+1 reached from depth-l node n by code c, or -1
  parent[l]   [N_{l+1}]    depth-l parent of each depth-(l+1) node
  last_code[l][N_{l+1}]    the code that leads to it (so parent/last_code enumerate all
                           valid (prefix, next code) pairs of a level — used by exact scoring)
  leaf_items  [N_L, G]     items whose full ID is that leaf, ascending item id, padded with 0
  item_leaf   [n_items]    leaf of every item (-1 for the padding item 0)

Constrained decoding looks up ``child[l][node]`` for every beam: one gather, no Python walk.
Memory is dominated by ``child``: sum_l N_l * K_l entries.
"""
from typing import List

import numpy as np
import torch
from torch import nn


class PrefixTrie(nn.Module):
    def __init__(self, item_codes: torch.Tensor, codebook_sizes: List[int]):
        super().__init__()
        self.codebook_sizes = [int(k) for k in codebook_sizes]
        self.n_levels = len(self.codebook_sizes)
        self.build(item_codes)

    @torch.no_grad()
    def build(self, item_codes: torch.Tensor) -> None:
        """item_codes [n_items, n_levels]: row 0 (padding) is -1, every other row valid."""
        device = item_codes.device
        codes = item_codes[1:].cpu().numpy()                   # [n_items-1, L], item i+1
        n_real = codes.shape[0]
        node = np.zeros(n_real, dtype=np.int64)                 # depth-0 node of each item
        n_nodes = 1
        for level in range(self.n_levels):
            _, child_node = np.unique(codes[:, : level + 1], axis=0, return_inverse=True)
            child_node = child_node.reshape(-1)                 # depth-(level+1) node of each item
            n_children = int(child_node.max()) + 1
            child = np.full((n_nodes, self.codebook_sizes[level]), -1, dtype=np.int64)
            child[node, codes[:, level]] = child_node
            parent = np.zeros(n_children, dtype=np.int64)
            parent[child_node] = node
            last_code = np.zeros(n_children, dtype=np.int64)
            last_code[child_node] = codes[:, level]
            self.register_buffer(f"child_{level}", torch.from_numpy(child).to(device), persistent=False)
            self.register_buffer(f"parent_{level}", torch.from_numpy(parent).to(device), persistent=False)
            self.register_buffer(f"last_code_{level}", torch.from_numpy(last_code).to(device), persistent=False)
            node, n_nodes = child_node, n_children

        # Group items by leaf: stable argsort keeps ascending item ids inside a group.
        order = np.argsort(node, kind="stable")
        counts = np.bincount(node, minlength=n_nodes)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(n_real) - starts[node[order]]
        leaf_items = np.zeros((n_nodes, int(counts.max())), dtype=np.int64)
        leaf_items[node[order], rank] = order + 1               # back to internal item ids
        item_leaf = np.concatenate([[-1], node])
        self.register_buffer("leaf_items", torch.from_numpy(leaf_items).to(device), persistent=False)
        self.register_buffer("item_leaf", torch.from_numpy(item_leaf).to(device), persistent=False)
        self.n_leaves = n_nodes

    def leaves_within(self, item_seq: torch.Tensor, n_items: int) -> torch.Tensor:
        """Leaves all of whose items are among each row's items.  item_seq [B, N] (0 = pad)
        -> [B, N_L] bool"""
        chosen = torch.zeros(len(item_seq), n_items, dtype=torch.bool, device=item_seq.device)
        chosen.scatter_(1, item_seq, True)
        chosen[:, 0] = True                                        # leaf_items padding
        return chosen[:, self.leaf_items].all(-1)

    def child(self, level: int) -> torch.Tensor:
        return getattr(self, f"child_{level}")

    def parent(self, level: int) -> torch.Tensor:
        return getattr(self, f"parent_{level}")

    def last_code(self, level: int) -> torch.Tensor:
        return getattr(self, f"last_code_{level}")

    def n_nodes(self, depth: int) -> int:
        return 1 if depth == 0 else self.parent(depth - 1).shape[0]

    @property
    def max_items_per_leaf(self) -> int:
        return self.leaf_items.shape[1]
