"""Variants on the command line: ``NAME:key=value,key=value`` (values parsed as YAML;
``config_files=a.yaml+b.yaml`` adds property files), as the throughput, diagnosis and
taxonomy-check tools take them."""
import yaml


def parse_variant(spec):
    """'name:k=v,k=v' -> (name, {k: yaml(v)}, [config files])"""
    name, _, rest = spec.partition(":")
    overrides, files = {}, []
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"throughput: variant {spec!r}: {item!r} is not key=value")
        if key == "config_files":
            files += value.split("+")
        else:
            overrides[key] = yaml.safe_load(value)
    return name, overrides, files
