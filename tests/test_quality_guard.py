"""Regression guard for what TIGER learns: on a catalogue whose item text spells out the
taxonomy that drives the sequences (recbole_tiger.data.synthetic), the shipped CPU preset must
beat popularity by a wide margin and come close to SASRec in a short run.

Thresholds come from measured runs at exactly these settings (1,000 users, 12 epochs, one
thread; `python -m benchmarks.taxonomy_check`, results/taxonomy-check.md):
test NDCG@10 of the preset 0.5427 (0.5298 without its co-purchase block), SASRec 0.5118, Pop
0.0183 (taxonomy ranker 0.6202), i.e. TIGER = 1.06 x SASRec and 30 x Pop. The recipe this
preset replaced (hashed user token, causal encoder, dropout 0.1, RQ-VAE IDs) measured 0.2991 =
0.58 x SASRec here, so 0.8 x SASRec catches a return to it with a margin either side.

The dense head (properties/model/TIGER-hybrid.yaml on the same preset, its text fusion weight chosen
on valid) measured 0.5624 against the preset's 0.5413 there (+0.021); with text fusion 0.5 fixed it
measured 0.531, which is why the preset chooses the weight on valid. It must stay ahead of plain
TIGER by at least 0.01.
"""
import os

from benchmarks.taxonomy_check import TIGER_SIDS, make_dataset, run_model, tiger_files
from recbole_tiger.config import PROPERTIES_DIR

N_USERS, EPOCHS = 1000, 12
MIN_TIMES_POP = 8.0
MIN_SHARE_OF_SASREC = 0.8
MIN_HYBRID_GAIN = 0.01
HYBRID = os.path.join(PROPERTIES_DIR, "model", "TIGER-hybrid.yaml")


def test_tiger_learns_what_the_item_text_gives_it(tmp_path):
    data_path, oracle = make_dataset(str(tmp_path / "atomic"), N_USERS)
    runs = {"Pop": ("Pop", (), None), "SASRec": ("SASRec", (), None),
            "TIGER": ("TIGER", tiger_files(), TIGER_SIDS), "hybrid": ("TIGER", tiger_files() + [HYBRID], TIGER_SIDS)}
    ndcg = {name: run_model(model, data_path, EPOCHS, files, overrides)["test_result"]["ndcg@10"]
            for name, (model, files, overrides) in runs.items()}
    print(f"taxonomy test NDCG@10: {ndcg}, taxonomy ranker {oracle:.4f}")
    assert ndcg["TIGER"] >= MIN_TIMES_POP * ndcg["Pop"], ndcg
    assert ndcg["TIGER"] >= MIN_SHARE_OF_SASREC * ndcg["SASRec"], ndcg
    assert ndcg["hybrid"] >= ndcg["TIGER"] + MIN_HYBRID_GAIN, ndcg   # the dense head adds what it measured to add
    for name in ("TIGER", "hybrid"):  # nothing beats knowing the taxonomy (beyond noise)
        assert ndcg[name] <= oracle + 0.05, (ndcg, oracle)
