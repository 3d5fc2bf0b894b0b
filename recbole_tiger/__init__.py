"""recbole-tiger: TIGER (generative retrieval with semantic IDs) as a RecBole plugin."""
from recbole_tiger import compat  # noqa: F401  (applies RecBole fixes on import)

__version__ = "0.1.0"
