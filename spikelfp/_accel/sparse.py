r"""Sparse (event) input for a Linear layer: CSR products and the CSR transpose.

An event batch reaches the first ``Linear`` as a CSR matrix :math:`X` (``rows = T·B``,
``cols = in_features``, see :meth:`spikelfp.events.SparseFrames.csr`). The layer and its LFP
sums then cost :math:`O(\mathrm{nnz}\cdot n_{out})` instead of :math:`O(\mathrm{rows}\cdot
n_{in}\cdot n_{out})`:

* forward :math:`Z = X W^\top + b` (torch's CSR × dense product);
* the ε-rule's weight sum :math:`\sum_{rows} n^\top x = (X^\top n)^\top`, from the CSR form of
  :math:`X^\top` (:func:`csr_transpose`), which torch multiplies fast; the column-major
  product :math:`n^\top X` runs 5× slower on CPU.

>>> x = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 3.0]])
>>> torch.equal(csr_transpose(x.to_sparse_csr()).to_dense(), x.t())
True
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["csr_transpose", "csr_weight_sum"]


def _csr(crow, col, values, shape) -> torch.Tensor:
    with warnings.catch_warnings():  # torch calls its CSR support "beta" on every build
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def csr_transpose(m: torch.Tensor) -> torch.Tensor:
    """The CSR form of ``m``'s transpose (``m`` a 2-d CSR tensor).

    A stable sort of the column indices (on the narrowest integer type that holds them: a
    radix sort for ``int16``) orders the entries by column and, within a column, by row.

    Args:
        m: ``(rows, cols)`` sparse CSR.

    Returns:
        ``(cols, rows)`` sparse CSR with the same values.
    """
    rows, cols = m.shape
    crow, col, values = m.crow_indices(), m.col_indices(), m.values()
    key = col.to(torch.int16 if cols <= 32767 else torch.int32 if cols < 2**31 else torch.int64)
    order = torch.argsort(key, stable=True)
    counts = crow[1:] - crow[:-1]
    row = torch.repeat_interleave(torch.arange(rows, device=col.device), counts)
    tcrow = torch.zeros(cols + 1, dtype=torch.int64, device=col.device)
    torch.cumsum(torch.bincount(col, minlength=cols), 0, out=tcrow[1:])
    return _csr(tcrow, row[order], values[order], (cols, rows))


def csr_weight_sum(x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    r""":math:`\sum_{r} n_r^\top x_r = n^\top X` ``(n_out, n_in)`` for CSR ``x`` ``(rows, n_in)``
    and dense ``n`` ``(rows, n_out)``, computed as :math:`(X^\top n)^\top`.

    >>> x = torch.tensor([[0.0, 2.0], [1.0, 0.0]]); n = torch.tensor([[1.0], [3.0]])
    >>> csr_weight_sum(x.to_sparse_csr(), n).tolist()
    [[3.0, 2.0]]
    """
    if x.shape[0] != n.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but n has {n.shape[0]}")
    xt = csr_transpose(x)
    return (xt @ n.to(xt.dtype)).t()
