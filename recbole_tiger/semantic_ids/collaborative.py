"""Co-purchase features for semantic IDs: which items are bought one after another.

Text alone puts a shampoo next to other shampoos; it cannot know that a shampoo is bought
with its conditioner or which of two near-identical creams people actually buy together.
SASRec learns exactly that from the sequences. Here the training sequences become an item
vector per item: counts of (target, recent history item) pairs from RecBole's *training* rows
only (the valid and test targets never enter), positive pointwise mutual information, and a
truncated SVD. ``sid_collaborative_weight`` then mixes these vectors with the text embedding
before quantisation (``pipeline._quantize``), so items that are bought together tend to share
ID prefixes.
"""
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds


def cooccurrence_pairs(history, lengths, targets, window):
    """(a, b) item-id pairs: each training target with each of its last ``window`` history items.

    history [R, N] item ids, the first ``lengths[r]`` valid (RecBole's right-padded item lists);
    targets [R]."""
    history, lengths, targets = np.asarray(history), np.asarray(lengths), np.asarray(targets)
    rows, cols = [], []
    for back in range(1, window + 1):
        ok = lengths >= back
        pos = lengths[ok] - back
        rows.append(targets[ok])
        cols.append(history[ok, pos])
    a, b = np.concatenate(rows), np.concatenate(cols)
    keep = (a > 0) & (b > 0) & (a != b)
    return a[keep], b[keep]


def ppmi_svd_embeddings(a, b, n_items, dim, seed=0):
    """[n_items, dim] float32: SVD of the PPMI matrix of symmetric co-occurrence counts (row 0
    and items without pairs stay zero)."""
    counts = sp.coo_matrix((np.ones(len(a) * 2, dtype=np.float64), (np.concatenate([a, b]), np.concatenate([b, a]))),
                           shape=(n_items, n_items)).tocsr()
    counts.sum_duplicates()
    total = counts.sum()
    row = np.asarray(counts.sum(1)).ravel()
    coo = counts.tocoo()
    pmi = np.log(coo.data * total / (row[coo.row] * row[coo.col]))
    keep = pmi > 0
    ppmi = sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=(n_items, n_items))
    k = min(dim, n_items - 2)
    rng = np.random.default_rng(seed)
    u, s, _ = svds(ppmi, k=k, v0=rng.standard_normal(n_items))
    order = np.argsort(-s)
    emb = (u[:, order] * np.sqrt(s[order])).astype(np.float32)
    emb[row == 0] = 0.0
    return emb


def training_cooccurrence_embeddings(inter, item_field, item_list_field, length_field, n_items, dim, window, seed=0):
    """Item vectors [n_items, dim] from a RecBole training ``Interaction`` and how many pairs made them."""
    a, b = cooccurrence_pairs(inter[item_list_field].numpy(), inter[length_field].numpy(),
                              inter[item_field].numpy(), window)
    return ppmi_svd_embeddings(a, b, n_items, dim, seed), len(a)
