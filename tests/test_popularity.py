"""The popularity breakdown: its NDCG@10 equals RecBole's, its buckets partition the users."""
import csv

import pytest

from benchmarks.popularity import main
from recbole_tiger.quick_start import run_recbole_tiger


def test_popularity_breakdown_matches_recbole(tiny_config, tmp_path):
    result = run_recbole_tiger("SASRec", config_dict={**tiny_config, "epochs": 2, "hidden_size": 16,
                                                      "inner_size": 32, "n_layers": 1})
    main([result["saved_model_file"], f"--results_dir={tmp_path}"])
    rows = {r["split"]: r for r in csv.DictReader(open(tmp_path / "tiny-popularity.csv"))}
    assert set(rows) == {"valid", "test"}
    assert float(rows["test"]["ndcg@10"]) == pytest.approx(result["test_result"]["ndcg@10"], abs=1e-4)
    assert float(rows["valid"]["ndcg@10"]) == pytest.approx(result["best_valid_result"]["ndcg@10"], abs=1e-4)
    for row in rows.values():
        assert 0 <= float(row["tail_share"]) + float(row["head_share"]) <= 1


def test_inference_sweep_tests_only_the_value_chosen_on_valid(tiny_config, tmp_path):
    from benchmarks.inference_sweep import main as sweep

    tiny = {"d_model": 16, "n_encoder_layers": 1, "n_decoder_layers": 1, "n_heads": 2, "d_head": 8, "d_ff": 32,
            "sid_quantizer": "rqkmeans", "sid_codebook_size": 8, "beam_size": 10, "beam_check_users": 0}
    result = run_recbole_tiger("TIGER", config_dict={**tiny_config, **tiny, "epochs": 2})
    sweep([f"--model_file={result['saved_model_file']}", "--key=popularity_penalty", "--values=0,1.0",
           f"--results_dir={tmp_path}"])
    rows = {r["value"]: r for r in csv.DictReader(open(tmp_path / "tiny-inference-sweep.csv"))}
    assert set(rows) == {"0", "1.0"}
    chosen = [r for r in rows.values() if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["test_ndcg@10"] != ""
    assert all(r["test_ndcg@10"] == "" for r in rows.values() if not r["chosen"])
    assert float(rows["0"]["valid_ndcg@10"]) == pytest.approx(result["best_valid_result"]["ndcg@10"], abs=1e-4)
    # the breakdown of that checkpoint under a ranking setting: its own rows, the same valid NDCG@10
    main([result["saved_model_file"], f"--results_dir={tmp_path}", "--ranking=popularity_penalty=1.0"])
    main([result["saved_model_file"], f"--results_dir={tmp_path}"])
    valid = {r["model"]: r for r in csv.DictReader(open(tmp_path / "tiny-popularity.csv")) if r["split"] == "valid"}
    assert set(valid) == {"TIGER", "TIGER, popularity_penalty=1.0"}
    assert float(valid["TIGER, popularity_penalty=1.0"]["ndcg@10"]) == pytest.approx(
        float(rows["1.0"]["valid_ndcg@10"]), abs=1e-4)
