"""Amazon Review 2014 raw files -> RecBole atomic files (recbole_tiger.data.amazon).

Every test writes its own small raw files in the published formats: reviews as JSON lines,
metadata as Python dict literals (the 2014 release) or JSON lines.
"""

import gzip
import io
import json
import logging
import os
import sys
import urllib.error
import urllib.request

import pytest

from recbole_tiger.data import amazon
from recbole_tiger.data.amazon import (
    AmazonDataError,
    category_to_dataset_name,
    dataset_name_to_category,
    ensure_dataset,
    flatten_categories,
    prepare_amazon,
)
from recbole_tiger.data.atomic_files import clean_field, dataset_not_found_message

DAY = 86_400
T0 = 1_390_000_000 - 1_390_000_000 % DAY


def _write(path, lines, gz=True):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    return path


def _review(user, asin, day, rating=5.0):
    return json.dumps({
        "reviewerID": user, "asin": asin, "reviewerName": "Ana", "helpful": [0, 0],
        "reviewText": "Great\tproduct", "overall": rating, "summary": "ok",
        "unixReviewTime": T0 + day * DAY, "reviewTime": "01 30, 2014",
    })


# Reviews in the raw file's order (it is sorted by asin, not by time): u1's two day-2 items
# appear as B2 before B1, so file order != the canonical (timestamp, asin) order.
REVIEWS = [
    _review("u1", "B2", 2, 4.0),
    _review("u1", "B1", 2, 5.0),
    _review("u2", "B1", 5, 3.0),
    _review("u1", "B3", 1, 1.0),
    _review("u2", "B2", 3, 2.0),
    _review("u2", "B3", 4, 3.0),
    _review("u3", "B4", 7),
    _review("u3", "B5", 7),
    _review("u3", "B1", 6),
]

META = [
    # line 1: Python dict literal with unicode, a double quote inside the title, a tab, a newline
    repr({
        "asin": "B1", "title": 'Crème Brûlée 12" Body\tButter', "brand": "L'Occitane",
        "price": 12.5, "description": "Rich.\nVery rich.",
        "categories": [["Beauty", "Skin Care", "Body"], ["Beauty", "Skin Care", "Creams"]],
        "related": {"also_bought": ["Z1", "Z2"]}, "salesRank": {"Beauty": 12},
    }),
    # line 2: not interacted, skipped
    repr({"asin": "Z1", "title": "not interacted", "categories": [["Beauty"]]}),
    # line 3: malformed (truncated) line of an interacted item
    "{'asin': 'B3', 'title': 'Mascara",
    # line 4: JSON line; title starts with a double quote (would switch on CSV quoting)
    json.dumps({"asin": "B2", "title": '"Salon" Shampoo\twith tab', "brand": None,
                "categories": [["Beauty", "Hair Care", "Shampoos"]]}),
    # line 5: garbage without an asin
    "this is not a dict",
    # line 6: Python 2 style unicode literal, only the top-level category
    "{'asin': 'B3', 'title': u'Caf\\xe9 Mascara', 'categories': [['Beauty']]}",
    # line 7: a list, not a dict
    "[1, 2, 3]",
]


@pytest.fixture
def raw_beauty(tmp_path):
    raw = tmp_path / "raw"
    _write(str(raw / "reviews_Beauty_5.json.gz"), REVIEWS)
    _write(str(raw / "meta_Beauty.json.gz"), META)
    return str(raw)


def _read_rows(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f]


def _files_under(root):
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files
    )


# --------------------------------------------------------------------------------- conversion


def test_inter_rows_in_timestamp_asin_order_users_by_first_appearance(raw_beauty, tmp_path):
    result = prepare_amazon("Beauty", str(tmp_path / "out"), raw_dir=raw_beauty)
    rows = _read_rows(tmp_path / "out" / "amazon-beauty" / "amazon-beauty.inter")
    assert rows[0] == ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    got = [(u, i, r, int(t)) for u, i, r, t in rows[1:]]
    assert got == [
        ("u1", "B3", "1.0", T0 + DAY),
        ("u1", "B1", "5.0", T0 + 2 * DAY),  # same day as B2: asin order, not file order
        ("u1", "B2", "4.0", T0 + 2 * DAY),
        ("u2", "B2", "2.0", T0 + 3 * DAY),
        ("u2", "B3", "3.0", T0 + 4 * DAY),
        ("u2", "B1", "3.0", T0 + 5 * DAY),
        ("u3", "B1", "5.0", T0 + 6 * DAY),
        ("u3", "B4", "5.0", T0 + 7 * DAY),
        ("u3", "B5", "5.0", T0 + 7 * DAY),
    ]
    assert (result.n_users, result.n_items, result.n_interactions) == (3, 5, 9)
    assert result.n_items_without_meta == 2


def test_item_file_fields_are_cleaned_and_flattened(raw_beauty, tmp_path):
    prepare_amazon("Beauty", str(tmp_path / "out"), raw_dir=raw_beauty)
    rows = _read_rows(tmp_path / "out" / "amazon-beauty" / "amazon-beauty.item")
    assert rows[0] == [
        "item_id:token", "title:token_seq", "brand:token", "categories:token_seq",
        "price:float", "description:token_seq",
    ]
    items = {row[0]: row[1:] for row in rows[1:]}
    assert list(items) == ["B3", "B1", "B2", "B4", "B5"]  # first appearance in the .inter rows
    assert items["B1"] == [
        'Crème Brûlée 12" Body Butter', "L'Occitane", "Skin Care, Body, Creams", "12.5",
        "Rich. Very rich.",
    ]
    assert items["B2"] == ["''Salon'' Shampoo with tab", "", "Hair Care, Shampoos", "", ""]
    assert items["B3"] == ["Café Mascara", "", "", "", ""]
    assert items["B4"] == items["B5"] == ["", "", "", "", ""]
    assert all(len(row) == 6 for row in rows)
    assert "Z1" not in items


def test_malformed_meta_lines_and_items_without_meta_are_reported(raw_beauty, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="recbole_tiger.data.amazon"):
        prepare_amazon("Beauty", str(tmp_path / "out"), raw_dir=raw_beauty)
    text = caplog.text
    meta_path = os.path.join(raw_beauty, "meta_Beauty.json.gz")
    assert f"{meta_path}: 3 malformed line(s)" in text
    assert "line 3:" in text and "line 5:" in text and "line 7: a list, not a dict" in text
    assert "line 2:" not in text and "line 6:" not in text
    assert "2 of 5 interacted items have no line" in text and "B4, B5" in text


def test_meta_file_where_most_lines_fail_stops_without_writing(tmp_path):
    raw = tmp_path / "raw"
    _write(str(raw / "reviews_Beauty_5.json.gz"), REVIEWS)
    meta_lines = [repr({"asin": "B1", "title": "ok"})] + ["<html>503</html>"] * 4
    _write(str(raw / "meta_Beauty.json.gz"), meta_lines)
    with pytest.raises(AmazonDataError) as err:
        prepare_amazon("Beauty", str(tmp_path / "out"), raw_dir=str(raw))
    message = str(err.value)
    assert str(raw / "meta_Beauty.json.gz") in message
    assert "4 of 5 metadata lines" in message and "line 2:" in message
    assert not (tmp_path / "out").exists()


def test_meta_file_of_another_category_is_an_error(tmp_path):
    raw = tmp_path / "raw"
    _write(str(raw / "reviews_Beauty_5.json.gz"), REVIEWS)
    _write(str(raw / "meta_Beauty.json.gz"), [repr({"asin": "X1", "title": "drill"})])
    with pytest.raises(AmazonDataError, match="none of the 5 interacted items"):
        prepare_amazon("Beauty", str(tmp_path / "out"), raw_dir=str(raw))
    assert not (tmp_path / "out").exists()


def test_bad_review_lines_are_named_and_skipped(tmp_path, caplog):
    raw = tmp_path / "raw"
    lines = REVIEWS + [
        "{not json",
        json.dumps({"asin": "B1", "unixReviewTime": T0}),  # no reviewerID
        json.dumps({"reviewerID": "u9", "asin": "B1", "unixReviewTime": "yesterday"}),
    ]
    _write(str(raw / "reviews_Beauty_5.json.gz"), lines)
    _write(str(raw / "meta_Beauty.json.gz"), META)
    with caplog.at_level(logging.WARNING, logger="recbole_tiger.data.amazon"):
        result = prepare_amazon("Beauty", str(tmp_path / "out"), raw_dir=str(raw))
    reviews_path = str(raw / "reviews_Beauty_5.json.gz")
    assert f"{reviews_path}: 1 malformed line(s) (line 10: not JSON" in caplog.text
    assert f"{reviews_path}: 2 incomplete line(s)" in caplog.text
    assert "line 11: missing or invalid required field(s): reviewerID missing" in caplog.text
    assert "line 12: missing or invalid required field(s): unixReviewTime='yesterday'" in (
        caplog.text
    )
    assert result.n_interactions == len(REVIEWS)


def test_reviews_file_that_is_mostly_broken_stops(tmp_path):
    raw = tmp_path / "raw"
    _write(str(raw / "reviews_Beauty_5.json.gz"), [REVIEWS[0]] + ["garbage"] * 3)
    _write(str(raw / "meta_Beauty.json.gz"), META)
    with pytest.raises(AmazonDataError, match=r"3 of 4 review lines could not be used"):
        prepare_amazon("Beauty", str(tmp_path / "out"), raw_dir=str(raw))
    assert not (tmp_path / "out").exists()


def test_truncated_gzip_is_named_as_corrupt(tmp_path):
    raw = tmp_path / "raw"
    data = gzip.compress(("\n".join(REVIEWS * 50) + "\n").encode("utf-8"))
    os.makedirs(raw)
    (raw / "reviews_Beauty_5.json.gz").write_bytes(data[: len(data) // 2])
    _write(str(raw / "meta_Beauty.json.gz"), META)
    with pytest.raises(AmazonDataError, match=r"reviews_Beauty_5.json.gz: unreadable after line"):
        prepare_amazon("Beauty", str(tmp_path / "out"), raw_dir=str(raw))
    assert not (tmp_path / "out").exists()


def test_flatten_categories_drops_top_level_and_duplicates():
    paths = [["Beauty", "Makeup", "Eyes"], ["Beauty", "Makeup", "Lips"], ["Beauty"], []]
    assert flatten_categories(paths) == ["Makeup", "Eyes", "Lips"]
    assert flatten_categories([["Beauty", "Tools\t& Accessories"]]) == ["Tools & Accessories"]
    assert flatten_categories(None) == []


def test_clean_field_keeps_recbole_csv_reader_safe():
    assert clean_field("a\tb\nc\r\nd\x00e") == "a b c de"
    assert clean_field('12" curling iron') == '12" curling iron'
    assert clean_field('  "Best" 12" iron') == "''Best'' 12'' iron"
    assert clean_field(None) == ""


def test_produced_files_load_in_recbole_with_the_canonical_test_items(
        raw_beauty, tmp_path, monkeypatch):
    from recbole.config import Config
    from recbole.data import create_dataset

    monkeypatch.setattr(sys, "argv", ["x"])
    data_path = str(tmp_path / "atomic")
    prepare_amazon("Beauty", data_path, raw_dir=raw_beauty, dataset_name="amazon-test")
    config = Config(
        model="SASRec",
        dataset="amazon-test",
        config_dict={
            "data_path": data_path,
            "load_col": {
                "inter": ["user_id", "item_id", "rating", "timestamp"],
                "item": ["item_id", "title", "brand", "categories", "price", "description"],
            },
            "user_inter_num_interval": "[0,inf)",
            "item_inter_num_interval": "[0,inf)",
            "train_neg_sample_args": None,
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
            "state": "ERROR",
        },
    )
    dataset = create_dataset(config)
    assert (dataset.user_num - 1, dataset.item_num - 1, dataset.inter_num) == (3, 5, 9)
    titles = dataset.field2id_token["title"]
    assert "''Salon''" in titles and "Brûlée" in titles
    _, _, test = dataset.build()
    uid = dataset.field2token_id["user_id"]
    by_user = {
        dataset.id2token("user_id", u): dataset.id2token("item_id", i)
        for u, i in zip(test.inter_feat["user_id"].tolist(), test.inter_feat["item_id"].tolist())
    }
    assert set(by_user) == set(uid) - {"[PAD]"}
    assert by_user == {"u1": "B2", "u2": "B1", "u3": "B5"}  # last in (timestamp, asin) order


# ---------------------------------------------------------------------------------- download


class _FakeResponse(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def test_offline_download_failure_says_what_to_fetch_and_leaves_nothing(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    out = tmp_path / "out"
    with pytest.raises(AmazonDataError) as err:
        prepare_amazon("Sports_and_Outdoors", str(out), dataset_name="amazon-sports")
    message = str(err.value)
    raw = out / "raw"
    base = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
    assert f"{base}/reviews_Sports_and_Outdoors_5.json.gz" in message
    assert f"{base}/meta_Sports_and_Outdoors.json.gz" in message
    assert str(raw / "reviews_Sports_and_Outdoors_5.json.gz") in message
    assert str(raw / "meta_Sports_and_Outdoors.json.gz") in message
    assert "Name or service not known" in message
    assert f"--dataset amazon-sports --raw_dir {raw} --out_dir {out}" in message
    assert _files_under(out) == []


def test_missing_raw_files_are_downloaded_then_converted(tmp_path, monkeypatch):
    payload = {}
    for name, lines in (("reviews_Beauty_5.json.gz", REVIEWS), ("meta_Beauty.json.gz", META)):
        payload[name] = gzip.compress(("\n".join(lines) + "\n").encode("utf-8"))
    requested = []

    def fake_urlopen(url, timeout=None):
        requested.append(url)
        return _FakeResponse(payload[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    result = prepare_amazon("Beauty", str(tmp_path / "out"))
    assert [u.rsplit("/", 1)[1] for u in requested] == list(payload)
    assert _files_under(tmp_path / "out") == [
        "amazon-beauty/amazon-beauty.inter", "amazon-beauty/amazon-beauty.item",
        "raw/meta_Beauty.json.gz", "raw/reviews_Beauty_5.json.gz",
    ]
    assert result.n_interactions == len(REVIEWS)


def test_truncated_download_is_discarded(tmp_path, monkeypatch):
    class Truncated(_FakeResponse):
        def __init__(self, data):
            super().__init__(data[:10])
            self.headers = {"Content-Length": str(len(data))}

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Truncated(b"x" * 100))
    with pytest.raises(AmazonDataError, match="incomplete download: 10 of 100 bytes"):
        prepare_amazon("Beauty", str(tmp_path / "out"))
    assert _files_under(tmp_path / "out") == []


# --------------------------------------------------------------------------- ensure_dataset


def test_ensure_dataset_prepares_once_then_is_a_no_op(tmp_path, monkeypatch, caplog):
    data_path = tmp_path / "dataset"
    # uncompressed .json files, as some users keep them
    _write(str(data_path / "raw" / "reviews_Toys_and_Games_5.json"), REVIEWS, gz=False)
    _write(str(data_path / "raw" / "meta_Toys_and_Games.json"), META, gz=False)
    with caplog.at_level(logging.INFO, logger="recbole_tiger.data.amazon"):
        assert ensure_dataset("amazon-toys", str(data_path)) is True
    assert "Dataset [amazon-toys] has no atomic files" in caplog.text
    assert "'Toys_and_Games'" in caplog.text
    inter = data_path / "amazon-toys" / "amazon-toys.inter"
    assert inter.is_file() and (data_path / "amazon-toys" / "amazon-toys.item").is_file()

    def must_not_run(*args, **kwargs):
        raise AssertionError("prepare_amazon called for an existing dataset")

    monkeypatch.setattr(amazon, "prepare_amazon", must_not_run)
    assert ensure_dataset("amazon-toys", str(data_path)) is False
    # RecBole's Config rewrites data_path to <data_path>/<dataset>; that form works too
    assert ensure_dataset("amazon-toys", str(data_path / "amazon-toys")) is False
    assert ensure_dataset("ml-100k", str(data_path)) is False
    assert ensure_dataset("amazon-all-beauty-18", str(data_path)) is False  # not a 2014 category


def test_interrupted_preparation_does_not_look_complete(raw_beauty, tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(amazon, "_write_inter", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_amazon("Beauty", str(tmp_path / "out"), raw_dir=raw_beauty)
    assert _files_under(tmp_path / "out" / "amazon-beauty") == ["amazon-beauty.item"]
    monkeypatch.undo()
    assert ensure_dataset("amazon-beauty", str(tmp_path / "out"), raw_dir=raw_beauty) is True


def test_cli_converts_and_then_skips_existing(raw_beauty, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert amazon.main(["--category", "Beauty", "--raw_dir", raw_beauty, "--out_dir", out]) == 0
    before = os.path.getmtime(os.path.join(out, "amazon-beauty", "amazon-beauty.inter"))
    again = ["--dataset", "amazon-beauty", "--raw_dir", raw_beauty, "--out_dir", out]
    assert amazon.main(again) == 0
    assert os.path.getmtime(os.path.join(out, "amazon-beauty", "amazon-beauty.inter")) == before
    assert amazon.main(["--category", "Baby", "--out_dir", out, "--no_download"]) == 1
    assert "meta_Baby.json.gz" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ names


@pytest.mark.parametrize("category, name", [
    ("Beauty", "amazon-beauty"),
    ("Sports_and_Outdoors", "amazon-sports-and-outdoors"),
    ("Toys_and_Games", "amazon-toys-and-games"),
    ("CDs_and_Vinyl", "amazon-cds-and-vinyl"),
])
def test_category_and_dataset_name_round_trip(category, name):
    assert category_to_dataset_name(category) == name
    assert dataset_name_to_category(name) == category


def test_short_aliases_and_unknown_names():
    assert dataset_name_to_category("amazon-sports") == "Sports_and_Outdoors"
    assert dataset_name_to_category("amazon-toys") == "Toys_and_Games"
    assert dataset_name_to_category("Amazon-Beauty") == "Beauty"
    with pytest.raises(ValueError, match="amazon-beauty"):
        dataset_name_to_category("amazon-shoes")


def test_not_found_message_names_the_expected_file(tmp_path):
    message = dataset_not_found_message("my-data", str(tmp_path))
    assert os.path.join(str(tmp_path), "my-data", "my-data.inter") in message
    assert "amazon-beauty" in message
