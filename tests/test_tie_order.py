"""Leave-one-out targets on the real Beauty data follow the .inter file's row order.

43.5% of Beauty users have the same (day-level) timestamp on their last two items, so
only a *stable* time sort reproduces the standard test targets.
"""
import os

import pandas as pd
import pytest

from recbole_tiger.config import Config
from recbole_tiger.quick_start import prepare_data

from conftest import SHARED_ATOMIC

BEAUTY = os.path.join(SHARED_ATOMIC, "amazon-beauty", "amazon-beauty.inter")


@pytest.mark.skipif(not os.path.isfile(BEAUTY), reason="../shared/data is not beside the checkout")
def test_beauty_targets_are_the_last_rows_of_each_user(tmp_path):
    config = Config(
        model="SASRec",
        dataset="amazon-beauty",
        config_dict={"data_path": SHARED_ATOMIC, "checkpoint_dir": str(tmp_path), "state": "WARNING"},
    )
    _, _, valid_data, test_data = prepare_data(config)
    rows = pd.read_csv(BEAUTY, sep="\t", dtype=str)
    rows.columns = [c.split(":")[0] for c in rows.columns]
    by_user = rows.groupby("user_id", sort=False)
    expected_test = by_user.nth(-1).set_index("user_id")["item_id"]  # last row in file order
    expected_valid = by_user.nth(-2).set_index("user_id")["item_id"]

    def targets(loader):
        ds = loader._dataset
        users = ds.id2token(ds.uid_field, ds.inter_feat[ds.uid_field].numpy())
        items = ds.id2token(ds.iid_field, ds.inter_feat[ds.iid_field].numpy())
        return pd.Series(items, index=users)

    test, valid = targets(test_data), targets(valid_data)
    assert len(test) == 22363 and len(valid) == 22363
    ties = by_user["timestamp"].apply(lambda t: t.iloc[-1] == t.iloc[-2])
    assert ties.mean() > 0.4  # the data really has the ambiguity this test is about
    assert (test.sort_index() == expected_test.sort_index()).all()
    assert (valid.sort_index() == expected_valid.sort_index()).all()
