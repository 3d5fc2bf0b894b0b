"""``sid_quantizer: opq``: long, unordered semantic IDs by optimized product quantization.

The vector is rotated (OPQ) and cut into ``n_codebooks`` sub-vectors, each quantized by its own
k-means codebook, so an item's ID is ``n_codebooks`` codes that can be predicted in parallel
(RPG, Hou et al., KDD 2025) rather than one code after another. faiss trains the rotation and
the codebooks (its ``OPQMatrix`` and ``ProductQuantizer``), as RPG's own tokenizer does.
"""
import math

import numpy as np


def opq_codes(x, *, n_codebooks, codebook_size, seed, iters):
    """x [N, D] float32 -> codes [N, n_codebooks] int64 in [0, codebook_size).

    D need not divide by ``n_codebooks``: the rotation maps to the next multiple of it. Fewer
    items than that many dimensions: no rotation (plain product quantization)."""
    try:
        import faiss
    except ImportError as err:  # a dependency of the package; say which one if it is missing
        raise ImportError("sid_quantizer: opq needs faiss (pip install faiss-cpu).") from err
    bits = int(round(math.log2(codebook_size)))
    if 2 ** bits != codebook_size or not 1 <= bits <= 16:
        raise ValueError(f"sid_quantizer: opq needs sid_codebook_size to be a power of two up to 65536; "
                         f"got {codebook_size}.")
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    n, d = x.shape
    if n < codebook_size:
        raise ValueError(f"Only {n} items but sid_codebook_size={codebook_size}: the product quantizer's "
                         "codebooks cannot be trained; lower sid_codebook_size.")
    d_out = int(math.ceil(d / n_codebooks) * n_codebooks)
    if n >= d_out:
        opq = faiss.OPQMatrix(d, n_codebooks, d_out)
        opq.niter = iters
        opq.pq = faiss.ProductQuantizer(d_out, n_codebooks, bits)  # OPQ alternates rotation and codebooks
        _quiet(opq.pq.cp, seed, iters)
        opq.verbose = False
        opq.train(x)
        rotated = opq.apply(x)
    else:
        # faiss fits the rotation only from at least as many vectors as dimensions (it crashes
        # below that): a catalogue this small gets plain product quantization, zero-padded to d_out
        rotated = np.ascontiguousarray(np.pad(x, ((0, 0), (0, d_out - d))))
    pq = faiss.ProductQuantizer(d_out, n_codebooks, bits)
    _quiet(pq.cp, seed, iters)
    pq.train(rotated)
    packed = pq.compute_codes(rotated)                                          # [N, code_size] uint8
    codes = np.empty((n, n_codebooks), dtype=np.int64)
    for i, row in enumerate(packed):   # unpack the bit string (8 bits per code is plain bytes)
        reader = faiss.BitstringReader(faiss.swig_ptr(row), len(row))
        codes[i] = [reader.read(bits) for _ in range(n_codebooks)]
    return codes


def _quiet(clustering, seed, iters):
    """Seeded, ``iters`` Lloyd steps, and no warning for small catalogues (faiss asks for 39
    points per centroid; a few thousand items still give usable codebooks)."""
    clustering.seed, clustering.niter = int(seed), int(iters)
    clustering.min_points_per_centroid = 1
