"""Rebuild the task cache from a run's ``results.csv``.

``python -m benchmarks.restore benchmarks/results/full/results.csv`` writes
every row of a committed run back to ``results/cache/`` as the record the
runner wrote, so that a later run reuses each task whose record is still
current (the same key, :func:`benchmarks.runner.model_key`) and runs only
the others: after a change to skmoe, only the skmoe models. The cache itself
is not versioned; the committed ``results.csv`` holds every record of the
run, its key included.
"""

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from .runner import CACHE, cache_path

#: Fields of every record that are text, empty when there is nothing to say.
TEXT_FIELDS = ("error", "warnings", "warning_messages")


def _record(row):
    """A CSV row as the runner's record: the fields it had (a cell left
    empty by another record's columns is no field), in plain Python types."""
    record = {}
    for field, value in row.items():
        if isinstance(value, float) and math.isnan(value):
            # the runner writes these for every task, empty when there is
            # nothing to say (which the CSV reads back as a missing value)
            if field in TEXT_FIELDS:
                record[field] = ""
            continue
        record[field] = value.item() if hasattr(value, "item") else value
    return record


def restore(results, cache=CACHE, n_folds=3):
    """Write each row of ``results`` (a results.csv) to the task cache.

    Parameters
    ----------
    results : path
        A ``results.csv`` written by the report.
    cache : path
        The cache folder (the runner's ``--cache``).
    n_folds : int
        The run's ``--folds`` (part of each record's file name).

    Returns
    -------
    int
        The number of records written.
    """
    frame = pd.read_csv(results)
    written = 0
    for row in frame.to_dict("records"):
        record = _record(row)
        path = cache_path(
            cache,
            record["set"],
            record["model"],
            record.get("max_rows"),
            n_folds,
            int(record["repeat"]),
            int(record["fold"]),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
        written += 1
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.restore",
        description="Write a run's results.csv back to the task cache, so that "
        "a later run reuses the records that are still current.",
    )
    parser.add_argument("results", type=Path, help="a results.csv")
    parser.add_argument("--cache", type=Path, default=CACHE, help="cache folder")
    parser.add_argument("--folds", type=int, default=3, help="the run's --folds")
    args = parser.parse_args(argv)
    n = restore(args.results, args.cache, args.folds)
    print(f"{n} records written to {args.cache}")


if __name__ == "__main__":
    main()
