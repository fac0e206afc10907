"""ESS where it is undefined: draws with no variance."""

import numpy as np

from sgworld.diagnostics import ess


def test_ess_of_constant_draws_is_nan():
    """A parameter that never moves has no autocorrelation to speak of: NaN, not a number that looks like
    an ESS (it used to be m n log10(m n) = 1040 for 400 draws)."""
    x = np.full((1, 400, 1), 2.5)
    assert np.isnan(ess(x)).all()
    rng = np.random.default_rng(0)
    mixed = np.concatenate([np.full((4, 100, 1), -1.0), rng.normal(size=(4, 100, 1))], axis=2)
    out = ess(mixed)
    assert np.isnan(out[0]) and 200 < out[1] < 800  # i.i.d. draws: ESS about 400


def test_ess_of_chains_stuck_at_different_values_is_about_half_the_chains():
    x = np.repeat(np.arange(4.0)[:, None, None], 100, axis=1)
    np.testing.assert_allclose(ess(x), 4 * 100 / (2 * 100 - 1))
