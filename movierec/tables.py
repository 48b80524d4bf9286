"""Tables indexed by contiguous id (row 0 = padding), grown when movies join the catalogue
while a bundle is served."""

from __future__ import annotations

import numpy as np


def grown(table: np.ndarray, rows: np.ndarray | int, fill: str = "zero") -> np.ndarray:
    """`table` with rows appended: the given ones, or `rows` many zero rows (`fill="zero"`) or
    rows equal to the mean of the real rows (`fill="mean"`, a movie no different from the rest)."""
    if isinstance(rows, (int, np.integer)):
        template = table[1:].mean(axis=0) if fill == "mean" and len(table) > 1 else np.zeros(table.shape[1:])
        rows = np.broadcast_to(np.asarray(template, dtype=table.dtype), (int(rows), *table.shape[1:]))
    return np.concatenate([table, np.asarray(rows, dtype=table.dtype)])
