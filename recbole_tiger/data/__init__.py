"""Dataset preparation: raw public datasets -> RecBole atomic files.

Names are resolved lazily (PEP 562) so that ``python -m recbole_tiger.data.amazon`` does not
import ``amazon`` twice (runpy warns when the package already imported the module it runs).
"""

import importlib

_EXPORTS = {
    "AmazonDataError": "recbole_tiger.data.amazon",
    "PreparedDataset": "recbole_tiger.data.amazon",
    "category_to_dataset_name": "recbole_tiger.data.amazon",
    "dataset_name_to_category": "recbole_tiger.data.amazon",
    "ensure_dataset": "recbole_tiger.data.amazon",
    "prepare_amazon": "recbole_tiger.data.amazon",
    "dataset_not_found_message": "recbole_tiger.data.atomic_files",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
