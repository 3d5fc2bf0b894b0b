"""A non-editable install must work: the property files ship inside the package."""
import os
import shutil
import subprocess
import sys
import zipfile

from conftest import REPO_ROOT

SHIPPED = ["overall.yaml", "model/TIGER.yaml", "model/TIGER-cpu.yaml", "model/SASRec.yaml", "dataset/amazon-toys.yaml",
           "demo/tiger-ml-100k.yaml", "dataset/amazon-beauty.yaml", "hyper/TIGER.hyper"]


def test_wheel_ships_the_property_files_and_config_finds_them_outside_the_source_tree(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO_ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "saved", "runs", "results", "log*", "__pycache__", "*.egg-info", "build"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True)
    (wheel,) = (tmp_path / "dist").glob("recbole_tiger-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"recbole_tiger/properties/{f}" for f in SHIPPED} <= names
    # the product's side-by-side benchmark ships; the lab (top-level benchmarks/) does not
    assert "recbole_tiger/benchmark/side_by_side.py" in names
    assert not [n for n in names if n.startswith("benchmarks/")]

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what pip install puts in site-packages
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # the README's `--config_files=properties/...` paths work there too (from the package)
    probe = ("from recbole_tiger.config import Config, PROPERTIES_DIR; "
             "c = Config(model='TIGER', dataset='ml-100k', config_file_list=['properties/model/TIGER-cpu.yaml']); "
             "print(PROPERTIES_DIR, c['encoder_tokens'], c['MAX_ITEM_LIST_LENGTH'])")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    properties_dir, encoder_tokens, history = out.stdout.split()[-3:]
    assert properties_dir.startswith(str(site)) and encoder_tokens == "item" and history == "20"
