"""Small batched k-means in torch (k-means++ seeding + Lloyd), deterministic given a generator.

Used to initialise RQ-VAE codebooks level by level and as the whole quantizer of
``sid_quantizer: rqkmeans``. Distances are computed in chunks so memory stays
O(chunk · k) whatever the number of points.
"""
import math

import torch

ROW_CHUNK = 65536  # rows per elementwise [chunk, D] pass over the points (100 MB at D = 384)


def squared_distances(x, centers, chunk=8192):
    """||x_i - c_j||^2 for all pairs.   x [N, D], centers [K, D] -> [N, K]"""
    c2 = (centers * centers).sum(-1)                                   # [K]
    out = []
    for start in range(0, x.shape[0], chunk):
        xb = x[start:start + chunk]
        d = (xb * xb).sum(-1, keepdim=True) - 2 * xb @ centers.T + c2  # [B, K]
        out.append(d.clamp_min_(0))
    return torch.cat(out)


def nearest(x, centers, chunk=8192):
    """Index of the nearest center and its squared distance.   -> [N] long, [N] float"""
    idx, dist = [], []
    for start in range(0, x.shape[0], chunk):
        d = squared_distances(x[start:start + chunk], centers, chunk)
        m = d.min(-1)
        idx.append(m.indices)
        dist.append(m.values)
    return torch.cat(idx), torch.cat(dist)


def kmeans_plus_plus(x, k, generator):
    """Greedy k-means++ seeding (as scikit-learn): at each step draw 2 + log(k) candidates with
    probability ∝ squared distance to the chosen centers and keep the one that lowers the
    total distance most — plain k-means++ often merges two close clusters and splits another."""
    n = x.shape[0]
    n_candidates = 2 + int(math.log(k))
    first = torch.randint(n, (1,), generator=generator, device="cpu").item()
    centers = [x[first]]
    closest = torch.cat([((xb - x[first]) ** 2).sum(-1)                 # [N], in chunks: no [N, D] temporary
                         for xb in x.split(ROW_CHUNK)])
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than k: duplicate (handled by empty-cluster logic)
            picks = torch.randint(n, (n_candidates,), generator=generator)
        else:
            picks = torch.multinomial((closest / total).cpu(), n_candidates, replacement=True, generator=generator)
        cand = x[picks.to(x.device)]                                    # [C, D]
        d = squared_distances(x, cand)                                  # [N, C]
        new_closest = torch.minimum(closest[:, None], d)                # [N, C]
        best = int(new_closest.sum(0).argmin())
        centers.append(cand[best])
        closest = new_closest[:, best]
    return torch.stack(centers)


def kmeans(x, k, generator, n_iters=25, tol=1e-6):
    """Cluster ``x`` [N, D] into ``k`` centers. Returns (centers [K, D], assignment [N]).

    Empty clusters are re-seeded with the points currently worst served (largest distance to
    their center), so every center ends up used whenever there are at least ``k`` distinct points.
    """
    x = x.float()
    n = x.shape[0]
    if n == 0:
        raise ValueError("kmeans: no points")
    centers = kmeans_plus_plus(x, k, generator)
    prev_inertia = None
    for _ in range(n_iters):
        assign, dist = nearest(x, centers)
        counts = torch.bincount(assign, minlength=k)                    # [K]
        sums = torch.zeros_like(centers).index_add_(0, assign, x)        # [K, D]
        nonempty = counts > 0
        centers = torch.where(nonempty[:, None], sums / counts.clamp_min(1)[:, None].float(), centers)
        empty = (~nonempty).nonzero().squeeze(1)
        if len(empty) > 0:
            worst = dist.argsort(descending=True)[: len(empty)]
            centers[empty[: len(worst)]] = x[worst]
        inertia = dist.sum().item()
        if len(empty) == 0 and prev_inertia is not None and prev_inertia - inertia <= tol * max(prev_inertia, 1e-12):
            break
        prev_inertia = inertia
    assign, _ = nearest(x, centers)
    return centers, assign


def residual_kmeans(x, n_levels, k, generator, n_iters=25, overwrite_input=False, chunk=ROW_CHUNK):
    """Residual k-means (no training): level l clusters what levels < l left unexplained.

    Returns (codebooks [L, K, D], codes [N, L]). With ``overwrite_input`` a float32 ``x`` becomes
    the residual buffer (no second [N, D] copy: 1.5 GB at 1M x 384); residuals are subtracted in
    chunks, never materialising ``centers[assign]`` for all points.
    """
    residual = x.float() if overwrite_input else x.float().clone()
    codebooks, codes = [], []
    for level in range(n_levels):
        centers, assign = kmeans(residual, k, generator, n_iters)
        codebooks.append(centers)
        codes.append(assign)
        if level + 1 < n_levels:
            for start in range(0, residual.shape[0], chunk):
                residual[start:start + chunk] -= centers[assign[start:start + chunk]]
    return torch.stack(codebooks), torch.stack(codes, dim=1)
