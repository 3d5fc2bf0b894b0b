"""train_time_budget stops any model after the epoch that crosses it."""
import pytest

from recbole_tiger.compat import load_checkpoint
from recbole_tiger.quick_start import load_data_and_model, run_recbole_tiger


def test_budget_stops_after_the_crossing_epoch(tiny_config):
    # A budget far below one epoch: the first epoch crosses it, is validated, and ends fit.
    config = dict(tiny_config, epochs=5, train_time_budget=1e-6, stopping_step=100)
    result = run_recbole_tiger("SASRec", config_dict=config)
    assert result["budget_exhausted"] and result["epochs"] == 1 and result["stopped_by"] == "budget"
    assert len(result["valid_curve"]) == 1
    # the crossing epoch was saved as the best checkpoint, and the test metrics are that checkpoint's
    assert load_checkpoint(result["saved_model_file"])["epoch"] == 0
    config, model, _, _, _, test_data = load_data_and_model(result["saved_model_file"])
    from recbole.trainer import Trainer

    assert Trainer(config, model).evaluate(test_data, load_best_model=False) == result["test_result"]


def test_crossing_epoch_is_validated_even_between_eval_steps(tiny_config):
    config = dict(tiny_config, epochs=5, eval_step=3, train_time_budget=1e-6)
    result = run_recbole_tiger("SASRec", config_dict=config)
    assert result["epochs"] == 1 and [row["epoch"] for row in result["valid_curve"]] == [1]


def test_no_budget_runs_all_epochs_and_records_the_curve(tiny_config):
    config = dict(tiny_config, epochs=3, stopping_step=100)
    result = run_recbole_tiger("SASRec", config_dict=config)
    assert not result["budget_exhausted"] and result["epochs"] == 3 and result["stopped_by"] == "epochs"
    curve = result["valid_curve"]
    assert [row["epoch"] for row in curve] == [1, 2, 3]
    assert all(a["fit_seconds"] < b["fit_seconds"] for a, b in zip(curve, curve[1:]))
    assert result["fit_seconds"] >= result["train_seconds"] > 0


def test_last_epoch_is_validated_when_eval_step_skips_it(tiny_config):
    # 4 epochs, eval_step 3: RecBole alone validates after epoch 3 only; epoch 4 could be the best.
    config = dict(tiny_config, epochs=4, eval_step=3, stopping_step=100)
    result = run_recbole_tiger("SASRec", config_dict=config)
    assert [row["epoch"] for row in result["valid_curve"]] == [3, 4]



@pytest.mark.parametrize("learning_rate, expected", [(0.001, "epochs"), (1.0, "patience")])
def test_stopped_by_says_whether_patience_or_the_epoch_cap_ended_the_run(tiny_config, learning_rate, expected):
    # the tiny data keeps improving at RecBole's learning rate; at 1.0 valid falls after epoch 1
    config = dict(tiny_config, epochs=12, stopping_step=1, learning_rate=learning_rate)
    result = run_recbole_tiger("SASRec", config_dict=config)
    # RecBole's rule on the recorded curve: a validation below the best counts one step;
    # stopping_step + 1 of them in a row end the run
    best, bad, stopped_at = float("-inf"), 0, None
    for row in result["valid_curve"]:
        best, bad = (row["valid_score"], 0) if row["valid_score"] >= best else (best, bad + 1)
        if bad > 1:
            stopped_at = row["epoch"]
            break
    assert result["stopped_by"] == expected
    assert result["epochs"] == (12 if expected == "epochs" else stopped_at)
