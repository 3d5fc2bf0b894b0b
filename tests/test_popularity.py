"""The popularity breakdown: its NDCG@10 equals RecBole's, its buckets partition the users."""
import csv

import pytest

from recbole_tiger.evaluation.popularity import main
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
