"""Variants on the command line: ``NAME:key=value,key=value`` (values parsed as YAML, so a
list is ``key=[a,b]``; ``config_files=a.yaml+b.yaml`` adds property files), as the throughput,
diagnosis and taxonomy-check tools take them."""
import yaml


def parse_variant(spec):
    """'name:k=v,k=v' -> (name, {k: yaml(v)}, [config files])"""
    name, _, rest = spec.partition(":")
    overrides, files = {}, []
    for item in filter(None, split_top_level(rest, spec)):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"variant {spec!r}: {item!r} is not key=value")
        if key == "config_files":
            files += value.split("+")
        else:
            overrides[key] = yaml.safe_load(value)
    return name, overrides, files


def split_top_level(text, spec):
    """Split at the commas outside [...] and {...}, so YAML lists and maps stay one value."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth < 0:
                raise SystemExit(f"variant {spec!r}: unbalanced {char!r}")
        elif char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise SystemExit(f"variant {spec!r}: unclosed '[' or '{{'")
    items.append(text[start:])
    return items
