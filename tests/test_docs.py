"""The README and docs/: short, free of lab provenance, and the generated parts current.

``python -m benchmarks.make_docs`` writes docs/results/, docs/config-reference.md and the README's
headline table; these tests fail when a results csv or a property file changed without regenerating,
when a headline number is not in its csv, or when the README grows back into a lab notebook.
"""
import configparser
import csv
import glob
import os
import re
import sys

import pytest
import yaml

from conftest import REPO_ROOT

if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from benchmarks import make_docs  # noqa: E402

README = os.path.join(REPO_ROOT, "README.md")
TEST_COMMAND = "python -m pytest -q --durations=10 tests"  # .ci/run greps the README for it
FIRST_SCREEN = ('python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && python run_recbole_tiger.py '
                "--model=TIGER --dataset=ml-100k --config_files=properties/demo/tiger-ml-100k.yaml")

# commit-looking ids: 7-40 hex digits with at least one digit and one letter (so 1022976 and "defaced" pass)
COMMIT = re.compile(r"(?<![0-9A-Za-z])(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}(?![0-9A-Za-z])")
CHECKPOINT = re.compile(r"[A-Za-z0-9]+-[A-Z][a-z]{2}-\d{2}-\d{4}_\d{2}-\d{2}-\d{2}")  # saved/TIGER-Nov-24-2026_04-42-48-5613.pth
LAB_PATHS = ("../shared", "/work/")
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def user_docs():
    """README.md and the docs for users: everything under docs/ but the lab notes."""
    return [README] + sorted(glob.glob(os.path.join(REPO_ROOT, "docs", "*.md"))
                             + glob.glob(os.path.join(REPO_ROOT, "docs", "results", "*.md")))


def markdown_tables(lines):
    """[(line index of the header, [[cell, ...] per body row])] of the markdown tables in ``lines``."""
    tables, i = [], 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.fullmatch(r"\|(\s*:?-{3,}:?\s*\|)+", lines[i + 1].strip()):
            rows, j = [], i + 2
            while j < len(lines) and lines[j].startswith("|"):
                rows.append([c.strip() for c in re.split(r"(?<!\\)\|", lines[j].strip())[1:-1]])
                j += 1
            tables.append((i, rows))
            i = j
        else:
            i += 1
    return tables


# ---------------------------------------------------------------------------------------------- generated


def test_generated_docs_are_what_the_generator_makes_now(tmp_path):
    assert make_docs.main(["--out", str(tmp_path)]) == 0
    generated = sorted(os.path.relpath(p, tmp_path) for p in glob.glob(str(tmp_path / "**" / "*.md"), recursive=True))
    assert "docs/config-reference.md" in generated and "docs/results/README.md" in generated and "README.md" in generated
    stale = [p for p in generated if read(tmp_path / p) != read(os.path.join(REPO_ROOT, p))]
    assert not stale, f"out of date (run `python -m benchmarks.make_docs`): {stale}"
    on_disk = sorted(os.path.relpath(p, REPO_ROOT) for p in glob.glob(os.path.join(REPO_ROOT, "docs", "results", "*.md")))
    assert on_disk == [p for p in generated if p.startswith("docs/results/")], "a results page without its csv"


def test_every_results_csv_has_a_page_with_its_rows_and_plots():
    for path in glob.glob(os.path.join(REPO_ROOT, "results", "*.csv")):
        name = os.path.basename(path)[: -len(".csv")]
        page = read(os.path.join(REPO_ROOT, "docs", "results", name + ".md"))
        with open(path, newline="", encoding="utf-8") as f:
            n_rows = sum(1 for _ in csv.reader(f)) - 1
        (_, rows), = markdown_tables(page.splitlines())
        assert len(rows) == n_rows, name
        assert f"(../../results/{name}.csv)" in page
        if os.path.isfile(os.path.join(REPO_ROOT, "results", name + ".png")):
            assert f"(../../results/{name}.png)" in page
    beauty = read(os.path.join(REPO_ROOT, "docs", "results", "amazon-beauty.md"))
    assert "amazon-beauty-diagnosis.png" not in beauty  # the diagnosis's plot, not the benchmark's


def test_config_reference_has_every_key_with_its_default():
    reference = read(os.path.join(REPO_ROOT, "docs", "config-reference.md"))
    sections = re.split(r"^## ", reference, flags=re.M)[1:]
    files = {re.match(r"\[`([^`]+)`\]", s).group(1): s for s in sections}
    for pattern in make_docs.PROPERTY_GLOBS:
        for path in glob.glob(os.path.join(REPO_ROOT, "recbole_tiger", "properties", pattern)):
            relpath = "properties/" + os.path.relpath(path, os.path.join(REPO_ROOT, "recbole_tiger", "properties"))
            values = yaml.safe_load(read(path))
            section = files[relpath]
            for key, value in values.items():
                assert f"| `{key}` | `{make_docs.md_cell(make_docs.format_yaml_value(value))}` |" in section, (relpath, key)


def test_yaml_comments_are_end_of_line_plus_indented_continuations():
    text = ("# header of the file\n"
            "# second header line\n"
            "a: 1              # the comment of a\n"
            "                  # continued below it\n"
            "b: \"x # not a comment\"   # b's\n"
            "\n"
            "# Section\n"
            "c:\n"
            "  inter: [u, i]   # nested\n"
            "d: ~\n"
            "# after d, at column 0: a new text block, not d's comment\n"
            "e: True\n")
    entries = make_docs.parse_yaml_comments(text)
    assert entries == [
        ("text", [" header of the file", " second header line"]),
        ("key", "a", ["the comment of a", "continued below it"]),
        ("key", "b", ["b's"]),
        ("text", [" Section"]),
        ("key", "c", ["nested"]),
        ("key", "d", []),
        ("text", [" after d, at column 0: a new text block, not d's comment"]),
        ("key", "e", []),
    ]
    section = "\n".join(make_docs.config_section("properties/x.yaml", text))
    assert "| `b` | `\"x # not a comment\"` | b's |" in section
    assert "| `c` | `{inter: [u, i]}` | nested |" in section
    assert "| `d` | `~` |  |" in section and "| `e` | `True` |  |" in section


def test_results_cells_lose_machine_paths_and_commits_but_keep_the_rest():
    clean = make_docs.clean_cell
    assert clean("--data_path=../shared/data/atomic --checkpoint_dir=/work/main/saved --dropout_prob=0.1") == "--dropout_prob=0.1"
    assert clean("/work/main/recbole_tiger/properties/model/TIGER-cpu.yaml") == "properties/model/TIGER-cpu.yaml"
    assert clean("2026-11-24 06:44 UTC at c4d33ce+dirty") == "2026-11-24 06:44 UTC"
    assert clean("a | b") == "a \\| b" and clean("<7 / <24") == "&lt;7 / &lt;24"
    assert clean("0.9554687738418579") == "0.9555" and clean("0.0364") == "0.0364"


# ---------------------------------------------------------------------------------------------- README


def test_readme_is_a_users_readme():
    text = read(README)
    assert len(text.splitlines()) <= 200
    assert TEST_COMMAND in text and FIRST_SCREEN in text
    assert make_docs.HEADLINE_BEGIN in text and make_docs.HEADLINE_END in text
    for needle in ("TIGER trails SASRec", "from recbole_tiger.quick_start import run_recbole_tiger", "@inproceedings{",
                   "--data_path=<folder with prepared atomic files>", "docs/config-reference.md"):
        assert needle in text, needle


@pytest.mark.parametrize("path", user_docs(), ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_user_docs_carry_no_lab_provenance(path):
    text = read(path)
    assert not COMMIT.findall(text), "commit ids belong in the csv and the lab notes"
    assert not CHECKPOINT.findall(text), "checkpoint names belong in the csv and the lab notes"
    assert not [p for p in LAB_PATHS if p in text], "lab paths belong in the lab notes"


def test_the_provenance_patterns_catch_what_the_old_readme_had():
    old = ("| SASRec | 0.0420 | 875,904 | 006ec1d |\n`python -m x --model_file=saved/TIGER-Nov-24-2026_04-42-48-5613.pth`\n"
           "--data_path=../shared/data/atomic")
    assert COMMIT.findall(old) == ["006ec1d"]
    assert CHECKPOINT.findall(old) == ["TIGER-Nov-24-2026_04-42-48"]
    assert "../shared" in old


def headline_tables():
    """{csv name: [rows of cells]} of the README's headline block; each table follows a link to its
    docs/results page."""
    text = read(README)
    block = text[text.index(make_docs.HEADLINE_BEGIN): text.index(make_docs.HEADLINE_END)].splitlines()
    tables = {}
    for start, rows in markdown_tables(block):
        links = [m for line in block[:start] for m in re.findall(r"\(docs/results/([\w.-]+)\.md\)", line)]
        assert links, "a headline table without a link to its results page"
        tables[links[-1]] = rows
    return tables


def _matches(shown, value):
    """Does the README's ``shown`` number equal the csv cell ``value`` to the digits shown?"""
    try:
        number = float(value)
    except ValueError:
        return False
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return abs(float(shown.replace(",", "")) - number) <= 0.5 * 10 ** -decimals + 1e-12


def test_every_headline_number_is_in_its_results_csv():
    tables = headline_tables()
    assert "amazon-beauty" in tables and len(tables["amazon-beauty"]) == len(make_docs.HEADLINES[0][2])
    for name, rows in tables.items():
        with open(os.path.join(REPO_ROOT, "results", name + ".csv"), newline="", encoding="utf-8") as f:
            csv_rows = list(csv.DictReader(f))
        for cells in rows:
            numbers = [n for cell in cells for n in NUMBER.findall(cell)]
            assert numbers, cells
            assert any(all(any(_matches(n, v) for v in row.values()) for n in numbers) for row in csv_rows), \
                f"{cells}: not all of these numbers are in one row of results/{name}.csv"


def test_a_hand_typed_headline_number_is_caught():
    with open(os.path.join(REPO_ROOT, "results", "amazon-beauty.csv"), newline="", encoding="utf-8") as f:
        csv_rows = list(csv.DictReader(f))
    assert any(all(any(_matches(n, v) for v in r.values()) for n in ["0.0420", "875,904"]) for r in csv_rows)
    assert not any(all(any(_matches(n, v) for v in r.values()) for n in ["0.0421", "875,904"]) for r in csv_rows)


def test_readme_settings_table_matches_the_presets():
    text = read(README).splitlines()
    start = text.index("## Main TIGER settings")
    (_, rows), = markdown_tables(text[start: start + 40])[:1]
    paper = yaml.safe_load(read(os.path.join(REPO_ROOT, "recbole_tiger", "properties", "model", "TIGER.yaml")))
    cpu = yaml.safe_load(read(os.path.join(REPO_ROOT, "recbole_tiger", "properties", "model", "TIGER-cpu.yaml")))
    assert len(rows) >= 10
    for key_cell, paper_cell, cpu_cell, _ in rows:
        key = key_cell.strip("`")
        assert paper_cell == f"`{make_docs.format_yaml_value(paper[key])}`", key
        assert cpu_cell == ("—" if key not in cpu else f"`{make_docs.format_yaml_value(cpu[key])}`"), key


def test_readme_gpu_install_lists_every_requirement_but_torch():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO_ROOT, "setup.cfg"))
    requirements = [r.strip() for r in parser["options"]["install_requires"].splitlines() if r.strip()]
    text = read(README)
    gpu = text[text.index("--no-deps"):]
    gpu = gpu[: gpu.index("```")]
    for requirement in requirements:
        if not requirement.startswith("torch"):
            assert requirement in gpu, f"the README's GPU install misses {requirement}"


def test_relative_links_resolve():
    pages = user_docs() + glob.glob(os.path.join(REPO_ROOT, "docs", "lab-notes", "*.md"))
    broken = []
    for page in pages:
        for target in LINK.findall(read(page)):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(page), target.split("#")[0]))
            if not os.path.exists(path):
                broken.append(f"{os.path.relpath(page, REPO_ROOT)}: {target}")
    assert not broken, broken


def test_converged_table_reads_both_protocols_of_one_run_and_the_published_numbers(tmp_path):
    header = ["model", "preset", "variant", "seed", "protocol", "mode", "checkpoint", "epochs", "pieces", "stopped_by",
              "budget_min", "train_wall_s", "valid_ndcg@10", "test_recall@10", "test_ndcg@10"]
    rows = [["SASRec", "", "", "2020", "repeatable", "budget", "a.pth", "46", "1", "budget", "60", "3600", "0.05",
             "0.08", "0.0411"],
            ["SASRec", "", "", "2020", "repeatable", make_docs.CONVERGE_MODE, "b.pth", "51", "2", "patience", "600",
             "7200", "0.0528", "0.0831", "0.0420"],
            ["SASRec", "", "", "2020", "exclude_history", make_docs.CONVERGE_MODE, "b.pth", "51", "2", "patience", "600",
             "7200", "0.0528", "0.0909", "0.0560"],
            ["SASRec", "", "", "2020", "exclude_history", make_docs.CONVERGE_MODE, "other.pth", "9", "1", "patience",
             "600", "60", "0.01", "0.01", "0.0111"],
            ["BERT4Rec", "", "", "2020", "repeatable", make_docs.CONVERGE_MODE, "c.pth", "20", "1", "budget", "150",
             "9000", "0.03", "0.05", "0.0250"]]
    with open(tmp_path / "shop.csv", "w", newline="") as f:
        csv.writer(f).writerows([header] + rows)
    published = tmp_path / "published.csv"
    published.write_text("dataset,model,label,source,protocol,test_recall@5,test_ndcg@5,test_recall@10,test_ndcg@10\n"
                         "shop,TIGER,paper,the paper,unknown,,,0.0712,0.0432\n"
                         "shop,SASRec,bench,a benchmark,believed to exclude seen items,,,0.0970,0.0580\n"
                         "other,TIGER,paper,the paper,unknown,,,0.5,0.5\n")
    selectors = (("SASRec", {"model": "SASRec", "mode": make_docs.CONVERGE_MODE}),
                 ("BERT4Rec", {"model": "BERT4Rec", "mode": make_docs.CONVERGE_MODE}))
    lines = make_docs.converged_block(str(tmp_path), "", str(published), (("shop", "Shop", selectors),))
    table = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| ")][2:]
    assert table[0] == ["SASRec", "51", "2", "patience", "2.0", "0.0528", "0.0831", "**0.0420**", "0.0560"]
    assert table[2][-3:] == ["0.0712", "0.0432", "—"] and "protocol unknown" in table[2][0]
    assert table[3][-3:] == ["0.0970", "—", "0.0580"]
    assert table[1][:4] == ["BERT4Rec", "20", "1", "time cap (2.5 h)"]
    assert make_docs.stopped_cell({"stopped_by": "budget", "budget_min": "100.0"}) == "time cap (100 min)"
    assert len(table) == 4 and not any(line.startswith("Not converged yet") for line in lines)
