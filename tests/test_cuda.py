"""The CUDA paths: TIGER (and its dense head) trained and ranked on a GPU, in float32 and bf16.
They skip on a machine without CUDA; benchmarks/gpu_check.sh runs them on one."""
import pytest
import torch

from recbole_tiger.precision import resolve_precision
from recbole_tiger.quick_start import load_data_and_model, run_recbole_tiger

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device (torch.cuda.is_available() is False); "
                                       "benchmarks/gpu_check.sh runs these on a GPU")

TINY = {"sid_quantizer": "rqkmeans", "sid_n_levels": 2, "sid_codebook_size": 4, "d_model": 32, "n_heads": 2,
        "d_head": 16, "d_ff": 64, "n_encoder_layers": 1, "n_decoder_layers": 1, "warmup_steps": 2,
        "beam_size": 10, "beam_check_users": 0, "epochs": 2, "eval_step": 1}


def top10_overlap(a, b):
    ta, tb = a.topk(10, dim=1).indices, b.topk(10, dim=1).indices
    return sum(len(set(x.tolist()) & set(y.tolist())) for x, y in zip(ta, tb)) / tb.numel()


@needs_cuda
def test_auto_is_bf16_on_a_gpu_that_has_it():
    assert resolve_precision("auto", "cuda") == ("bfloat16" if torch.cuda.is_bf16_supported() else "float32")


@needs_cuda
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("extra", [{}, {"dense_head": True, "encoder_tokens": "item", "train_targets": "all"}])
def test_tiger_trains_on_cuda_and_ranks_as_on_the_cpu(tiny_config, precision, extra):
    result = run_recbole_tiger("TIGER", config_dict={**tiny_config, **TINY, "precision": precision, **extra})
    config, model, _, _, _, test_data = load_data_and_model(result["saved_model_file"])
    assert config["device"].type == "cuda" and next(model.parameters()).is_cuda
    assert model.resolved_precision() == precision
    batch = next(iter(test_data))[0]
    model.eval()
    gpu = model.full_sort_predict(batch.to(config["device"])).float().cpu()
    assert torch.isfinite(gpu[:, 1:]).any(1).all()
    model.cpu()
    model._precision = {"cpu": "float32"}
    cpu = model.full_sort_predict(batch.to("cpu")).float()
    # the same weights rank alike on both devices (bf16 rounds activations on the GPU only)
    assert top10_overlap(gpu, cpu) >= (0.95 if precision == "float32" else 0.8)
