"""Helpers for writing RecBole atomic files (``.inter`` / ``.item``) that RecBole can always read.

RecBole reads atomic files with ``pandas.read_csv(sep='\\t', engine='python')`` and the default
CSV quoting, so a few characters inside free text break a file:

* tab / newline / carriage return split fields or rows,
* NUL makes the csv module raise "line contains NUL",
* a field that *starts* with ``"`` is parsed as a quoted CSV field: an unbalanced one swallows
  the following fields and rows, and ``"Foo" bar`` is a parser error. A ``"`` elsewhere in the
  field is read literally.

:func:`clean_field` removes these hazards; the writers use
:func:`recbole_tiger.atomic_io.open_atomic`, so a crash never leaves a half-written file behind.
"""

import os


def clean_field(value):
    """Return ``value`` as a single-line string RecBole's reader gives back unchanged.

    Whitespace runs (including tabs and newlines) become one space and the ends are stripped.
    If the result starts with ``"`` every ``"`` in it is written as ``''`` (two apostrophes,
    same meaning in titles such as ``12'' Iron``), because a leading ``"`` turns on CSV quoting.
    """
    if value is None:
        return ""
    text = " ".join(str(value).replace("\x00", "").split())
    if text.startswith('"'):
        text = text.replace('"', "''")
    return text


def field_needs_quote_fix(value):
    """True if :func:`clean_field` has to rewrite double quotes in ``value`` (for reporting)."""
    if value is None:
        return False
    return " ".join(str(value).replace("\x00", "").split()).startswith('"')


def atomic_file_path(dataset_name, data_path, suffix="inter"):
    """``<data_path>/<dataset_name>/<dataset_name>.<suffix>``, the place RecBole looks for it.

    ``data_path`` may also already be the dataset directory (RecBole's ``Config`` rewrites
    ``config['data_path']`` to ``<data_path>/<dataset>``), recognised by its base name.
    """
    return os.path.join(dataset_dir(dataset_name, data_path), f"{dataset_name}.{suffix}")


def dataset_dir(dataset_name, data_path):
    """The directory that holds ``dataset_name``'s atomic files (see :func:`atomic_file_path`)."""
    data_path = os.path.normpath(os.path.abspath(data_path))
    if os.path.basename(data_path) == dataset_name:
        return data_path
    return os.path.join(data_path, dataset_name)


def dataset_not_found_message(dataset_name, data_path):
    """The message to show when a dataset has no atomic files and cannot be prepared."""
    inter = atomic_file_path(dataset_name, data_path, "inter")
    return (
        f"dataset '{dataset_name}' not found at {inter}; put RecBole atomic files there "
        f"({dataset_name}.inter, optionally {dataset_name}.item) or use an Amazon Review 2014 "
        f"dataset name such as amazon-beauty, amazon-sports-and-outdoors or amazon-toys-and-games, "
        f"which is prepared automatically (python -m recbole_tiger.data.amazon --help)."
    )
