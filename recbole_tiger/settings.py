"""One way to read settings: a dataclass per component, built once from RecBole's ``Config``.

``settings_from_config(TIGERSettings, config)`` reads every field of the dataclass from the
config under the field's name; a key that is missing or set to ``~`` (``None``) takes the
field's default. Components then read typed attributes instead of ``config[...]`` lookups
scattered over their code, and a wrong value fails once, when the settings are built,
with the key's name.
"""
import dataclasses

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
    """``config[key]``; ``default`` when the key is missing or None (``~``)."""
    value = lookup(config, key)[1]
    return default if value is None else value


def settings_from_config(cls, config, **computed):
    """An instance of dataclass ``cls`` whose fields come from ``config`` (field name = key),
    defaults where unset; ``computed`` values win (settings derived from others)."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in computed or not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        values[f.name] = setting(config, f.name, default)
    return cls(**values, **computed)


def check_choice(component, key, value, choices):
    if value not in choices:
        raise ValueError(f"{component}: {key}={value!r}, expected one of {tuple(choices)}.")
