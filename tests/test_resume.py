"""Resumable runs: a budgeted run continued in a later invocation behaves as one run."""
import os

import pytest
import torch

from recbole_tiger.compat import load_checkpoint
from recbole_tiger.config import Config
from recbole_tiger.quick_start import build_model, build_trainer, prepare_data, run_recbole_tiger

TIGER_TINY = {
    "d_model": 16, "n_encoder_layers": 1, "n_decoder_layers": 1, "n_heads": 2, "d_head": 8, "d_ff": 32,
    "n_user_tokens": 0, "beam_size": 10, "length_bucket_size": 16, "beam_check_users": 0,
    "sid_quantizer": "rqkmeans", "sid_n_levels": 2, "sid_codebook_size": 4,
    "lr_scheduler": "rsqrt", "warmup_steps": 1000, "stopping_step": 100,
}


def test_tiger_resume_continues_the_learning_rate_schedule(tiny_config):
    """The rsqrt warmup must go on from where the first invocation stopped, not restart."""
    config_dict = {**tiny_config, **TIGER_TINY, "epochs": 2}
    first = run_recbole_tiger("TIGER", config_dict=config_dict)
    saved = load_checkpoint(first["resume_file"])
    steps_done = int(next(iter(saved["optimizer"]["state"].values()))["step"])
    assert steps_done > 0 and saved["epoch"] == 1

    config = Config(model="TIGER", config_dict={**config_dict, "epochs": 3, "resume_from": first["resume_file"]})
    _, train_data, _, _ = prepare_data(config)
    trainer = build_trainer(config, build_model(config, train_data))
    assert trainer.start_epoch == 2
    assert trainer.lr_scheduler.last_epoch == steps_done
    # scheduler index s gives lr * (s + 1) / warmup during warmup; one more step -> s = steps_done + 1
    warmup_lr = config["learning_rate"] * (steps_done + 2) / config["warmup_steps"]
    trainer.optimizer.zero_grad()
    trainer.model.calculate_loss(next(iter(train_data))).backward()
    trainer.optimizer.step()  # the schedule steps with the optimizer
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(warmup_lr)


def test_budgeted_run_continues_where_it_stopped(tiny_config):
    """Invocation 1 spends its budget; invocation 2 gets a larger total budget and goes on:
    epochs, the validation curve and the time spent continue, the best checkpoint stays the
    run's one file and the test uses it."""
    config_dict = {**tiny_config, "epochs": 50, "stopping_step": 100, "train_time_budget": 1e-6}
    first = run_recbole_tiger("SASRec", config_dict=config_dict)
    assert first["budget_exhausted"] and first["epochs"] == 1
    assert os.path.isfile(first["resume_file"])

    # Same total budget: nothing more to train, the run just reports its best checkpoint.
    again = run_recbole_tiger("SASRec", config_dict={**config_dict, "resume_from": first["resume_file"]})
    assert again["epochs"] == 1 and again["valid_curve"] == first["valid_curve"]
    assert again["test_result"] == first["test_result"]

    # A larger total budget: training goes on from epoch 2, curve appended, time accumulated.
    spent_min = first["fit_seconds"] / 60
    more = dict(config_dict, train_time_budget=spent_min + 10, epochs=3, resume_from=first["resume_file"])
    second = run_recbole_tiger("SASRec", config_dict=more)
    assert second["epochs"] == 3 and not second["budget_exhausted"]
    curve = second["valid_curve"]
    assert curve[0] == first["valid_curve"][0] and [row["epoch"] for row in curve] == list(range(1, second["epochs"] + 1))
    assert second["fit_seconds"] > first["fit_seconds"]
    assert all(a["fit_seconds"] < b["fit_seconds"] for a, b in zip(curve, curve[1:]))
    assert second["saved_model_file"] == first["saved_model_file"]


def test_resumed_epochs_equal_an_uninterrupted_run(tiny_config):
    """2 epochs + resume + 1 epoch trains the same weights as 3 epochs in one go."""
    base = {**tiny_config, "stopping_step": 100, "reproducibility": True}
    whole = run_recbole_tiger("SASRec", config_dict={**base, "epochs": 3})
    part = run_recbole_tiger("SASRec", config_dict={**base, "epochs": 2})
    rest = run_recbole_tiger("SASRec", config_dict={**base, "epochs": 3, "resume_from": part["resume_file"]})
    a = load_checkpoint(whole["resume_file"])["state_dict"]
    b = load_checkpoint(rest["resume_file"])["state_dict"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert [r["ndcg@10"] for r in rest["valid_curve"]] == [r["ndcg@10"] for r in whole["valid_curve"]]


def test_resume_from_a_missing_file_names_the_key(tiny_config):
    with pytest.raises(FileNotFoundError, match="resume_from="):
        run_recbole_tiger("SASRec", config_dict={**tiny_config, "resume_from": "saved/nope.resume.pth"})


def test_cosine_schedule_reaches_zero_at_the_last_epoch_and_resumes(tiny_config):
    """lr_scheduler: cosine decays to 0 exactly at the last optimizer step of `epochs`; a run cut
    by its time budget and resumed follows the same schedule and trains the same weights as
    the uninterrupted run (no restart of the warmup or the decay)."""
    cosine = {**tiny_config, **TIGER_TINY, "lr_scheduler": "cosine", "warmup_steps": 2, "epochs": 3,
              "learning_rate": 0.001, "reproducibility": True}
    whole = run_recbole_tiger("TIGER", config_dict=cosine)
    saved = load_checkpoint(whole["resume_file"])
    assert int(next(iter(saved["optimizer"]["state"].values()))["step"]) > 2
    assert saved["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)

    cut = run_recbole_tiger("TIGER", config_dict={**cosine, "train_time_budget": 1e-6})
    assert cut["budget_exhausted"] and cut["epochs"] == 1
    lr_cut = load_checkpoint(cut["resume_file"])["optimizer"]["param_groups"][0]["lr"]
    assert 0.1 * cosine["learning_rate"] < lr_cut < cosine["learning_rate"]  # mid-decay
    rest = run_recbole_tiger("TIGER", config_dict={**cosine, "resume_from": cut["resume_file"]})
    assert rest["epochs"] == 3
    a, b = saved["state_dict"], load_checkpoint(rest["resume_file"])["state_dict"]
    weights = [k for k in a if torch.is_tensor(a[k])]  # (TIGER also keeps its semantic-ID tables here)
    assert weights and all(torch.allclose(a[k], b[k], atol=1e-6) for k in weights)


def test_a_checkpoint_from_before_a_setting_existed_loads_with_its_default(tiny_config, tmp_path):
    from recbole_tiger.quick_start import load_data_and_model

    result = run_recbole_tiger("SASRec", config_dict={**tiny_config, "epochs": 1})
    checkpoint = load_checkpoint(result["saved_model_file"])
    del checkpoint["config"].final_config_dict["train_session_limit"]          # a key added later
    old = tmp_path / "old.pth"
    torch.save(checkpoint, old)
    import sys

    argv, sys.argv = sys.argv, ["tool", "--values=1,2"]                           # a tool's own arguments
    try:
        config, model, _, _, _, test_data = load_data_and_model(str(old))
    finally:
        sys.argv = argv
    assert "train_session_limit" in config.final_config_dict and config["train_session_limit"] is None
    assert "values" not in config.final_config_dict                              # not taken for a default
    trainer = build_trainer(config, model)                                       # reads every run setting
    assert trainer.evaluate(test_data, load_best_model=False)["ndcg@10"] >= 0.0
