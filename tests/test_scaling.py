"""The scaling tool: rows for both parts, each measured in its own process."""
import csv

from benchmarks.scaling import main, random_semantic_ids


def test_scaling_tool_measures_decode_and_prestage(tmp_path):
    main(["--sizes=1500,3000", "--parts=decode,prestage", "--users=32", "--rqvae_max_items=1500",
          f"--results_dir={tmp_path}"])
    rows = list(csv.DictReader(open(tmp_path / "scaling.csv")))
    got = {(r["part"], r["n_items"], r["model"]) for r in rows}
    assert got == {("decode", n, m) for n in ("1500", "3000") for m in ("SASRec", "TIGER", "TIGER (top-K output)")} | {
        ("prestage", n, "rqkmeans") for n in ("1500", "3000")} | {("prestage", "1500", "rqvae")}
    decode = [r for r in rows if r["part"] == "decode"]
    assert all(int(r["users"]) == 32 and float(r["seconds_per_user"]) > 0 and float(r["peak_mem_mb"]) > 0
               for r in decode)
    assert all(float(r["trie_mb"]) > 0 for r in decode if r["model"].startswith("TIGER"))
    assert (tmp_path / "scaling.png").stat().st_size > 0 and "| decode | 3000 | TIGER |" in (tmp_path / "scaling.md").read_text()


def test_synthetic_ids_are_unique_and_shaped_like_an_artifact():
    sid = random_semantic_ids(5000, seed=0)
    sid.validate(5001)  # unique IDs, padding row, codes in range
    assert sid.codebook_sizes[:3] == [256, 256, 256] and sid.dedup
