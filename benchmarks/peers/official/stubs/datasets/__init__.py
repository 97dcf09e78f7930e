"""Stand-in for ``datasets.load_dataset`` offline: GRAIN's molecules come from a local CSV (columns smiles, target).

GRAIN calls ``load_dataset("zpn/tox21_srp53")["train"].shuffle(seed).with_format(...)`` and reads the ``smiles``
and ``target`` fields of each row; this returns the rows of ``$GRAIN_SMILES_CSV`` in that shape.
"""

from __future__ import annotations

import csv
import os
import random


class _Rows(list):
    def shuffle(self, seed=None):
        rows = list(self)
        random.Random(seed).shuffle(rows)
        return _Rows(rows)

    def with_format(self, *_args, **_kwargs):
        return self

    def __getitem__(self, key):
        return self if key == "train" else list.__getitem__(self, key)


def load_dataset(_name, *_args, **_kwargs):
    with open(os.environ["GRAIN_SMILES_CSV"], newline="") as f:
        return _Rows({"smiles": row["smiles"], "target": int(row["target"])} for row in csv.DictReader(f))
