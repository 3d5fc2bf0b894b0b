"""train_time_budget stops any model after the epoch that crosses it."""
from recbole_tiger.compat import load_checkpoint
from recbole_tiger.quick_start import load_data_and_model, run_recbole_tiger


def test_budget_stops_after_the_crossing_epoch(tiny_config):
    # A budget far below one epoch: the first epoch crosses it, is validated, and ends fit.
    config = dict(tiny_config, epochs=5, train_time_budget=1e-6, stopping_step=100)
    result = run_recbole_tiger("SASRec", config_dict=config)
    assert result["budget_exhausted"] and result["epochs"] == 1
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
    assert not result["budget_exhausted"] and result["epochs"] == 3
    curve = result["valid_curve"]
    assert [row["epoch"] for row in curve] == [1, 2, 3]
    assert all(a["fit_seconds"] < b["fit_seconds"] for a, b in zip(curve, curve[1:]))
    assert result["fit_seconds"] >= result["train_seconds"] > 0


def test_last_epoch_is_validated_when_eval_step_skips_it(tiny_config):
    # 4 epochs, eval_step 3: RecBole alone validates after epoch 3 only; epoch 4 could be the best.
    config = dict(tiny_config, epochs=4, eval_step=3, stopping_step=100)
    result = run_recbole_tiger("SASRec", config_dict=config)
    assert [row["epoch"] for row in result["valid_curve"]] == [3, 4]
