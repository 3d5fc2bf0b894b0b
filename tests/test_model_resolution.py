"""Plugin-first model and trainer resolution, layered properties, the runner."""
import os
import subprocess
import sys

import pytest
from recbole.model.sequential_recommender.sasrec import SASRec
from recbole.trainer import Trainer

import recbole_tiger.config as config_module
from recbole_tiger.config import Config
from recbole_tiger.quick_start import run_recbole_tiger
from recbole_tiger.trainer import TimeBudgetMixin
from recbole_tiger.trainer import get_trainer
from recbole_tiger.utils import available_models, get_model

from conftest import REPO_ROOT


def test_builtin_and_plugin_models_resolve():
    assert get_model("SASRec") is SASRec
    assert get_model("BERT4Rec").__module__ == "recbole.model.sequential_recommender.bert4rec"
    tiger = get_model("TIGER")
    assert tiger.__module__.startswith("recbole_tiger.model")


def test_unknown_model_lists_available_models():
    with pytest.raises(ValueError) as err:
        get_model("NoSuchModel")
    message = str(err.value)
    assert "NoSuchModel" in message and "TIGER" in message and "SASRec" in message
    assert available_models()[:3] == ["RPG", "TIGER", "TextNN"]  # plugin models first


def test_wrong_case_gets_a_hint():
    with pytest.raises(ValueError, match="Did you mean 'SASRec'"):
        get_model("sasrec")


def test_every_trainer_gets_the_time_budget():
    trainer_class = get_trainer(SASRec.type, "SASRec")
    assert issubclass(trainer_class, TimeBudgetMixin) and issubclass(trainer_class, Trainer)
    assert get_trainer(SASRec.type, "SASRec") is trainer_class  # cached, not rebuilt


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_property_layers_later_wins(tmp_path, tiny_config, monkeypatch):
    props = tmp_path / "props"
    _write(str(props / "overall.yaml"), "train_neg_sample_args: ~\nprobe_a: overall\nprobe_b: overall\nprobe_c: overall\nprobe_d: overall\nprobe_e: overall\n")
    _write(str(props / "model" / "SASRec.yaml"), "probe_b: model\nprobe_c: model\nprobe_d: model\nprobe_e: model\n")
    _write(str(props / "dataset" / "tiny.yaml"), "probe_c: dataset\nprobe_d: dataset\nprobe_e: dataset\n")
    _write(str(tmp_path / "user.yaml"), "probe_d: file\nprobe_e: file\n")
    monkeypatch.setattr(config_module, "PROPERTIES_DIR", str(props))
    monkeypatch.setattr(sys, "argv", ["run", "--probe_e=cmdline"])
    config = Config(model="SASRec", config_file_list=[str(tmp_path / "user.yaml")], config_dict=tiny_config)
    assert [config[f"probe_{k}"] for k in "abcde"] == ["overall", "model", "dataset", "file", "cmdline"]


def test_shipped_beauty_protocol():
    config = Config(model="SASRec", dataset="amazon-beauty", config_dict={"data_path": "unused"})
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert config["eval_args"]["order"] == "TO"
    assert config["eval_args"]["mode"] == {"valid": "full", "test": "full"}
    assert config["MAX_ITEM_LIST_LENGTH"] == 20
    assert config["valid_metric"] == "NDCG@10"
    assert config["user_inter_num_interval"] == "[5,inf)" and config["item_inter_num_interval"] == "[5,inf)"
    assert config["train_neg_sample_args"]["distribution"] == "none" and config["loss_type"] == "CE"


def test_shipped_tiger_defaults_are_the_papers_sizes_with_the_chosen_recipe():
    config = Config(model="TIGER", dataset="amazon-beauty", config_dict={"data_path": "unused"})
    assert config["train_batch_size"] == 256 and config["MAX_ITEM_LIST_LENGTH"] == 20
    assert (config["d_model"], config["n_encoder_layers"], config["n_decoder_layers"]) == (128, 4, 4)
    assert (config["n_heads"], config["d_head"], config["d_ff"]) == (6, 64, 1024)
    assert config["n_user_tokens"] == 0 and config["dropout_prob"] == 0.0 and config["weight_decay"] == 0.1
    assert (config["lr_scheduler"], config["epochs"], config["tie_code_embeddings"]) == ("cosine", 16, True)
    assert (config["sid_quantizer"], config["sid_collaborative_weight"]) == ("rqkmeans", 0.3)


def test_sasrec_one_epoch_through_runner(tiny_config):
    result = run_recbole_tiger("SASRec", config_dict=tiny_config)
    assert result["epochs"] == 1
    assert {"recall@10", "ndcg@10", "recall@5", "ndcg@5", "mrr@10"} <= set(result["test_result"])
    # the plugin's trainer tests exactly as RecBole's own Trainer does, on the same checkpoint
    from recbole.trainer import Trainer

    from recbole_tiger.quick_start import load_data_and_model

    config, model, _, _, _, test_data = load_data_and_model(result["saved_model_file"])
    assert Trainer(config, model).evaluate(test_data, load_best_model=False) == result["test_result"]


def test_unknown_dataset_says_where_to_put_files(tiny_config, tmp_path):
    config = dict(tiny_config, dataset="no-such-dataset", data_path=str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="no-such-dataset"):
        run_recbole_tiger("SASRec", config_dict=config)


def test_command_line_unknown_model_is_one_line(tmp_path):
    cmd = [sys.executable, os.path.join(REPO_ROOT, "run_recbole_tiger.py"), "--model=NoSuchModel", "--dataset=ml-100k"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]  # no traceback
    assert "Unknown model 'NoSuchModel'" in out.stderr and "SASRec" in out.stderr


def test_command_line_entry_point(tiny_atomic, tmp_path):
    data_path, dataset = tiny_atomic
    cmd = [
        sys.executable, os.path.join(REPO_ROOT, "run_recbole_tiger.py"), "--model=SASRec", f"--dataset={dataset}",
        f"--data_path={data_path}", "--epochs=1", "--show_progress=False", f"--checkpoint_dir={tmp_path}/saved",
        "--user_inter_num_interval=[0,inf)", "--item_inter_num_interval=[0,inf)",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "test result" in log and "recall@10" in log


def test_sasrec_with_a_pairwise_loss_gets_negative_samples(tiny_config):
    """properties/model/SASRec.yaml turns sampling off for CE; switching to BPR used to fail
    with KeyError: 'neg_item_id' at the first batch."""
    result = run_recbole_tiger("SASRec", config_dict={**tiny_config, "loss_type": "BPR"})
    assert result["config"]["train_neg_sample_args"]["distribution"] == "uniform"
    # it trained on the pairwise loss (KeyError 'neg_item_id' before) to a finite loss, and was tested
    loss = result["valid_curve"][0]["train_loss"]
    assert result["epochs"] == 1 and loss is not None and 0.0 < loss < float("inf")
    assert set(result["test_result"]) >= {"recall@10", "ndcg@10"}


def test_pairwise_loss_with_sampling_explicitly_off_names_the_key(tiny_config):
    with pytest.raises(ValueError, match="train_neg_sample_args"):
        Config(model="SASRec", config_dict={**tiny_config, "loss_type": "BPR", "train_neg_sample_args": None})
