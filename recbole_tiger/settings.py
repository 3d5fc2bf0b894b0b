"""One way to read settings: a frozen dataclass per component, built once from RecBole's ``Config``.

``read_settings(cls, config, source=...)`` reads every field of the dataclass from the config under
the field's name. Defaults live only in the property files (``source`` names the one that sets
them): a missing key is an error that names the key and that file, and ``~`` (None) is accepted
only for ``Optional`` fields, where None means something. Values are converted to the field's
type once, so components read typed attributes instead of ``config[...]`` lookups scattered over
their code, and a wrong value fails when the settings are built, with the key's name.
"""
import dataclasses
import typing

NONE_SPELLINGS = ("~", "none", "null")  # how a command line spells None


def lookup(config, key):
    """(present, value) of ``key`` in a Config or dict; ``~``/``none``/``null`` strings are None."""
    try:
        present = key in config
        value = config[key]
    except (KeyError, TypeError):
        return False, None
    if isinstance(value, str) and value.strip().lower() in NONE_SPELLINGS:
        value = None
    return present, value


def setting(config, key, default=None):
    """``config[key]``; ``default`` when the key is missing or None (``~``). For RecBole's own keys
    and a few optional ones read outside any component (e.g. ``field_separator``)."""
    value = lookup(config, key)[1]
    return default if value is None else value


def is_optional(annotation):
    return type(None) in typing.get_args(annotation)


def typed(annotation, value):
    """``value`` as the field's type: YAML and the command line give ``1`` for a float, strings..."""
    if value is None:
        return None
    kind = next((a for a in typing.get_args(annotation) if a is not type(None)), annotation)
    if kind in (int, float):
        return kind(value)
    if kind is bool:
        if isinstance(value, str):
            if value.strip().lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"expected true or false, got {value!r}")
            return value.strip().lower() in ("true", "1")
        return bool(value)
    return value


def read_settings(cls, config, *, component, source, sources=None, **computed):
    """An instance of the frozen dataclass ``cls`` whose fields come from ``config`` (field name =
    key). ``source``: the property file that sets the keys (``sources``: {key: file} for keys set
    elsewhere), named in errors. ``computed`` values are taken as given (settings derived from
    others)."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in computed:
            continue
        present, value = lookup(config, f.name)
        where = (sources or {}).get(f.name, source)
        if not present:
            raise ValueError(f"{component}: the config has no {f.name!r}; its default is set in {where}. "
                             "Add the key, or build the config with recbole_tiger.config.Config, which loads that file.")
        if value is None and not is_optional(f.type):
            raise ValueError(f"{component}: {f.name}=~ (None); it needs a value ({where} documents it).")
        try:
            values[f.name] = typed(f.type, value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{component}: {f.name}={value!r}: {err}") from None
    return cls(**values, **computed)


def check_choice(component, key, value, choices):
    if value not in choices:
        raise ValueError(f"{component}: {key}={value!r}, expected one of {tuple(choices)}.")
