"""TIGER's dataset: RecBole's ``SequentialDataset`` that also owns the item-side tables.

Resolved plugin-first by :func:`create_dataset` (``<Model>Dataset`` in this module, else
RecBole's choice), the way RecBole-GNN resolves its graph datasets. Other models
keep RecBole's datasets.

After :meth:`TIGERDataset.build` every split (and the full dataset) carries:

* ``semantic_ids`` — the :class:`~recbole_tiger.semantic_ids.SemanticIDs` of every internal
  item id, loaded or built by the pre-stage here, before any model exists (a dataset without
  item text fails now, naming its ``.item`` file, not after the model is half built);
* ``item_train_count`` — training interactions per item id ``[n_items]`` (0 = cold item), for
  popularity tie-breaks and cold-start metrics;
* on the training split, two columns that place each augmented training row in its user's
  sequence, so a model can train whole windows of a user's items in one pass
  (``train_targets: all``) without reconstructing them from shuffled batches:
  ``USER_ROW_FIELD`` (k = 1..T, the row's rank in time order among its user's training rows;
  row k predicts the user's k-th target) and ``USER_ROWS_FIELD`` (T, that user's training rows).
"""
import torch
from recbole.data import create_dataset as recbole_create_dataset
from recbole.data.dataset import SequentialDataset

from recbole_tiger.compat import distributed_rank
from recbole_tiger.data.cold_items import ColdItemSettings, apply_cold_item_protocol
from recbole_tiger.semantic_ids import load_or_build_semantic_ids
from recbole_tiger.semantic_ids.collaborative import training_cooccurrence_embeddings
from recbole_tiger.semantic_ids.settings import SemanticIDSettings

USER_ROW_FIELD = "user_train_row"      # k: this row is its user's k-th training row (1-based)
USER_ROWS_FIELD = "user_train_rows"    # T: training rows of this row's user


class TIGERDataset(SequentialDataset):
    """``SequentialDataset`` + semantic IDs, training counts and row ranks (module docstring)."""

    semantic_ids = None
    item_train_count = None

    def build(self):
        datasets = super().build()
        train = datasets[0]
        item_list_field = self.iid_field + self.config["LIST_SUFFIX"]
        settings = SemanticIDSettings.from_config(self.config)  # read once, for every step below
        semantic_ids = self.load_semantic_ids(settings, self.collaborative_vectors(settings, train, item_list_field))
        counts = training_counts(train.inter_feat, self.iid_field, item_list_field,
                                 self.item_list_length_field, self.item_num)
        add_user_row_ranks(train.inter_feat, self.uid_field, self.item_list_length_field)
        for dataset in (self, *datasets):
            dataset.semantic_ids = semantic_ids
            dataset.item_train_count = counts
        return datasets

    def collaborative_vectors(self, params, train, item_list_field):
        """Co-purchase vectors of every internal item id from the training rows only (valid and
        test targets never enter), when ``sid_collaborative_weight`` > 0; else ``None``."""
        if not params.uses_collaborative:
            return None
        vectors, n_pairs = training_cooccurrence_embeddings(
            train.inter_feat, self.iid_field, item_list_field, self.item_list_length_field, self.item_num,
            params.sid_collaborative_dim, params.sid_collaborative_window, seed=int(self.config["seed"]))
        return {"vectors": vectors, "n_pairs": n_pairs}

    def load_semantic_ids(self, settings, collaborative=None):
        """The pre-stage: this dataset's semantic-ID artifact, built first if missing or stale,
        checked against the settings that describe it and against the item ids."""
        # Distributed training: rank 0 builds the artifact, the other ranks wait, then load it.
        rank = distributed_rank()
        if rank not in (None, 0):
            torch.distributed.barrier()
        semantic_ids = load_or_build_semantic_ids(self.config, self, collaborative, settings)
        if rank == 0:
            torch.distributed.barrier()
        check_vocabulary(settings, semantic_ids)
        semantic_ids.validate(self.item_num)
        return semantic_ids


class TextNNDataset(TIGERDataset):
    """TextNN scores with the items' text embeddings, which the semantic-ID artifact holds."""


class RPGDataset(TIGERDataset):
    """RPG's long semantic IDs and the row ranks its window training reads."""


def create_dataset(config):
    """The dataset for ``config['model']``: ``<Model>Dataset`` of this module if we define one
    (TIGER's owns the semantic IDs), else RecBole's choice (and its saved-dataset cache); then,
    for every model alike, the cold-start protocol if ``cold_item_ratio`` > 0 (data/cold_items.py)."""
    cold = ColdItemSettings.from_config(config)
    dataset_class = globals().get(config["model"] + "Dataset")
    if not (isinstance(dataset_class, type) and issubclass(dataset_class, SequentialDataset)):
        dataset = recbole_create_dataset(config)
    else:
        dataset = dataset_class(config)
        if config["save_dataset"]:
            dataset.save()
    if cold.on:  # before build(): the splits, training counts and semantic IDs see the protocol's data
        apply_cold_item_protocol(dataset, cold)
    return dataset


def attach_training_counts(train, *others):
    """``item_train_count`` on every split of a model whose dataset does not set it (RecBole's):
    the cold-start metrics and popularity breakdowns of every model read it."""
    if getattr(train, "item_train_count", None) is not None:
        return
    item_list_field = train.iid_field + train.config["LIST_SUFFIX"]
    counts = training_counts(train.inter_feat, train.iid_field, item_list_field,
                             getattr(train, "item_list_length_field", None), train.item_num)
    for dataset in (train, *others):
        dataset.item_train_count = counts


def dataset_semantic_ids(dataset, model_name, *, text_embeddings=False):
    """``dataset``'s semantic IDs (TIGERDataset's artifact), with the items' text embeddings when
    ``text_embeddings``; a ValueError that names what ``model_name`` needs otherwise."""
    semantic_ids = getattr(dataset, "semantic_ids", None)
    if semantic_ids is None or (text_embeddings and semantic_ids.item_embeddings is None):
        what = "the items' text embeddings of TIGERDataset's semantic-ID artifact" if text_embeddings \
            else "TIGERDataset's semantic IDs"
        raise ValueError(f"{model_name} needs {what}; got a {type(dataset).__name__}. Create the dataset with "
                         "recbole_tiger.data.dataset.create_dataset (run_recbole_tiger.py and quick_start do).")
    return semantic_ids


def check_vocabulary(settings, sid):
    """The model's vocabulary is sized from the artifact: it must be the one the settings ask for."""
    n_levels, size, dedup = settings.sid_n_levels, settings.sid_codebook_size, settings.sid_dedup
    expected = f"{n_levels} levels of {size} codes" + (" + a collision level" if dedup else "")
    if (len(sid.codebook_sizes) != n_levels + int(dedup) or bool(sid.dedup) != dedup
            or any(int(k) != int(size) for k in sid.codebook_sizes[:n_levels])):
        raise ValueError(
            f"TIGER: the config asks for semantic IDs with {expected} (sid_n_levels, "
            f"sid_codebook_size, sid_dedup), but the artifact {sid.artifact_path} has "
            f"codebook_sizes={list(sid.codebook_sizes)}, dedup={sid.dedup}."
        )


def training_counts(inter, item_field, item_list_field, length_field, n_items) -> torch.Tensor:
    """Training interactions per item id ``[n_items]``: every target of the augmented training
    rows plus each user's first item, which only ever appears as history. 0 = cold item."""
    counts = torch.bincount(inter[item_field].long(), minlength=n_items)
    if length_field is not None and item_list_field in inter and length_field in inter:
        first = inter[item_list_field][inter[length_field] == 1, 0]
        counts += torch.bincount(first.long(), minlength=n_items)
    counts[0] = 0
    return counts


def add_user_row_ranks(inter, user_field, length_field):
    """Add ``USER_ROW_FIELD`` (k) and ``USER_ROWS_FIELD`` (T) to the training rows ``inter``.

    RecBole's augmented training rows are each user's prefixes in time order: row k of a
    user (k = 1..T) predicts the user's item k+1 from up to N items before it. That order is
    checked (each user's first row has a one-item history), not assumed.
    """
    user = inter[user_field].long()
    order = torch.argsort(user, stable=True)                      # users grouped, time order kept
    n_rows = torch.bincount(user, minlength=int(user.max()) + 1 if len(user) else 1)
    start = torch.cumsum(n_rows, 0) - n_rows
    rank = torch.empty_like(user)
    rank[order] = torch.arange(1, len(user) + 1) - start[user[order]]
    if len(user) and not bool((inter[length_field][rank == 1] == 1).all()):
        raise ValueError("TIGERDataset: expected each user's first training row to have a one-item "
                         "history (RecBole's sequential augmentation, eval_args order TO); got another "
                         "row order.")
    inter[USER_ROW_FIELD] = rank
    inter[USER_ROWS_FIELD] = n_rows[user]
