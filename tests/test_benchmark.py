"""The side-by-side benchmark: results files, merging across invocations, one real run."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from recbole_tiger.benchmark.side_by_side import (KEY, main, markdown_table, merge_rows, parse_seeds,
                                               write_results)


def _row(model, seed, ndcg, budget=60):
    return {"model": model, "seed": seed, "budget_min": budget, "dataset": "d", "test_recall@5": 0.1,
            "test_recall@10": 0.2, "test_ndcg@5": 0.05, "test_ndcg@10": ndcg, "test_mrr@10": 0.04,
            "valid_recall@5": 0.1, "valid_recall@10": 0.2, "valid_ndcg@5": 0.05, "valid_ndcg@10": 0.06,
            "valid_mrr@10": 0.04, "epochs": 3, "stopped_by": "budget", "train_wall_s": 10.0, "eval_wall_s": 1.0,
            "peak_mem_mb": 500.0, "n_params": 1000, "loss_type": "CE", "hyperparameters": "learning_rate=0.001",
            "commit": "abc1234", "date": "2026-11-23 19:00 UTC", "machine": "2 cores (cpu), cpu", "config_files": ""}


def test_rows_merge_by_model_seed_and_budget():
    old = [_row("SASRec", 2020, 0.03), _row("BERT4Rec", 2020, 0.02)]
    merged = merge_rows(old, [_row("SASRec", 2020, 0.04), _row("TIGER", 2020, 0.05)], KEY)
    by_model = {r["model"]: r["test_ndcg@10"] for r in merged}
    assert by_model == {"SASRec": 0.04, "BERT4Rec": 0.02, "TIGER": 0.05}
    # a zero key (weight 0.0) is a value: the new row replaces the one read back from the csv as "0.0"
    read_back = [{"system": "embedding search", "weight": "0.0", "p": "0.59"}, {"system": "LM", "weight": "", "p": "0.7"}]
    merged = merge_rows(read_back, [{"system": "embedding search", "weight": 0.0, "p": 0.55},
                                    {"system": "LM", "weight": "", "p": 0.71}], ("system", "weight"))
    assert sorted((r["system"], r["p"]) for r in merged) == [("LM", 0.71), ("embedding search", 0.55)]


def test_markdown_keeps_reference_numbers_out_of_measured_rows():
    text = markdown_table([_row("SASRec", 2020, 0.03), _row("SASRec", 2021, 0.05)], "amazon-beauty")
    measured, reference = text.split("Reference only")
    assert "0.0400 ± 0.0141" in measured  # mean ± std over two seeds
    assert "0.0384" not in measured
    assert "0.0384" in reference and "different training setup" in reference
    toys = markdown_table([_row("SASRec", 2020, 0.03)], "amazon-toys").split("Reference only")[1]
    assert "0.0432" in toys and "0.0384" not in toys and "believed to exclude seen items" in toys


def test_reference_numbers_only_under_their_own_dataset():
    text = markdown_table([_row("SASRec", 2020, 0.03)], "ml-100k")
    assert "Reference only" not in text and "0.0384" not in text


def test_one_history_length_for_every_model_and_honest_loss_column(tiny_config, tmp_path):
    """A dataset without properties/dataset/<name>.yaml: RecBole's default (50) used to reach the
    baselines while TIGER used 20; and Pop's loss column said 'CE over semantic-ID tokens'."""
    from recbole_tiger.benchmark.side_by_side import default_history_length

    assert default_history_length("tiny") == 20  # no dataset file: TIGER's
    results = tmp_path / "results"
    common = [f"--dataset={tiny_config['dataset']}", "--budget=0.5", f"--results_dir={results}",
              f"--data_path={tiny_config['data_path']}", f"--checkpoint_dir={tiny_config['checkpoint_dir']}",
              "--epochs=1", "--state=WARNING", "--user_inter_num_interval=[0,inf)", "--item_inter_num_interval=[0,inf)"]
    main(common + ["--models=Pop,SASRec"])
    rows = {r["model"]: r for r in csv.DictReader(open(results / "tiny.csv"))}
    assert rows["SASRec"]["history_length"] == rows["Pop"]["history_length"] == "20"
    assert rows["Pop"]["loss_type"] == "none" and rows["SASRec"]["loss_type"] == "CE"
    assert "History length (MAX_ITEM_LIST_LENGTH) of the measured rows: 20." in open(results / "tiny.md").read()


def test_results_accumulate_across_invocations(tmp_path):
    curve = [{"epoch": 1, "fit_seconds": 5.0, "valid_score": 0.05, "ndcg@10": 0.05}]
    write_results(str(tmp_path), "d", [_row("SASRec", 2020, 0.03)], {"SASRec seed=2020": curve})
    write_results(str(tmp_path), "d", [_row("TIGER", 2020, 0.05)], {"TIGER seed=2020": curve})
    rows = list(csv.DictReader(open(tmp_path / "d.csv")))
    assert sorted(r["model"] for r in rows) == ["SASRec", "TIGER"]
    assert os.path.getsize(tmp_path / "d.png") > 0
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_benchmark_command_runs_a_model_and_writes_three_files(tiny_config, tmp_path):
    results = tmp_path / "results"
    main([f"--dataset={tiny_config['dataset']}", "--models=SASRec", "--budget=0.5",
          f"--results_dir={results}", f"--data_path={tiny_config['data_path']}",
          f"--checkpoint_dir={tiny_config['checkpoint_dir']}", "--epochs=2", "--state=WARNING",
          "--MAX_ITEM_LIST_LENGTH=10", "--user_inter_num_interval=[0,inf)", "--item_inter_num_interval=[0,inf)"])
    for ext in ("md", "csv", "png"):
        assert (results / f"tiny.{ext}").is_file()
    row = next(csv.DictReader(open(results / "tiny.csv")))
    assert row["model"] == "SASRec" and int(row["epochs"]) == 2 and float(row["peak_mem_mb"]) > 0
    assert row["commit"] and row["machine"].startswith(f"{os.cpu_count()} cores")


def test_tiger_preset_is_cpu_without_cuda_and_only_for_tiger(monkeypatch):
    import torch

    from recbole_tiger.benchmark.side_by_side import resolve_preset

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    preset, files = resolve_preset("TIGER", "auto")
    assert preset == "cpu" and files[0].endswith(os.path.join("properties", "model", "TIGER-cpu.yaml"))
    assert os.path.isfile(files[0])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_preset("TIGER", "auto") == ("paper", [])
    assert resolve_preset("SASRec", "cpu") == ("", [])
    with pytest.raises(SystemExit, match="tiger_preset"):
        resolve_preset("TIGER", "fast")


def test_throughput_tool_counts_targets_per_variant(tiny_config, tmp_path):
    from benchmarks.throughput import main as throughput

    results = tmp_path / "tp"
    throughput(["prefix:encoder_tokens=item", "sequence:encoder_tokens=item,train_targets=all",
                "--dataset=tiny", "--steps=2", "--warmup=0", f"--results_dir={results}",
                f"--data_path={tiny_config['data_path']}", f"--checkpoint_dir={tiny_config['checkpoint_dir']}",
                "--MAX_ITEM_LIST_LENGTH=10", "--user_inter_num_interval=[0,inf)", "--item_inter_num_interval=[0,inf)",
                "--train_batch_size=64", "--state=WARNING", "--sid_quantizer=rqkmeans", "--sid_n_levels=2",
                "--sid_codebook_size=4", "--d_model=16", "--n_heads=2", "--d_head=8", "--d_ff=32"])
    rows = {r["variant"]: r for r in csv.DictReader(open(results / "tiny-throughput.csv"))}
    assert set(rows) == {"prefix", "sequence"}
    # one target per RecBole row in prefix mode; in sequence mode the targets of the users
    # whose last row is in the batch
    assert float(rows["prefix"]["targets_per_step"]) == 64
    assert float(rows["sequence"]["targets_per_step"]) > 0 and float(rows["sequence"]["targets_per_s"]) > 0
    assert (results / "tiny-throughput.md").read_text().count("| sequence |") == 1


def test_merge_from_other_results_dirs(tmp_path):
    """Rows made in other sessions (one model per invocation) merge into one table; a TIGER
    preset is part of the row's identity, so cpu and paper rows sit side by side."""
    curve = [{"epoch": 1, "fit_seconds": 5.0, "valid_score": 0.05, "ndcg@10": 0.05}]
    write_results(str(tmp_path / "a"), "d", [_row("BERT4Rec", 2020, 0.02)], {"BERT4Rec seed=2020": curve})
    write_results(str(tmp_path / "b"), "d", [dict(_row("TIGER", 2020, 0.03), preset="cpu"),
                                             dict(_row("TIGER", 2020, 0.01), preset="paper")],
                  {"TIGER (cpu) seed=2020": curve})
    main(["--dataset=d", f"--results_dir={tmp_path / 'all'}", f"--merge_from={tmp_path / 'a'},{tmp_path / 'b'}"])
    rows = list(csv.DictReader(open(tmp_path / "all" / "d.csv")))
    assert sorted((r["model"], r.get("preset") or "") for r in rows) == [
        ("BERT4Rec", ""), ("TIGER", "cpu"), ("TIGER", "paper")]
    table = (tmp_path / "all" / "d.md").read_text()
    assert "| TIGER (cpu preset) |" in table and "| TIGER (paper preset) |" in table
    assert set(json.load(open(tmp_path / "all" / "d.curves.json"))) == {"BERT4Rec seed=2020", "TIGER (cpu) seed=2020"}
    with pytest.raises(SystemExit, match="does not exist"):
        main(["--dataset=d", f"--results_dir={tmp_path / 'all'}", f"--merge_from={tmp_path / 'missing'}"])


def test_both_protocols_from_one_run_and_a_retest_of_its_checkpoint(tiny_config, tmp_path):
    """--protocols tests one trained checkpoint under both protocols (one row each, same valid);
    --retest adds protocol rows for a run already in the table, from its checkpoint."""
    results = tmp_path / "results"
    common = [f"--dataset={tiny_config['dataset']}", "--models=SASRec", "--budget=0.5", f"--results_dir={results}",
              f"--data_path={tiny_config['data_path']}", f"--checkpoint_dir={tiny_config['checkpoint_dir']}",
              "--epochs=2", "--state=WARNING", "--MAX_ITEM_LIST_LENGTH=10", "--user_inter_num_interval=[0,inf)",
              "--item_inter_num_interval=[0,inf)"]
    main(common + ["--protocols=repeatable,exclude_history"])
    rows = {r["protocol"]: r for r in csv.DictReader(open(results / "tiny.csv"))}
    assert set(rows) == {"repeatable", "exclude_history"}
    rep, exc = rows["repeatable"], rows["exclude_history"]
    assert rep["valid_ndcg@10"] == exc["valid_ndcg@10"] and rep["checkpoint"] == exc["checkpoint"]
    assert exc["selected_under"] == "repeatable"
    # masking wasted slots can only move the target up: never a lower recall
    assert float(exc["test_recall@10"]) >= float(rep["test_recall@10"])
    assert "| exclude_history |" in (results / "tiny.md").read_text()

    # retest: drop the exclude_history row, recreate it from the checkpoint alone
    kept = [rep]
    with open(results / "tiny.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rep))
        writer.writeheader()
        writer.writerows(kept)
    main(common + ["--protocols=exclude_history", f"--retest={rep['checkpoint']}"])
    again = {r["protocol"]: r for r in csv.DictReader(open(results / "tiny.csv"))}
    assert again["exclude_history"]["test_ndcg@10"] == exc["test_ndcg@10"] and again["exclude_history"]["retested"]
    with pytest.raises(SystemExit, match="no row"):
        main(common + [f"--retest={tmp_path / 'other.pth'}"])
    with pytest.raises(SystemExit, match="--protocols"):
        main(common + ["--protocols=masked"])
    with pytest.raises(SystemExit, match="--variant"):
        main(common + [f"--retest={rep['checkpoint']}", "--ranking=beam_size=20"])
    with pytest.raises(SystemExit, match="no ranking settings"):
        main(common + [f"--retest={rep['checkpoint']}", "--ranking=beam_size=20", "--variant=b20"])


def test_retest_with_other_ranking_settings(tiny_config, tmp_path):
    """--retest --ranking: a trained TIGER's rows under other ranking settings, valid measured
    with them, labelled by --variant, the trained rows kept."""
    results = tmp_path / "results"
    common = [f"--dataset={tiny_config['dataset']}", "--models=TIGER", "--budget=0.5", f"--results_dir={results}",
              f"--data_path={tiny_config['data_path']}", f"--checkpoint_dir={tiny_config['checkpoint_dir']}",
              "--epochs=1", "--state=WARNING", "--MAX_ITEM_LIST_LENGTH=10", "--user_inter_num_interval=[0,inf)",
              "--item_inter_num_interval=[0,inf)", "--tiger_preset=paper", "--dense_head=True", "--d_model=32",
              "--n_heads=2", "--d_head=16", "--d_ff=64", "--sid_n_levels=2", "--sid_codebook_size=4",
              "--sid_quantizer=rqkmeans", "--beam_size=10", "--beam_check_users=0"]
    main(common)
    trained = list(csv.DictReader(open(results / "tiny.csv")))
    main(common + [f"--retest={trained[0]['checkpoint']}", "--ranking=text_fusion_weight=2.0,fusion_weight=0",
                   "--variant=text2"])
    rows = {r["variant"]: r for r in csv.DictReader(open(results / "tiny.csv"))}
    assert set(rows) == {"", "text2"}
    assert rows["text2"]["overrides"].endswith("--text_fusion_weight=2.0 --fusion_weight=0")
    assert rows["text2"]["valid_ndcg@10"] != rows[""]["valid_ndcg@10"]
    assert {k: v for k, v in rows[""].items() if k != "retested"} == trained[0]      # the trained row kept
    with pytest.raises(SystemExit, match="text_nn_decay"):
        main(common + [f"--retest={trained[0]['checkpoint']}", "--ranking=text_nn_decay=2", "--variant=x"])


def test_commit_stamp_ignores_results_and_docs(tmp_path, monkeypatch):
    """Rows are stamped "+dirty" when the code differs from the commit, not when a results table
    or the README is being rewritten (as it is while runs go on)."""
    import subprocess

    from recbole_tiger.benchmark import results_table

    repo = tmp_path / "repo"
    (repo / "results").mkdir(parents=True)
    for name in ("code.py", "results/t.csv", "README.md"):
        (repo / name).write_text("a\n")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(git + ["add", "."], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-qm", "x"], cwd=repo, check=True)
    monkeypatch.setattr(results_table, "REPO_ROOT", str(repo))
    (repo / "results" / "t.csv").write_text("b\n")
    (repo / "README.md").write_text("b\n")
    assert not results_table.git_commit().endswith("+dirty")
    (repo / "code.py").write_text("b\n")
    assert results_table.git_commit().endswith("+dirty")


def test_variant_values_are_yaml_and_lists_keep_their_commas():
    from benchmarks.variants import parse_variant
    name, overrides, files = parse_variant(
        "title-brand:sid_text_fields=[title,brand],dropout_prob=0.1,config_files=a.yaml+b.yaml")
    assert name == "title-brand"
    assert overrides == {"sid_text_fields": ["title", "brand"], "dropout_prob": 0.1}
    assert files == ["a.yaml", "b.yaml"]
    with pytest.raises(SystemExit, match="unclosed"):
        parse_variant("x:sid_text_fields=[title,brand")
    with pytest.raises(SystemExit, match="not key=value"):
        parse_variant("x:dropout_prob")


def test_terminating_the_benchmark_stops_its_child(tmp_path):
    """`kill <benchmark pid>` must not leave the child process training on (it did: an orphaned
    Beauty run held a core for 14 minutes beside two others)."""
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    parent = subprocess.Popen([sys.executable, "-c",
                               "import sys; from recbole_tiger.benchmark.child_process import run_child_process; "
                               f"run_child_process([sys.executable, '-c', {child!r}])"])
    deadline = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    child_pid = int(pid_file.read_text())
    parent.terminate()
    assert parent.wait(timeout=30) == 128 + signal.SIGTERM
    with pytest.raises(ProcessLookupError):  # killed and reaped by the parent, not orphaned
        os.kill(child_pid, 0)


def test_terminating_the_diagnosis_sweep_stops_every_child(tmp_path):
    """The one-factor sweep trains its variants from a thread pool (``--jobs=2``), where a signal
    handler cannot be installed per child: `kill <sweep pid>` used to leave both variants training."""
    pid_file = tmp_path / "children.pids"
    fake_python = tmp_path / "fake_python"  # stands in for the variant's training process
    fake_python.write_text(f"#!/bin/sh\necho $$ >> {pid_file}\nexec sleep 120\n")
    fake_python.chmod(0o755)
    parent = subprocess.Popen([sys.executable, "-c",
                               f"import sys; sys.executable = {str(fake_python)!r}; "
                               "from benchmarks.diagnosis import main; "
                               f"main(['a', 'b', '--dataset=d', '--jobs=2', '--results_dir={tmp_path}'])"])
    deadline = time.time() + 60
    while not (pid_file.exists() and len(pid_file.read_text().split()) == 2) and time.time() < deadline:
        time.sleep(0.1)
    child_pids = [int(p) for p in pid_file.read_text().split()]
    assert len(child_pids) == 2
    parent.terminate()
    assert parent.wait(timeout=30) == 128 + signal.SIGTERM
    for pid in child_pids:
        with pytest.raises(ProcessLookupError):  # killed and reaped by the sweep, not orphaned
            os.kill(pid, 0)


def test_seeds_a_count_a_list_or_one_explicit_seed():
    assert parse_seeds("3") == [2020, 2021, 2022]
    assert parse_seeds("2021,2023") == [2021, 2023]
    assert parse_seeds("2021,") == [2021]  # not 2021 seeds


def test_converge_mode_in_pieces_equals_one_uninterrupted_run(tiny_config, tmp_path):
    """--converge trains until valid stops improving; --piece makes it in several invocations of
    the same command, and the row is the one an uninterrupted run writes (SASRec validates every
    epoch, so the pauses add no validation)."""
    common = [f"--dataset={tiny_config['dataset']}", "--models=SASRec", "--budget=5", "--converge", "--patience=2",
              f"--data_path={tiny_config['data_path']}", f"--checkpoint_dir={tiny_config['checkpoint_dir']}",
              "--epochs=6", "--state=WARNING", "--MAX_ITEM_LIST_LENGTH=10", "--user_inter_num_interval=[0,inf)",
              "--item_inter_num_interval=[0,inf)", "--hidden_size=16", "--inner_size=32", "--n_layers=1"]
    main(common + [f"--results_dir={tmp_path / 'whole'}"])
    whole = next(csv.DictReader(open(tmp_path / "whole" / "tiny.csv")))
    assert whole["mode"] == "converge (patience 2)" and whole["pieces"] == "1"

    pieces = tmp_path / "pieces"
    progress = pieces / "tiny.progress.json"
    for invocation in range(1, 10):
        main(common + [f"--results_dir={pieces}", "--piece=0.00001"])   # pauses after every epoch
        if (pieces / "tiny.csv").is_file():
            break
        assert len(json.load(open(progress))["SASRec, converge (patience 2) seed=2020 budget=5 protocol=repeatable"]
                   ["pieces"]) == invocation
    row = next(csv.DictReader(open(pieces / "tiny.csv")))
    assert int(row["pieces"]) == invocation > 1 and json.load(open(progress)) == {}
    for column in ("epochs", "valid_ndcg@10", "test_ndcg@10", "test_recall@10", "stopped_by"):
        assert row[column] == whole[column], column
