"""precision: bf16 autocast for TIGER's training and ranking (float32 weights, losses and scores)."""
import math

import pytest
import torch

from recbole_tiger.precision import autocast, hardware_bf16, resolve_precision
from recbole_tiger.quick_start import load_data_and_model, run_recbole_tiger

TINY = {"sid_quantizer": "rqkmeans", "sid_n_levels": 2, "sid_codebook_size": 4, "d_model": 32, "n_heads": 2,
        "d_head": 16, "d_ff": 64, "n_encoder_layers": 1, "n_decoder_layers": 1, "warmup_steps": 2,
        "beam_size": 10, "beam_check_users": 0, "epochs": 2, "eval_step": 1}


def test_resolve_precision():
    assert resolve_precision("float32", "cpu") == "float32"
    assert resolve_precision("bfloat16", "cpu") == "bfloat16"
    assert resolve_precision("auto", "cpu") == ("bfloat16" if hardware_bf16("cpu") else "float32")
    with pytest.raises(ValueError, match="half"):
        resolve_precision("half", "cpu")
    with pytest.raises(ValueError, match="not resolved"):
        autocast("auto", "cpu")


def test_invalid_precision_names_the_key(tiny_config):
    with pytest.raises(ValueError, match="precision"):
        run_recbole_tiger("TIGER", config_dict={**tiny_config, **TINY, "precision": "fp8"})


@pytest.mark.parametrize("extra", [{}, {"dense_head": True, "encoder_tokens": "item", "train_targets": "all"}])
def test_bf16_trains_and_ranks_close_to_float32(tiny_config, extra):
    result = run_recbole_tiger("TIGER", config_dict={**tiny_config, **TINY, "precision": "bfloat16", **extra})
    assert all(math.isfinite(row["train_loss"]) for row in result["valid_curve"])
    _, model, _, _, _, test_data = load_data_and_model(result["saved_model_file"])
    assert model.resolved_precision() == "bfloat16"
    batch = next(iter(test_data))[0]
    model.eval()
    # the transformer's matmuls really run in bf16 (autocast on; its residual stream stays float32),
    # its weights and the scores stay float32
    seen = []
    linear = next(m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear))
    handle = linear.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    bf16 = model.full_sort_predict(batch)
    handle.remove()
    assert seen and seen[0] == torch.bfloat16
    assert bf16.dtype == torch.float32 and all(p.dtype == torch.float32 for p in model.parameters())
    # the same weights ranked in float32: the top-10 mostly agree (bf16 rounds the activations)
    model._precision = {"cpu": "float32"}
    fp32 = model.full_sort_predict(batch)
    top_bf16, top_fp32 = bf16.topk(10, dim=1).indices, fp32.topk(10, dim=1).indices
    overlap = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(top_bf16, top_fp32)) / top_fp32.numel()
    assert overlap >= 0.8, overlap
    assert not torch.equal(bf16, fp32)  # bf16 arithmetic did change the scores


def test_gpu_check_script_parses_and_skips_without_cuda():
    """benchmarks/gpu_check.sh: valid bash, and without CUDA it stops after the tests with the reason."""
    import os
    import subprocess

    from conftest import REPO_ROOT

    script = os.path.join(REPO_ROOT, "benchmarks", "gpu_check.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    text = open(script, encoding="utf-8").read()
    skip = text.index("torch.cuda.is_available() else 1")
    assert "no CUDA device here" in text[skip:] and text.index("exit 0", skip) < text.index("python -m benchmarks.throughput", skip)
