"""HyperTuning through the plugin's objective function."""
import os

import yaml

from recbole_tiger.hyper import run_hyper


def test_two_trial_exhaustive_search_writes_results_and_best_config(tiny_config, tmp_path):
    params = tmp_path / "space.hyper"
    params.write_text("learning_rate choice [0.01,0.001]\n")
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump(tiny_config))
    out = str(tmp_path / "hyper" / "SASRec.result")
    hp = run_hyper(str(params), model="SASRec", config_file_list=[str(fixed)], algo="exhaustive", output_file=out)
    assert len(hp.params2result) == 2  # both trials ran
    text = open(out).read()
    assert "learning_rate:0.01" in text and "learning_rate:0.001" in text and "ndcg@10" in text
    best = yaml.safe_load(open(out + ".best.yaml"))
    assert best["learning_rate"] in (0.01, 0.001)
    # nothing half-written is left beside the results (open_atomic's temporary files are
    # named .<name>.<random>.tmp in the same directory)
    leftovers = [f for f in os.listdir(os.path.dirname(out)) if f.endswith(".tmp")]
    assert leftovers == [], leftovers
