"""Accounting of a pruned network: parameters and kept weights per prunable weight."""

from __future__ import annotations

import dataclasses

import numpy as np

from tfprune.targets import is_wrapped, prunable_weights

__all__ = ["Row", "Report", "report"]


@dataclasses.dataclass(frozen=True)
class Row:
    """One prunable weight, or the total.

    Attributes:
        name: The weight's path (``"TOTAL"`` for the total row).
        kind: Kind of weight (see :mod:`tfprune.kinds`); empty for the total.
        shape: Weight shape (empty for the total).
        params: Number of entries.
        kept: Entries kept: the mask's ones in a wrapped model, the non-zero entries otherwise.
        macs: Multiply-accumulates; ``None`` until MAC counting is available for the layer.
    """

    name: str
    kind: str
    shape: tuple
    params: int
    kept: int
    macs: int | None = None

    @property
    def density(self):
        """Kept fraction."""
        return self.kept / self.params if self.params else 0.0


@dataclasses.dataclass(frozen=True)
class Report:
    """Per-weight rows, their total, and the parameters of the model that are not pruned.

    Attributes:
        rows: One :class:`Row` per prunable weight.
        total: Sums over ``rows``.
        other_params: Parameters of the model outside ``rows`` (biases, normalisation, skipped
            layers), always dense.
    """

    rows: list
    total: Row
    other_params: int

    def __str__(self):
        show_macs = any(r.macs is not None for r in self.rows)
        head = ["weight", "kind", "shape", "params", "kept", "density"] + (["MACs"] if show_macs else [])
        lines = [head]
        for r in self.rows + [self.total]:
            cells = [r.name, r.kind, "x".join(map(str, r.shape)), f"{r.params:,}", f"{r.kept:,}", f"{r.density:.4f}"]
            if show_macs:
                cells.append("" if r.macs is None else f"{r.macs:,}")
            lines.append(cells)
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        text = [
            "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
            for line in lines
        ]
        text.insert(1, "-" * len(text[0]))
        text.insert(len(text) - 1, "-" * len(text[0]))
        text.append(f"other parameters (not pruned): {self.other_params:,}")
        return "\n".join(text)


def report(model, verbose=1):
    """Counts parameters and kept weights of every prunable weight of ``model``.

    Args:
        model: A wrapped model (kept = mask ones) or a plain one such as a stripped model
            (kept = non-zero entries of the prunable weights).
        verbose: 1 prints the table, 0 only returns it.

    Returns:
        A :class:`Report`; ``str(report)`` is the printed table.

    Example:
        >>> r = tfprune.report(pruned)
        >>> r.total.density
    """
    targets = prunable_weights(model)
    wrapped = is_wrapped(model)
    rows = []
    for t in targets:
        values = t.mask.numpy() if wrapped else t.variable.numpy()
        rows.append(Row(t.name, t.kind, t.shape, t.size, int(np.count_nonzero(values))))
    total = Row("TOTAL", "", (), sum(r.params for r in rows), sum(r.kept for r in rows))
    pruned_ids = {id(t.variable) for t in targets}
    masks = {id(t.mask) for t in targets if t.mask is not None}
    other = sum(
        int(np.prod(v.shape)) for v in model.weights if id(v) not in pruned_ids and id(v) not in masks
    )
    result = Report(rows, total, other)
    if verbose:
        print(result)
    return result
