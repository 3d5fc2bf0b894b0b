"""RQ-VAE (Rajput et al. 2023, §3.1): item embedding → latent → residual codes → reconstruction.

    x [B, d_in] → standardise → MLP encoder → z [B, d_lat]
    level l: c_l = nearest codeword of residual r_l (r_0 = z, r_{l+1} = r_l - e_{c_l})
    ẑ = Σ_l e_{c_l} (straight-through to the encoder) → MLP decoder → x̂
    loss = ||x̂ - x||² + β Σ_l ||r_l - sg[e_{c_l}]||²

Codebooks are updated by exponential moving averages of their assigned residuals (as in
SoundStream's residual VQ) rather than by the paper's codebook-loss term. Why: with the
paper's Adagrad at lr 0.4 the codebook parameters would follow the optimiser's step size,
which Adagrad shrinks over time; EMA moves each codeword to the mean of its residuals at a
fixed rate whatever the optimiser, which is what the codebook-loss gradient aims for anyway.
Codebooks start from k-means on the encoded residuals (level by level), and codewords unused
for a whole epoch are restarted on random residuals of that epoch — without restarts a few
codes take over and usage collapses.
"""
import logging
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_tiger.semantic_ids.diagnostics import level_usage_and_perplexity, unique_prefix_rate
from recbole_tiger.semantic_ids.kmeans import kmeans, nearest

logger = logging.getLogger()


def mlp(sizes):
    """Linear layers with ReLU between (none after the last)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ResidualQuantizer(nn.Module):
    """``n_levels`` EMA codebooks of ``codebook_size`` codewords in ``dim`` dimensions."""

    def __init__(self, n_levels, codebook_size, dim, decay=0.99, eps=1e-5):
        super().__init__()
        self.n_levels, self.codebook_size, self.dim = n_levels, codebook_size, dim
        self.decay, self.eps = decay, eps
        self.register_buffer("codebooks", torch.zeros(n_levels, codebook_size, dim))  # [L, K, D]
        self.register_buffer("ema_count", torch.zeros(n_levels, codebook_size))       # [L, K]
        self.register_buffer("ema_sum", torch.zeros(n_levels, codebook_size, dim))    # [L, K, D]

    @torch.no_grad()
    def init_kmeans(self, z, generator, n_iters=25):
        """Codebook l = k-means of the residuals left by levels < l.   z [N, D]"""
        residual = z
        for level in range(self.n_levels):
            centers, assign = kmeans(residual, self.codebook_size, generator, n_iters)
            self.codebooks[level] = centers
            counts = torch.bincount(assign, minlength=self.codebook_size).float()
            self.ema_count[level] = counts
            self.ema_sum[level] = centers * counts[:, None]
            residual = residual - centers[assign]

    def forward(self, z):
        """Quantise ``z`` [B, D] → (ẑ [B, D] (no straight-through yet), codes [B, L], residuals [L, B, D])."""
        residual = z
        quantized = torch.zeros_like(z)
        codes, residuals = [], []
        for level in range(self.n_levels):
            codebook = self.codebooks[level]
            idx, _ = nearest(residual.detach(), codebook)
            chosen = codebook[idx]                                     # [B, D]
            residuals.append(residual)
            codes.append(idx)
            quantized = quantized + chosen
            residual = residual - chosen
        return quantized, torch.stack(codes, 1), torch.stack(residuals)

    @torch.no_grad()
    def ema_update(self, residuals, codes):
        """Move each used codeword towards the mean of its residuals.   residuals [L, B, D], codes [B, L]"""
        for level in range(self.n_levels):
            onehot = F.one_hot(codes[:, level], self.codebook_size).type(residuals.dtype)  # [B, K]
            self.ema_count[level].mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
            self.ema_sum[level].mul_(self.decay).add_(onehot.T @ residuals[level], alpha=1 - self.decay)
            n = self.ema_count[level].sum()
            # Laplace smoothing keeps rarely used codewords from dividing by ~0
            count = (self.ema_count[level] + self.eps) / (n + self.codebook_size * self.eps) * n
            self.codebooks[level] = self.ema_sum[level] / count[:, None]

    @torch.no_grad()
    def restart_dead_codes(self, usage, pool, generator, threshold=1):
        """Re-seed codewords used fewer than ``threshold`` times on residuals from ``pool``.

        usage [L, K] counts over the window; pool [L, N, D] residuals seen in it.
        Returns the number of restarted codes per level.
        """
        restarted = []
        for level in range(self.n_levels):
            dead = (usage[level] < threshold).nonzero().squeeze(1)
            if len(dead) > 0:
                pick = torch.randint(pool.shape[1], (len(dead),), generator=generator).to(pool.device)
                fresh = pool[level, pick]
                self.codebooks[level, dead] = fresh
                # restart the EMA statistics as if the codeword had one residual assigned
                self.ema_count[level, dead] = 1.0
                self.ema_sum[level, dead] = fresh
            restarted.append(len(dead))
        return restarted


class RQVAE(nn.Module):
    def __init__(self, in_dim, hidden_sizes=(512, 256, 128), latent_dim=32, n_levels=3,
                 codebook_size=256, beta=0.25, ema_decay=0.99):
        super().__init__()
        self.beta = beta
        self.encoder = mlp([in_dim, *hidden_sizes, latent_dim])
        self.decoder = mlp([latent_dim, *reversed(hidden_sizes), in_dim])
        self.quantizer = ResidualQuantizer(n_levels, codebook_size, latent_dim, ema_decay)
        # input standardisation: text embeddings have a few large, shared directions that would
        # otherwise dominate the MSE (and thus the first-level codes)
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_std", torch.ones(in_dim))

    def set_standardisation(self, x):
        self.input_mean.copy_(x.mean(0))
        self.input_std.copy_(x.std(0).clamp_min(1e-6))

    def standardise(self, x):
        return (x - self.input_mean) / self.input_std

    def forward(self, x):
        """x [B, d_in] (raw) → dict(loss, recon, commit, codes [B, L], residuals [L, B, D])."""
        x = self.standardise(x)
        z = self.encoder(x)                                             # [B, D]
        quantized, codes, residuals = self.quantizer(z)
        commit = ((residuals - self._chosen(codes).detach()) ** 2).mean(dim=(1, 2)).sum()  # Σ_l mse
        z_q = z + (quantized - z).detach()                              # straight-through
        x_hat = self.decoder(z_q)
        recon = F.mse_loss(x_hat, x)
        return {"loss": recon + self.beta * commit, "recon": recon, "commit": commit,
                "codes": codes, "residuals": residuals.detach()}

    def _chosen(self, codes):
        """Codewords picked at each level.   codes [B, L] → [L, B, D]"""
        cb = self.quantizer.codebooks
        return torch.stack([cb[level][codes[:, level]] for level in range(cb.shape[0])])

    @torch.no_grad()
    def encode_codes(self, x, batch_size=8192):
        """Codes [N, L] and standardised reconstruction MSE of ``x`` [N, d_in]."""
        codes, sq_err = [], 0.0
        for start in range(0, x.shape[0], batch_size):
            xb = self.standardise(x[start:start + batch_size])
            quantized, c, _ = self.quantizer(self.encoder(xb))
            sq_err += ((self.decoder(quantized) - xb) ** 2).sum().item()
            codes.append(c)
        return torch.cat(codes), sq_err / x.numel()


def make_optimizer(name, params, lr):
    name = str(name).lower()
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"sid_learner={name!r}: expected one of adagrad, adam, adamw, sgd.")


def train_rqvae(embeddings, params, device, generator):
    """Fit an RQ-VAE on item embeddings [N, d] and return (codes [N, L] cpu, recon_mse, history).

    ``params`` holds the ``sid_*`` settings (see ``defaults.py``). ``generator`` (CPU) drives
    every random choice (shuffling, k-means seeding, restarts) so CPU runs are reproducible.
    """
    x = torch.as_tensor(embeddings, dtype=torch.float32, device=device)
    n = x.shape[0]
    n_levels, k = params.sid_n_levels, params.sid_codebook_size
    with torch.random.fork_rng(devices=[]):  # weight init from `generator`, global RNG untouched
        torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
        model = RQVAE(x.shape[1], params.sid_hidden_sizes, params.sid_latent_dim, n_levels, k,
                      params.sid_beta, params.sid_ema_decay).to(device)
    model.set_standardisation(x)
    optimizer = make_optimizer(params.sid_learner, model.parameters(), params.sid_learning_rate)
    batch_size = min(params.sid_batch_size, n)
    epochs = params.sid_epochs
    log_every = max(1, params.sid_log_interval)

    with torch.no_grad():  # k-means init on the encoded first batch(es), up to sid_kmeans_init_size items
        init_idx = torch.randperm(n, generator=generator)[: max(params.sid_kmeans_init_size, k)].to(device)
        model.quantizer.init_kmeans(model.encoder(model.standardise(x[init_idx])), generator,
                                    params.sid_kmeans_iters)

    history, start = [], time.time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        usage = torch.zeros(n_levels, k, device=device)
        pool = []
        total = {"loss": 0.0, "recon": 0.0, "commit": 0.0}
        for b in range(0, n, batch_size):
            batch = x[order[b:b + batch_size]]
            out = model(batch)
            optimizer.zero_grad()
            out["loss"].backward()
            optimizer.step()
            model.quantizer.ema_update(out["residuals"], out["codes"])
            for level in range(n_levels):
                usage[level] += torch.bincount(out["codes"][:, level], minlength=k)
            pool.append(out["residuals"])
            for key in total:
                total[key] += out[key].item() * len(batch) / n
        last = epoch == epochs - 1
        restarted = [0] * n_levels
        if not last:
            restarted = model.quantizer.restart_dead_codes(usage, torch.cat(pool, 1), generator,
                                                           params.sid_dead_code_threshold)
        if (epoch + 1) % log_every == 0 or last or epoch == 0:
            model.eval()
            codes, mse = model.encode_codes(x)
            row = {"epoch": epoch + 1, "loss": round(total["loss"], 5), "recon_mse": round(mse, 5),
                   "commit": round(total["commit"], 5), "restarted": restarted,
                   "seconds": round(time.time() - start, 1)}
            row.update(level_usage_and_perplexity(codes.cpu(), [k] * n_levels))
            row["unique_prefix_rate"] = round(unique_prefix_rate(codes.cpu()), 4)
            history.append(row)
            usage_txt = " ".join(f"{u:.0%}" for u in row["usage"])
            ppl_txt = " ".join(f"{p:.0f}" for p in row["perplexity"])
            logger.info(
                f"RQ-VAE epoch {epoch + 1}/{epochs}: loss {row['loss']:.4f} recon_mse {mse:.4f} "
                f"usage [{usage_txt}] perplexity [{ppl_txt}] unique_prefix {row['unique_prefix_rate']:.2%} "
                f"restarted {restarted} ({row['seconds']}s)"
            )
            if not math.isfinite(total["loss"]):
                raise FloatingPointError(f"RQ-VAE loss became {total['loss']} at epoch {epoch + 1}; lower sid_learning_rate.")
    model.eval()
    codes, mse = model.encode_codes(x)
    return codes.cpu(), mse, history
