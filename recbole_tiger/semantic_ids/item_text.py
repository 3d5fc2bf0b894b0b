"""Item text for the semantic-ID pre-stage: RecBole's ``.item`` atomic file → one string per item.

The text is what the sentence encoder sees, so it decides what the codes can mean. Two
failure modes are guarded here because they silently produce collapsed IDs downstream:
a missing/empty metadata file (every item would get the same fallback text) and fields
that come out as the string "nan" (pandas' NA conversion turns *empty* cells into NaN and
real words such as "null" or "NaN" in a title into NaN too). We therefore parse the file
ourselves: every cell is a string, nothing is converted, quotes are kept as text.
"""
import logging
import os
from dataclasses import dataclass, field

logger = logging.getLogger()


class ItemTextError(ValueError):
    """Bad or missing item metadata; the message names the file (and line/field)."""


@dataclass
class ItemTable:
    """The ``.item`` file as strings. ``rows[token] = [cell per column]`` in file order."""

    path: str
    columns: list                       # field names without the ':type' suffix
    types: list                         # RecBole types, e.g. 'token_seq'
    id_column: int                      # index of the item id column
    rows: dict = field(default_factory=dict)  # token -> list[str] (insertion = file order)


def atomic_item_path(config):
    """``<data_path>/<dataset>.item`` (RecBole's ``config['data_path']`` already ends in the dataset)."""
    return os.path.join(config["data_path"], f"{config['dataset']}.item")


def read_item_table(path, item_id_field="item_id", separator="\t", encoding="utf-8"):
    """Parse a RecBole atomic ``.item`` file; every cell stays a string (no NA conversion)."""
    if not os.path.isfile(path):
        raise ItemTextError(
            f"Semantic IDs need item text, but the item file {path} does not exist. TIGER builds "
            "item IDs from item metadata: provide <dataset>.item (RecBole atomic format) with "
            "text columns such as title/brand/categories."
        )
    try:
        with open(path, encoding="utf-8-sig" if encoding.lower() in ("utf-8", "utf8") else encoding) as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise ItemTextError(f"{path}: cannot decode as {encoding}: {e}") from e
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise ItemTextError(f"The item file {path} is empty (no header, no items).")

    header = lines[0].split(separator)
    columns, types = [], []
    for i, cell in enumerate(header):
        name, _, ftype = cell.strip().partition(":")
        if not name or not ftype:
            raise ItemTextError(
                f"{path}:1: header cell {i + 1} {cell!r} is not 'name:type' (RecBole atomic format)."
            )
        columns.append(name)
        types.append(ftype)
    if item_id_field not in columns:
        raise ItemTextError(
            f"{path}:1: no item id column {item_id_field!r} (ITEM_ID_FIELD) in header {columns}."
        )
    id_col = columns.index(item_id_field)
    table = ItemTable(path=path, columns=columns, types=types, id_column=id_col)

    duplicates = 0
    for line_no, line in enumerate(lines[1:], start=2):
        cells = line.split(separator)
        if len(cells) > len(columns):
            raise ItemTextError(
                f"{path}:{line_no}: {len(cells)} fields but the header has {len(columns)} "
                f"(a stray separator {separator!r} inside a value?)."
            )
        cells += [""] * (len(columns) - len(cells))  # short rows: trailing fields empty, as RecBole reads them
        token = cells[id_col].strip()
        if not token:
            raise ItemTextError(f"{path}:{line_no}: empty item id.")
        if token in table.rows:
            duplicates += 1
            continue
        table.rows[token] = cells
    if not table.rows:
        raise ItemTextError(f"The item file {path} has a header but no items.")
    if duplicates:
        logger.warning(f"{path}: {duplicates} duplicate item ids; the first row of each is used.")
    return table


def pretty_field_name(name):
    """'movie_title' -> 'Movie title', 'categories' -> 'Categories'."""
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def select_text_columns(table, text_fields):
    """Indices of the columns rendered into the text (``None`` = every non-id column, file order)."""
    if text_fields is None:
        return [i for i in range(len(table.columns)) if i != table.id_column]
    if isinstance(text_fields, str):
        text_fields = [text_fields]
    selected = []
    for name in text_fields:
        base = str(name).split(":")[0]
        if base not in table.columns:
            raise ItemTextError(
                f"sid_text_fields lists {base!r}, but the item file {table.path} has only the "
                f"columns {table.columns}."
            )
        selected.append(table.columns.index(base))
    return selected


def render_item_text(cells, columns, text_columns):
    """'Title: …; Brand: …; Categories: …' from the non-empty selected cells ('' if none)."""
    parts = []
    for i in text_columns:
        value = " ".join(cells[i].split())  # collapse whitespace; never converts words like 'NaN'
        if value:
            parts.append(f"{pretty_field_name(columns[i])}: {value}")
    return "; ".join(parts)


@dataclass
class ItemTexts:
    tokens: list        # item tokens, .item file order then dataset-only tokens
    texts: list         # one string per token
    n_without_text: int  # items absent from .item or with every selected field empty
    text_fields: list   # the column names actually rendered


def build_item_texts(table, text_fields=None, extra_tokens=(), max_missing_ratio=0.05):
    """One text per item of ``table`` plus ``extra_tokens`` (items known only from the interactions).

    Items without any text get 'Item: <token>' so they still get a (distinct) embedding, but
    if more than ``max_missing_ratio`` of all items are like that we stop: identical or
    meaningless texts make meaningless codes.
    """
    text_columns = select_text_columns(table, text_fields)
    tokens, texts, empty = [], [], 0
    for token, cells in table.rows.items():
        text = render_item_text(cells, table.columns, text_columns)
        if not text:
            empty += 1
            text = f"Item: {token}"
        tokens.append(token)
        texts.append(text)
    missing = [t for t in extra_tokens if t not in table.rows]
    if missing:
        logger.warning(
            f"{len(missing)} items of the dataset are not in {table.path} "
            f"(e.g. {missing[:5]}); they get the text 'Item: <token>'."
        )
    for token in missing:
        tokens.append(token)
        texts.append(f"Item: {token}")
    n_without = empty + len(missing)
    if empty:
        logger.warning(f"{table.path}: {empty} items have every text field empty.")
    ratio = n_without / max(len(tokens), 1)
    if ratio > max_missing_ratio:
        raise ItemTextError(
            f"{n_without} of {len(tokens)} items ({ratio:.1%}) have no text in {table.path} "
            f"(absent from the file: {len(missing)}, all fields empty: {empty}); more than "
            f"sid_max_missing_text_ratio={max_missing_ratio}. Their semantic IDs would carry no "
            "meaning: fix the item file or raise sid_max_missing_text_ratio."
        )
    return ItemTexts(tokens, texts, n_without, [table.columns[i] for i in text_columns])


def top_category(value):
    """First element of a category list: 'Makeup, Nails, Nail Polish' -> 'Makeup';
    space-separated lists (ml-100k's 'Action Adventure') -> 'Action'. '' if empty."""
    value = value.strip()
    if not value:
        return ""
    head = value.split(",")[0] if "," in value else value.split()[0]
    return head.strip()


def category_column(table, preferred=None):
    """The column used for the category-agreement diagnostic (``None`` if there is none)."""
    if preferred:
        base = str(preferred).split(":")[0]
        if base not in table.columns:
            raise ItemTextError(f"sid_category_field {base!r} is not a column of {table.path}: {table.columns}.")
        return table.columns.index(base)
    for i, name in enumerate(table.columns):
        if i != table.id_column and name.lower() in ("categories", "category", "class", "genre", "genres"):
            return i
    return None
