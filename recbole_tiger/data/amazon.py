"""Amazon Review Data 2014 (McAuley et al.) 5-core files -> RecBole atomic files.

The TIGER / S3-Rec / P5 benchmarks (Beauty, Sports_and_Outdoors, Toys_and_Games) use the 2014
per-category files ``reviews_<Category>_5.json.gz`` (JSON lines) and ``meta_<Category>.json.gz``
(one Python ``dict`` literal per line, not JSON). This module turns them into
``<out_dir>/amazon-<slug>/amazon-<slug>.{inter,item}``::

    python -m recbole_tiger.data.amazon --category Beauty [--raw_dir DIR] [--out_dir dataset_atomic]

and :func:`ensure_dataset` does the same on demand before RecBole loads an ``amazon-*`` dataset.

Conventions (they decide the leave-one-out targets, so they are fixed, not configurable):

* ``.inter`` rows are grouped by user, users in order of first appearance in the reviews file
  (the raw file is sorted by asin; this reproduces the P5 / S3-Rec user numbering), and within a
  user sorted stably by ``(timestamp, asin)``. Timestamps are day-level and many users have
  several items on their last day, so the tie order *is* the test target; ``(timestamp, asin)``
  is the canonical S3-Rec / P5 / TIGER order. Keep it by sorting stably (RecBole's ``TO`` order
  uses a stable sort).
* No k-core filtering here: the ``_5`` files are already 5-core, and RecBole's
  ``user_inter_num_interval`` / ``item_inter_num_interval`` apply any further filtering.
* ``.item`` holds only items that occur in the interactions; categories drop the leading
  top-level name of every category path (``['Beauty', 'Makeup', 'Eyes']`` -> ``Makeup, Eyes``),
  as P5 / S3-Rec do.
"""

import argparse
import ast
import gzip
import http.client
import json
import logging
import os
import re
import sys
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field

from tqdm import tqdm

from recbole_tiger.data.atomic_files import (
    atomic_file_path,
    clean_field,
    dataset_dir,
    field_needs_quote_fix,
)
from recbole_tiger.atomic_io import open_atomic

SNAP_BASE_URL = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"

# The 24 per-category 5-core files of the 2014 release, spelled as in their file names.
CATEGORIES = (
    "Amazon_Instant_Video", "Apps_for_Android", "Automotive", "Baby", "Beauty", "Books",
    "CDs_and_Vinyl", "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry",
    "Digital_Music", "Electronics", "Grocery_and_Gourmet_Food", "Health_and_Personal_Care",
    "Home_and_Kitchen", "Kindle_Store", "Movies_and_TV", "Musical_Instruments",
    "Office_Products", "Patio_Lawn_and_Garden", "Pet_Supplies", "Sports_and_Outdoors",
    "Tools_and_Home_Improvement", "Toys_and_Games", "Video_Games",
)

# Short names used by papers and repos for the two other TIGER benchmarks.
DATASET_ALIASES = {
    "amazon-sports": "Sports_and_Outdoors",
    "amazon-toys": "Toys_and_Games",
}

DATASET_PREFIX = "amazon-"
DOWNLOAD_TIMEOUT = 60  # seconds without data before a download counts as failed
MAX_REPORTED_LINES = 5  # line numbers quoted per kind of problem

# Column order of the .item file; a column is written if any interacted item has a value.
ITEM_COLUMNS = (
    ("title", "token_seq"),
    ("brand", "token"),
    ("categories", "token_seq"),
    ("price", "float"),
    ("description", "token_seq"),
)

# First "asin" value of a meta line, to skip lines of items nobody interacted with without a full
# ast.literal_eval (meta_Beauty has 259k lines for 12k interacted items).
_META_ASIN_RE = re.compile(r"""["']asin["']\s*:\s*u?["']([^"']*)["']""")

_logger = logging.getLogger(__name__)


class AmazonDataError(RuntimeError):
    """Raw Amazon files are missing, unreadable or mostly malformed."""


# ---------------------------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------------------------


def category_to_dataset_name(category):
    """``'Sports_and_Outdoors'`` -> ``'amazon-sports-and-outdoors'``."""
    return DATASET_PREFIX + category.lower().replace("_", "-")


def is_amazon_dataset(dataset_name):
    return dataset_name.lower().startswith(DATASET_PREFIX)


def dataset_name_to_category(dataset_name):
    """``'amazon-toys-and-games'`` or ``'amazon-toys'`` -> ``'Toys_and_Games'``.

    Raises ``ValueError`` for names that are not one of the 2014 categories or an alias.
    """
    name = dataset_name.lower()
    if name in DATASET_ALIASES:
        return DATASET_ALIASES[name]
    for category in CATEGORIES:
        if category_to_dataset_name(category) == name:
            return category
    known = ", ".join(
        sorted([category_to_dataset_name(c) for c in CATEGORIES] + list(DATASET_ALIASES))
    )
    raise ValueError(
        f"'{dataset_name}' is not an Amazon Review 2014 category dataset; known names: {known}"
    )


def resolve_dataset(dataset_name):
    """The 2014 category behind ``dataset_name``, or None if this module does not handle it."""
    if not is_amazon_dataset(dataset_name):
        return None
    try:
        return dataset_name_to_category(dataset_name)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# raw files: locate or download
# ---------------------------------------------------------------------------------------------


def raw_file_names(category):
    """(reviews, meta) file names of ``category`` as published (gzipped)."""
    return f"reviews_{category}_5.json.gz", f"meta_{category}.json.gz"


def find_raw_file(raw_dir, gz_name):
    """Path of ``gz_name`` in ``raw_dir``, or of its uncompressed ``.json`` twin; else None."""
    for name in (gz_name, gz_name[: -len(".gz")]):
        path = os.path.join(raw_dir, name)
        if os.path.isfile(path):
            return path
    return None


def download_file(url, dest, timeout=DOWNLOAD_TIMEOUT):
    """Download ``url`` to ``dest`` with a progress bar; ``dest`` only appears when complete."""
    with open_atomic(dest, "wb", suffix=".part") as out, \
            urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=os.path.basename(dest),
        ) as bar:
            received = 0
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if total is not None and received != total:
            raise urllib.error.URLError(f"incomplete download: {received} of {total} bytes")


def _manual_download_message(category, dataset_name, missing, raw_dir, out_dir, reason):
    lines = [
        f"Could not download the Amazon Review 2014 '{category}' files ({reason}).",
        "Download them by hand and put them here:",
    ]
    for name in missing:
        lines.append(f"  {SNAP_BASE_URL}/{name}  ->  {os.path.join(raw_dir, name)}")
    lines += [
        "(gunzipped .json files with the same names also work). Then rerun:",
        f"  python -m recbole_tiger.data.amazon --dataset {dataset_name} "
        f"--raw_dir {raw_dir} --out_dir {out_dir}",
        "or rerun your run_recbole_tiger.py command, which prepares the dataset from these files.",
    ]
    return "\n".join(lines)


def ensure_raw_files(
    category, raw_dir, out_dir, dataset_name=None, logger=_logger, download=True
):
    """Return the (reviews, meta) paths in ``raw_dir``, downloading missing ones if allowed.

    Raises :class:`AmazonDataError` with manual download instructions (URLs and full target
    paths) when a file is missing and cannot be downloaded; no partial file is left behind.
    """
    raw_dir = os.path.abspath(raw_dir)
    dataset_name = dataset_name or category_to_dataset_name(category)
    names = raw_file_names(category)
    paths = [find_raw_file(raw_dir, name) for name in names]
    missing = [name for name, path in zip(names, paths) if path is None]
    if not missing:
        return tuple(paths)
    if not download:
        raise AmazonDataError(
            _manual_download_message(
                category, dataset_name, missing, raw_dir, out_dir, "downloading disabled"
            )
        )
    os.makedirs(raw_dir, exist_ok=True)
    for name in missing:
        url = f"{SNAP_BASE_URL}/{name}"
        dest = os.path.join(raw_dir, name)
        logger.info(f"Downloading [{url}] to [{dest}].")
        try:
            download_file(url, dest)
        except (OSError, http.client.HTTPException) as err:  # URLError, HTTPError, timeouts
            still_missing = [n for n in names if find_raw_file(raw_dir, n) is None]
            reason = getattr(err, "reason", None) or err
            raise AmazonDataError(
                _manual_download_message(
                    category, dataset_name, still_missing, raw_dir, out_dir, f"{url}: {reason}"
                )
            ) from err
    return tuple(find_raw_file(raw_dir, name) for name in names)


# ---------------------------------------------------------------------------------------------
# raw files: parse
# ---------------------------------------------------------------------------------------------


class _LineProblems:
    """Count of unusable lines of one raw file plus the first few (line number, reason)."""

    def __init__(self, path, what):
        self.path = path
        self.what = what
        self.count = 0
        self.examples = []

    def add(self, line_number, reason):
        self.count += 1
        if len(self.examples) < MAX_REPORTED_LINES:
            self.examples.append((line_number, reason[:120]))

    def __str__(self):
        shown = "; ".join(f"line {n}: {reason}" for n, reason in self.examples)
        more = "; ..." if self.count > len(self.examples) else ""
        return f"{self.path}: {self.count} {self.what} line(s) ({shown}{more})"


def _numbered_lines(path, desc):
    """Yield (1-based line number, text or UnicodeDecodeError) of a .json or .json.gz file."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"  # by content: a misnamed file still works
    opener = gzip.open if gzipped else open
    number = 0
    with opener(path, "rb") as handle:
        lines = tqdm(handle, desc=desc, unit=" lines", disable=None, leave=False, mininterval=1)
        try:
            for number, raw in enumerate(lines, start=1):
                try:
                    yield number, raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    yield number, err
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:  # e.g. an interrupted download
            raise AmazonDataError(
                f"{path}: unreadable after line {number} ({type(err).__name__}: {err}); the file "
                f"is truncated or corrupt. Delete it and download it again."
            ) from err


def _fail_if_mostly_broken(problems, n_lines, path, kind):
    if n_lines == 0:
        raise AmazonDataError(f"{path}: no {kind} lines found (empty file?)")
    if problems.count * 2 > n_lines:
        raise AmazonDataError(
            f"{path}: {problems.count} of {n_lines} {kind} lines could not be used, so this is "
            f"probably not an Amazon 2014 {kind} file (or it is truncated/corrupt); nothing was "
            f"written. {problems}"
        )


@dataclass
class Reviews:
    """Interactions of a reviews file, grouped by user in order of first appearance."""

    path: str
    by_user: dict  # reviewerID -> [(unixReviewTime: int, asin: str, overall: float | None)]
    n_lines: int = 0
    problems: list = field(default_factory=list)  # _LineProblems with a nonzero count


def _as_id(record, key):
    value = record.get(key)
    if not isinstance(value, str) or not value:
        return None
    if any(ch.isspace() for ch in value):
        return None
    return value


def _as_timestamp(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _as_float(value):
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):  # e.g. "$12.99" in hand-made or 2018-style files
        try:
            return float(value.replace("$", "").replace(",", "").strip())
        except ValueError:
            return None
    return None


def read_reviews(path, logger=_logger):
    """Parse a ``reviews_<Category>_5.json[.gz]`` file (one JSON object per line)."""
    malformed = _LineProblems(path, "malformed")
    incomplete = _LineProblems(path, "incomplete")
    by_user = {}
    n_lines = 0
    for number, text in _numbered_lines(path, f"reading {os.path.basename(path)}"):
        if isinstance(text, UnicodeDecodeError):
            n_lines += 1
            malformed.add(number, f"not UTF-8 ({text.reason})")
            continue
        if not text.strip():
            continue
        n_lines += 1
        try:
            record = json.loads(text)
        except ValueError as err:
            malformed.add(number, f"not JSON ({err})")
            continue
        if not isinstance(record, dict):
            malformed.add(number, f"a JSON {type(record).__name__}, not an object")
            continue
        user, item = _as_id(record, "reviewerID"), _as_id(record, "asin")
        timestamp = _as_timestamp(record.get("unixReviewTime"))
        bad = [
            name
            for name, value in (("reviewerID", user), ("asin", item), ("unixReviewTime", timestamp))
            if value is None
        ]
        if bad:
            detail = ", ".join(
                f"{name}={record[name]!r}" if name in record else f"{name} missing" for name in bad
            )
            incomplete.add(number, f"missing or invalid required field(s): {detail}")
            continue
        by_user.setdefault(user, []).append((timestamp, item, _as_float(record.get("overall"))))

    problems = [p for p in (malformed, incomplete) if p.count]
    combined = _LineProblems(path, "unusable")
    combined.count = malformed.count + incomplete.count
    combined.examples = sorted(malformed.examples + incomplete.examples)[:MAX_REPORTED_LINES]
    _fail_if_mostly_broken(combined, n_lines, path, "review")
    for problem in problems:
        logger.warning(f"Skipped {problem}.")
    return Reviews(path=path, by_user=by_user, n_lines=n_lines, problems=problems)


def flatten_categories(category_paths):
    """``[['Beauty', 'Makeup', 'Eyes'], ['Beauty', 'Makeup']]`` -> ``['Makeup', 'Eyes']``.

    Drops the first (top-level) name of every path, as P5 / S3-Rec do, and duplicates in order.
    A flat list of names (2018-style ``category``) is treated as a single path.
    """
    if not category_paths:
        return []
    if all(isinstance(p, str) for p in category_paths):
        category_paths = [category_paths]
    names = []
    for path in category_paths:
        if isinstance(path, str):
            path = [path]
        for name in list(path)[1:]:
            name = clean_field(name)
            if name and name not in names:
                names.append(name)
    return names


def _joined(value):
    if isinstance(value, (list, tuple)):  # 2018-style description: list of paragraphs
        return " ".join(str(v) for v in value)
    return value


def _text(value):
    return clean_field(_joined(value))


def _parse_meta_line(text):
    """A meta line as dict: Python literal (2014 release) or JSON (re-exports)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    return ast.literal_eval(text.strip())


@dataclass
class Meta:
    """Metadata fields (already cleaned for atomic files) of the interacted items."""

    path: str
    items: dict  # asin -> {"title": str, "brand": str, "categories": str, "price": float|None, ...}
    n_lines: int = 0
    n_parsed: int = 0
    n_quote_fixed: int = 0
    problems: list = field(default_factory=list)


def read_meta(path, wanted_asins, logger=_logger):
    """Parse ``meta_<Category>.json[.gz]`` for the items in ``wanted_asins``.

    Lines whose asin is visibly not wanted are skipped without a full parse, so malformed-line
    counts refer to the lines that were parsed (those of interacted items or without a readable
    asin). If most parsed lines fail, raises :class:`AmazonDataError` rather than writing an
    ``.item`` file without metadata.
    """
    malformed = _LineProblems(path, "malformed")
    items, duplicates = {}, 0
    n_lines = n_parsed = n_quote_fixed = 0
    for number, text in _numbered_lines(path, f"reading {os.path.basename(path)}"):
        if isinstance(text, UnicodeDecodeError):
            n_lines += 1
            n_parsed += 1
            malformed.add(number, f"not UTF-8 ({text.reason})")
            continue
        if not text.strip():
            continue
        n_lines += 1
        quick = _META_ASIN_RE.search(text)
        if quick is not None and quick.group(1) not in wanted_asins:
            continue
        n_parsed += 1
        try:
            record = _parse_meta_line(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError) as err:
            malformed.add(number, f"neither a Python dict literal nor JSON ({type(err).__name__})")
            continue
        if not isinstance(record, dict):
            malformed.add(number, f"a {type(record).__name__}, not a dict")
            continue
        asin = _as_id(record, "asin")
        if asin is None:
            malformed.add(number, "no valid 'asin' field")
            continue
        if asin not in wanted_asins:
            continue
        if asin in items:
            duplicates += 1
            continue
        n_quote_fixed += sum(
            field_needs_quote_fix(_joined(record.get(key)))
            for key in ("title", "brand", "description")
        )
        items[asin] = {
            "title": _text(record.get("title")),
            "brand": _text(record.get("brand")),
            "categories": ", ".join(
                flatten_categories(record.get("categories") or record.get("category"))
            ),
            "price": _as_float(record.get("price")),
            "description": _text(record.get("description")),
        }
    if n_lines == 0 or n_parsed > 0:  # n_parsed == 0: only unwanted lines, reported below
        _fail_if_mostly_broken(malformed, n_parsed, path, "metadata")
    problems = [malformed] if malformed.count else []
    for problem in problems:
        logger.warning(f"Skipped {problem}.")
    if duplicates:
        logger.warning(f"{path}: {duplicates} repeated asin line(s); kept the first of each.")
    if wanted_asins and not items:
        raise AmazonDataError(
            f"{path}: none of the {len(wanted_asins)} interacted items has a metadata line; is it "
            f"the meta file of the same category as the reviews? Nothing was written."
        )
    return Meta(path=path, items=items, n_lines=n_lines, n_parsed=n_parsed,
                n_quote_fixed=n_quote_fixed, problems=problems)


# ---------------------------------------------------------------------------------------------
# atomic files
# ---------------------------------------------------------------------------------------------


@dataclass
class PreparedDataset:
    """What :func:`prepare_amazon` wrote."""

    dataset_name: str
    directory: str
    n_users: int
    n_items: int
    n_interactions: int
    n_items_without_meta: int
    item_columns: list  # written .item columns besides item_id
    field_coverage: dict  # column -> number of written items with a value


def _format_float(value):
    return "" if value is None else repr(float(value))


def _write_inter(path, ordered_users, has_rating):
    header = ["user_id:token", "item_id:token"]
    header += ["rating:float"] if has_rating else []
    header += ["timestamp:float"]
    with open_atomic(path) as out:
        out.write("\t".join(header) + "\n")
        for user, rows in ordered_users:
            for timestamp, item, rating in rows:
                cells = [user, item] + ([_format_float(rating)] if has_rating else [])
                out.write("\t".join(cells + [str(timestamp)]) + "\n")


def _write_item(path, item_order, meta_items, columns):
    header = ["item_id:token"] + [f"{name}:{ftype}" for name, ftype in columns]
    with open_atomic(path) as out:
        out.write("\t".join(header) + "\n")
        for item in item_order:
            record = meta_items.get(item, {})
            cells = [item]
            for name, ftype in columns:
                value = record.get(name)
                cells.append(_format_float(value) if ftype == "float" else (value or ""))
            out.write("\t".join(cells) + "\n")


def prepare_amazon(
    category,
    out_dir,
    raw_dir=None,
    dataset_name=None,
    logger=_logger,
    download=True,
    overwrite=False,
):
    """Convert ``category``'s 2014 raw files into ``<out_dir>/<dataset_name>/`` atomic files.

    ``raw_dir`` defaults to ``<out_dir>/raw``; missing raw files are downloaded there (unless
    ``download=False``). ``dataset_name`` defaults to ``amazon-<category slug>``. The ``.inter``
    file is written last, each file via a temporary name, so the dataset counts as present (by
    its ``.inter`` file) only once it is complete.
    """
    logger = logger or _logger
    out_dir = os.path.abspath(out_dir)
    raw_dir = os.path.abspath(raw_dir or os.path.join(out_dir, "raw"))
    dataset_name = dataset_name or category_to_dataset_name(category)
    target_dir = dataset_dir(dataset_name, out_dir)
    inter_path = os.path.join(target_dir, f"{dataset_name}.inter")
    item_path = os.path.join(target_dir, f"{dataset_name}.item")
    if os.path.exists(inter_path) and not overwrite:
        raise FileExistsError(f"{inter_path} exists; pass overwrite=True (--overwrite) to rebuild")
    if category not in CATEGORIES:
        logger.warning(
            f"'{category}' is not one of the 2014 per-category 5-core files: {CATEGORIES}"
        )

    reviews_path, meta_path = ensure_raw_files(
        category, raw_dir, out_dir, dataset_name, logger, download
    )
    reviews = read_reviews(reviews_path, logger)

    # Canonical order: users by first appearance, each user's rows stably by (timestamp, asin).
    ordered_users = [
        (user, sorted(rows, key=lambda row: (row[0], row[1])))
        for user, rows in reviews.by_user.items()
    ]
    item_order = list(dict.fromkeys(item for _, rows in ordered_users for _, item, _ in rows))
    n_interactions = sum(len(rows) for _, rows in ordered_users)
    n_rated = sum(rating is not None for _, rows in ordered_users for _, _, rating in rows)
    has_rating = n_rated == n_interactions
    if not has_rating:
        logger.warning(
            f"{reviews_path}: {n_interactions - n_rated} of {n_interactions} reviews have no "
            f"numeric 'overall'; the .inter file is written without a rating column."
        )
    n_duplicates = n_interactions - len(
        {(user, item) for user, rows in ordered_users for _, item, _ in rows}
    )
    if n_duplicates:
        logger.warning(f"{reviews_path}: {n_duplicates} repeated (user, item) pairs kept as is.")

    meta = read_meta(meta_path, set(item_order), logger)
    without_meta = [item for item in item_order if item not in meta.items]
    if without_meta:
        logger.warning(
            f"{len(without_meta)} of {len(item_order)} interacted items have no line in "
            f"{meta_path} (e.g. {', '.join(without_meta[:5])}); their .item fields are empty."
        )
    if meta.n_quote_fixed:
        logger.info(
            f"{meta.n_quote_fixed} title/brand/description value(s) start with '\"'; wrote "
            f"their double quotes as '' so RecBole's CSV reader does not treat them as quoting."
        )
    coverage = {
        name: sum(
            1 for item in item_order
            if (meta.items.get(item, {}).get(name) not in (None, ""))
        )
        for name, _ in ITEM_COLUMNS
    }
    columns = [(name, ftype) for name, ftype in ITEM_COLUMNS if coverage[name] > 0]

    os.makedirs(target_dir, exist_ok=True)
    if os.path.exists(inter_path):  # overwrite: stop looking complete before touching .item
        os.unlink(inter_path)
    _write_item(item_path, item_order, meta.items, columns)
    _write_inter(inter_path, ordered_users, has_rating)

    result = PreparedDataset(
        dataset_name=dataset_name,
        directory=target_dir,
        n_users=len(ordered_users),
        n_items=len(item_order),
        n_interactions=n_interactions,
        n_items_without_meta=len(without_meta),
        item_columns=[name for name, _ in columns],
        field_coverage={name: coverage[name] for name, _ in columns},
    )
    coverage_text = ", ".join(f"{k} {v}/{result.n_items}" for k, v in result.field_coverage.items())
    logger.info(
        f"Wrote [{target_dir}]: {result.n_users} users, {result.n_items} items, "
        f"{result.n_interactions} interactions (users in order of first appearance, each "
        f"user's rows by (timestamp, asin)); item fields: {coverage_text or 'none'}."
    )
    return result


def ensure_dataset(dataset_name, data_path, logger=None, raw_dir=None, download=True):
    """Prepare an ``amazon-<category>`` dataset if its ``.inter`` file is missing.

    Call before RecBole creates the dataset. Returns True if the dataset was prepared, False if
    it already exists or ``dataset_name`` is not an Amazon 2014 category (for those the runner
    shows :func:`~recbole_tiger.data.atomic_files.dataset_not_found_message` if files are
    missing). ``data_path`` is RecBole's ``data_path`` (either the parent of the dataset
    directory or, as after ``Config`` rewrote it, the dataset directory itself).
    Raw files are looked up in / downloaded to ``raw_dir``, default ``<parent>/raw``.
    """
    logger = logger or _logger
    category = resolve_dataset(dataset_name)
    if category is None:
        return False
    inter_path = atomic_file_path(dataset_name, data_path, "inter")
    if os.path.isfile(inter_path):
        return False
    out_dir = os.path.dirname(dataset_dir(dataset_name, data_path))
    raw_dir = os.path.abspath(raw_dir or os.path.join(out_dir, "raw"))
    logger.info(
        f"Dataset [{dataset_name}] has no atomic files at [{inter_path}]: preparing it from the "
        f"Amazon Review 2014 '{category}' 5-core files (reviews_{category}_5.json.gz, "
        f"meta_{category}.json.gz) in [{raw_dir}]."
    )
    prepare_amazon(
        category, out_dir, raw_dir=raw_dir, dataset_name=dataset_name, logger=logger,
        download=download,
    )
    return True


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m recbole_tiger.data.amazon",
        description="Convert Amazon Review 2014 5-core files into RecBole atomic files.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--category", help="category as in the file names, e.g. Beauty, "
                       "Sports_and_Outdoors, Toys_and_Games")
    which.add_argument("--dataset", help="dataset name, e.g. amazon-beauty, amazon-sports")
    parser.add_argument("--out_dir", default="dataset_atomic",
                        help="parent directory of the dataset directory (default: dataset_atomic)")
    parser.add_argument("--raw_dir", default=None,
                        help="directory of the raw .json.gz files (default: <out_dir>/raw)")
    parser.add_argument("--no_download", action="store_true",
                        help="never download; fail with instructions if raw files are missing")
    parser.add_argument("--overwrite", action="store_true", help="rebuild an existing dataset")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.dataset:
        try:
            category, dataset_name = dataset_name_to_category(args.dataset), args.dataset
        except ValueError as err:
            parser.error(str(err))
    else:
        category, dataset_name = args.category, category_to_dataset_name(args.category)

    inter_path = atomic_file_path(dataset_name, args.out_dir, "inter")
    if os.path.isfile(inter_path) and not args.overwrite:
        _logger.info(f"{inter_path} already exists; nothing to do (use --overwrite to rebuild).")
        return 0
    try:
        prepare_amazon(
            category, args.out_dir, raw_dir=args.raw_dir, dataset_name=dataset_name,
            download=not args.no_download, overwrite=args.overwrite,
        )
    except AmazonDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
