"""The catalogue the LM learns: every item's fields (from ``.item``) with its semantic ID
(from the artifact TIGER uses), looked up both ways."""
import logging
from dataclasses import dataclass, field

from recbole_tiger.semantic_ids.item_text import read_item_table
from recbole_tiger.semantic_ids.pipeline import load_artifact

logger = logging.getLogger(__name__)


class CatalogueError(ValueError):
    """Items and semantic IDs that do not fit together; the message names the file and item."""


@dataclass
class Item:
    token: str                 # the dataset's item id
    fields: dict               # field name -> value ('' when empty), the .item file's columns
    codes: tuple               # semantic ID, collision level included


@dataclass
class Catalogue:
    items: list                # [Item], .item file order
    codebook_sizes: list       # codes per level, e.g. [256, 256, 256, 12]
    field_names: list          # the text fields (every non-id column)
    artifact_path: str = ""
    item_file: str = ""        # the .item file the fields come from
    item_id_field: str = "item_id"
    by_codes: dict = field(default_factory=dict)   # codes -> index into items
    by_token: dict = field(default_factory=dict)   # token -> index into items

    def __post_init__(self):
        self.by_codes = {item.codes: i for i, item in enumerate(self.items)}
        self.by_token = {item.token: i for i, item in enumerate(self.items)}
        if len(self.by_codes) != len(self.items):
            raise CatalogueError(f"{self.artifact_path}: several items share a semantic ID; build the "
                                 "artifact with sid_dedup: True (the collision level makes IDs unique).")

    @property
    def n_levels(self):
        return len(self.codebook_sizes)

    def title(self, item):
        """The field a person recognises an item by (title/name, else the first non-empty one)."""
        for name in ("title", "name", "movie_title", "item_name"):
            if item.fields.get(name):
                return item.fields[name]
        return next((v for v in item.fields.values() if v), item.token)


def load_catalogue(artifact_path, item_file=None, strict=True):
    """The catalogue of a semantic-ID artifact and its ``.item`` file (the one the artifact was
    built from unless ``item_file`` is given).

    Strict: an item of the ``.item`` file without a semantic ID is an error naming it; otherwise
    such items are left out with a warning. Artifact items absent from ``.item`` (no text at
    all) are always left out: there is nothing to ask about them.
    """
    artifact = load_artifact(artifact_path)
    if artifact is None:
        raise CatalogueError(f"{artifact_path}: not a readable semantic-ID artifact "
                             "(build one with `python -m recbole_tiger.data.build_semantic_ids --dataset=...`).")
    item_file = item_file or artifact["item_file"]
    table = read_item_table(item_file, item_id_field=artifact["key_inputs"]["item_id_field"])
    codes = {t: tuple(int(c) for c in row) for t, row in zip(artifact["tokens"], artifact["codes"].tolist())}
    names = [n for i, n in enumerate(table.columns) if i != table.id_column]
    items, missing = [], []
    for token, cells in table.rows.items():
        if token not in codes:
            missing.append(token)
            continue
        values = {n: " ".join(c.split()) for i, (n, c) in enumerate(zip(table.columns, cells)) if i != table.id_column}
        items.append(Item(token=token, fields=values, codes=codes[token]))
    if missing:
        message = (f"{item_file}: {len(missing)} items have no semantic ID in {artifact_path}, e.g. "
                   f"{missing[:5]} (the artifact was built for another item set)")
        if strict:
            raise CatalogueError(message + "; rebuild the artifact or pass strict=False / --no_strict to skip them.")
        logger.warning(message + "; they are left out.")
    return Catalogue(items=items, codebook_sizes=[int(k) for k in artifact["codebook_sizes"]],
                     field_names=names, artifact_path=artifact_path, item_file=item_file,
                     item_id_field=table.columns[table.id_column])
