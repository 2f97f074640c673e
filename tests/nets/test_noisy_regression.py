"""The noisy-regression benchmark's finding at a small fixed-seed size: an HL-Gauss head fits the
noise-free function better than MSE from heavy-tailed labels, and worse from clean ones (its
resolution floor). See ``benchmarks/noisy_regression.py`` for the full study."""

import numpy as np

from benchmarks import noisy_regression


def test_hl_gauss_beats_mse_on_heavy_tailed_labels_not_on_clean_ones():
    data = noisy_regression.run(
        ("heavy", "clean"), ("mse", "hl_gauss"), steps=3000, seeds=3, evals=1, seed=0
    )
    final = lambda noise, head: noisy_regression.final(data, noise, head)
    # Heavy-tailed noise (0.3 * Student-t, 2 dof): every seed, by a clear margin on average.
    assert np.all(final("heavy", "hl_gauss") < final("heavy", "mse"))
    assert final("heavy", "hl_gauss").mean() < 0.85 * final("heavy", "mse").mean()
    # Clean labels: MSE fits closer; the classification head is limited by its bins.
    assert final("clean", "mse").mean() < final("clean", "hl_gauss").mean()
