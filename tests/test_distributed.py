"""TIGER through RecBole's distributed training, on two CPU processes (gloo)."""
import os
import socket

import pytest

from recbole_tiger.quick_start import load_data_and_model, run
from recbole_tiger.trainer import get_trainer

TIGER_TINY = {"d_model": 16, "n_encoder_layers": 1, "n_decoder_layers": 1, "n_heads": 2, "d_head": 8, "d_ff": 32,
              "sid_quantizer": "rqkmeans", "sid_codebook_size": 8, "beam_size": 10, "beam_check_users": 0}


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_one_run_and_evaluate_like_one_process(tiny_config):
    config_dict = {**tiny_config, **TIGER_TINY, "epochs": 2, "eval_step": 1,
                   "metric_decimal_place": 8, "train_time_budget": 10}
    result = run("TIGER", config_dict=config_dict, nproc=2, port=free_port())
    assert result is not None and result["epochs"] == 2
    assert result["config"]["world_size"] == 2 and not result["config"]["single_spec"]
    # one checkpoint and one resume file for the run (rank 0 writes, every rank reads its name)
    saved = sorted(f for f in os.listdir(tiny_config["checkpoint_dir"]) if f.startswith("TIGER-"))
    assert saved == [os.path.basename(result["saved_model_file"]), os.path.basename(result["resume_file"])]
    assert len(result["valid_curve"]) == 2

    # the same weights evaluated in one process: the two ranks' halves add up to the same metrics
    config, model, _, _, _, test_data = load_data_and_model(result["saved_model_file"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    single = trainer.evaluate(test_data, load_best_model=True, model_file=result["saved_model_file"])
    for metric, value in result["test_result"].items():
        assert single[metric] == pytest.approx(value, abs=1e-6), metric


def test_the_time_budget_stops_every_rank_after_the_same_epoch(tiny_config):
    """Each rank has its own clock: the stop decision is shared, or one rank would wait forever
    for the other at the next collective."""
    config_dict = {**tiny_config, **TIGER_TINY, "epochs": 5, "train_time_budget": 1e-6}
    result = run("TIGER", config_dict=config_dict, nproc=2, port=free_port())
    assert result["epochs"] == 1 and result["budget_exhausted"]
