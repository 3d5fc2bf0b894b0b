"""Regression guard for what TIGER learns: on a catalogue whose item text spells out the
taxonomy that drives the sequences (recbole_tiger.data.synthetic), the shipped CPU preset must
beat popularity by a wide margin and come close to SASRec in a short run.

Thresholds come from measured runs at exactly these settings (1,000 users, 12 epochs, one
thread; `python -m benchmarks.taxonomy_check`, results/taxonomy-check.md):
test NDCG@10 of the preset 0.5427 (0.5298 without its co-purchase block), SASRec 0.5118, Pop
0.0183 (taxonomy ranker 0.6202), i.e. TIGER = 1.06 x SASRec and 30 x Pop. The recipe this
preset replaced (hashed user token, causal encoder, dropout 0.1, RQ-VAE IDs) measured 0.2991 =
0.58 x SASRec here, so 0.8 x SASRec catches a return to it with a margin either side.
"""
from benchmarks.taxonomy_check import TIGER_SIDS, make_dataset, run_model, tiger_files

N_USERS, EPOCHS = 1000, 12
MIN_TIMES_POP = 8.0
MIN_SHARE_OF_SASREC = 0.8


def test_tiger_learns_what_the_item_text_gives_it(tmp_path):
    data_path, oracle = make_dataset(str(tmp_path / "atomic"), N_USERS)
    ndcg = {model: run_model(model, data_path, EPOCHS, tiger_files() if model == "TIGER" else (),
                             TIGER_SIDS if model == "TIGER" else None)["test_result"]["ndcg@10"]
            for model in ("Pop", "SASRec", "TIGER")}
    print(f"taxonomy test NDCG@10: {ndcg}, taxonomy ranker {oracle:.4f}")
    assert ndcg["TIGER"] >= MIN_TIMES_POP * ndcg["Pop"], ndcg
    assert ndcg["TIGER"] >= MIN_SHARE_OF_SASREC * ndcg["SASRec"], ndcg
    assert ndcg["TIGER"] <= oracle + 0.05, (ndcg, oracle)  # nothing beats knowing the taxonomy (beyond noise)
