"""Results files shared by the benchmark, throughput, diagnosis and taxonomy check: rows as
CSV merged by key, markdown grids, learning curves as JSON, and the stamp every row carries
(commit, date, machine)."""
import csv
import datetime
import json
import os
import platform
import subprocess

from recbole_tiger.atomic_io import open_atomic, write_text_atomic

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def git_commit():
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        # "+dirty" = the code differs from the commit; results tables and docs being rewritten
        # while runs go on do not count
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results",
                                ":!*.md"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_description(device):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    # where bf16 arithmetic is native: precision: auto and every bf16 timing depend on it
    from recbole_tiger.precision import hardware_bf16

    where = str(device)
    if where.startswith("cuda"):
        import torch

        where = f"{where} ({torch.cuda.get_device_name(torch.device(where))})"
    return f"{os.cpu_count()} cores ({cpu}{', bf16' if hardware_bf16('cpu') else ', no bf16'}), {where}"


def utc_date():
    """The date stamp of every results row."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def markdown_grid(columns, rows):
    """A markdown table of ``rows`` (dicts) under ``columns``, as lines; missing cells empty."""
    return (["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows])


def merge_curves(curves_path, new_curves):
    """Add ``new_curves`` (name -> list of points) to the json file at ``curves_path``; returns all."""
    curves = {}
    if os.path.isfile(curves_path):
        with open(curves_path) as f:
            curves = json.load(f)
    curves.update(new_curves)
    write_text_atomic(curves_path, json.dumps(curves, indent=1))
    return curves



# ----------------------------------------------------------------------------- rows
def read_rows(csv_path):
    if not os.path.isfile(csv_path):
        return []
    with open(csv_path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def merge_rows(old_rows, new_rows, key_columns):
    """New rows replace old rows with the same key (the values of ``key_columns``); the rest are kept."""
    def key(row):   # 0 and 0.0 are values ("0.0" once read back from the csv), only None is missing
        return tuple("" if row.get(k) is None else str(row.get(k)) for k in key_columns)

    merged = {key(r): r for r in old_rows}
    merged.update({key(r): r for r in new_rows})
    return list(merged.values())


def write_csv(csv_path, rows):
    columns = list(dict.fromkeys(c for r in rows for c in r))
    with open_atomic(csv_path) as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_table(base, title, columns, new_rows, key_columns):
    """Merge ``new_rows`` into ``<base>.csv`` (by ``key_columns``) and redraw ``<base>.md`` under
    ``title``; returns all rows."""
    os.makedirs(os.path.dirname(base) or ".", exist_ok=True)
    rows = merge_rows(read_rows(base + ".csv"), new_rows, key_columns)
    write_csv(base + ".csv", rows)
    write_text_atomic(base + ".md", "\n".join([title, ""] + markdown_grid(columns, rows)) + "\n")
    print(f"results in {base}.{{md,csv}}")
    return rows
