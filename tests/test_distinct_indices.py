"""Both exact draws of distinct indices behind the ``wr`` scheme: Floyd's algorithm and rejection."""

import pytest
import torch

from conftest import shifted_seed
from sgworld.batching import _floyd, _rejection, distinct_indices


def _floyd_rows(rows, n, b, generator):
    return _floyd(torch.rand(rows, b, generator=generator, dtype=torch.float64), n)


@pytest.mark.parametrize("draw", [_floyd_rows, _rejection])
def test_subsets_are_uniform(draw):
    # each of the C(6,3) = 20 subsets has probability 1/20. Chi-square on 200k draws with 19 dof;
    # threshold 70 has false-failure rate ~1e-7.
    rows = 200_000
    idx = draw(rows, 6, 3, torch.Generator().manual_seed(shifted_seed(1)))
    assert all(len(set(r)) == 3 for r in idx[:1000].tolist())
    keys = (torch.zeros(rows, 6, dtype=torch.long).scatter_(1, idx, 1) * (2 ** torch.arange(6))).sum(1)
    counts = torch.bincount(keys, minlength=64)
    counts = counts[counts > 0].double()
    assert counts.numel() == 20
    chi2 = ((counts - rows / 20) ** 2 / (rows / 20)).sum().item()
    assert chi2 < 70, chi2


@pytest.mark.parametrize("n,b", [(200, 10), (10_000, 100), (1797, 32), (40, 40)])
def test_rows_are_distinct_and_reproducible(n, b):
    a = distinct_indices(500, n, b, torch.Generator().manual_seed(shifted_seed(3)))
    assert a.shape == (500, b) and int(a.min()) >= 0 and int(a.max()) < n
    assert bool((a.sort(1).values.diff(dim=1) > 0).all())
    assert torch.equal(a, distinct_indices(500, n, b, torch.Generator().manual_seed(shifted_seed(3))))
