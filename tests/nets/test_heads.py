"""Value heads against plain references: target means, clipping, losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from robotrl.nets import ValueHeadConfig, default_value_range, make_value_head

V_MIN, V_MAX, BINS = -10.0, 30.0, 40  # bin width 1


def _head(kind, **kw):
    return make_value_head(
        ValueHeadConfig(kind=kind, num_bins=BINS, v_min=V_MIN, v_max=V_MAX, **kw)
    )


@pytest.mark.parametrize("kind", ["hl_gauss", "two_hot"])
def test_target_mean_within_one_percent_of_a_bin(kind):
    head = _head(kind)
    width = (V_MAX - V_MIN) / BINS
    # Inside the range (HL-Gauss: away from the edges by 3 sigma, where truncation biases it).
    margin = 3 * 0.75 * width if kind == "hl_gauss" else width / 2
    y = jnp.linspace(V_MIN + margin, V_MAX - margin, 997)
    probs = head.target_probs(y)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    mean = (probs * head.support[None]).sum(-1)
    assert float(jnp.abs(mean - y).max()) < 0.01 * width


def test_hl_gauss_matches_plain_reference():
    head = _head("hl_gauss")
    edges = np.linspace(V_MIN, V_MAX, BINS + 1)
    sigma = 0.75 * (V_MAX - V_MIN) / BINS
    for y in (-7.3, 0.0, 12.25, 29.0):
        cdf = norm.cdf((edges - y) / sigma)
        ref = np.diff(cdf) / (cdf[-1] - cdf[0])
        np.testing.assert_allclose(head.target_probs(jnp.float32(y)), ref, atol=1e-5)


def test_two_hot_puts_mass_on_two_neighbours():
    head = _head("two_hot")
    probs = np.asarray(head.target_probs(jnp.float32(3.25)))  # centres ... 2.5, 3.5 ...
    nz = np.flatnonzero(probs > 1e-7)
    assert len(nz) == 2 and nz[1] == nz[0] + 1
    np.testing.assert_allclose(probs[nz], [0.25, 0.75], atol=1e-5)


@pytest.mark.parametrize("kind", ["hl_gauss", "two_hot"])
def test_targets_outside_the_range_are_clipped_to_the_edges(kind):
    head = _head(kind)
    np.testing.assert_allclose(
        head.target_probs(jnp.float32(1e6)), head.target_probs(jnp.float32(V_MAX)), atol=1e-6
    )
    np.testing.assert_allclose(
        head.target_probs(jnp.float32(-1e6)), head.target_probs(jnp.float32(V_MIN)), atol=1e-6
    )
    # The loss does not vanish out of range: it still pulls the value toward the edge.
    logits = jnp.zeros(BINS)
    grad = jax.grad(lambda lg: head.loss(lg, jnp.float32(1e6)))(logits)
    assert float(jnp.abs(grad).sum()) > 0.1
    assert np.isfinite(float(head.loss(logits, jnp.float32(1e6))))


@pytest.mark.parametrize("kind", ["hl_gauss", "two_hot"])
def test_minimising_the_loss_recovers_the_target(kind):
    head = _head(kind)
    logits = jnp.zeros(BINS)
    step = jax.jit(lambda lg: lg - 5.0 * jax.grad(lambda q: head.loss(q, jnp.float32(7.4)))(lg))
    for _ in range(500):
        logits = step(logits)
    assert abs(float(head.value(logits)) - 7.4) < 0.05


def test_mse_head_is_half_squared_error():
    head = make_value_head(ValueHeadConfig(kind="mse"))
    out = jnp.array([[1.5], [-2.0]])
    np.testing.assert_allclose(head.value(out), [1.5, -2.0])
    np.testing.assert_allclose(head.loss(out, jnp.array([0.5, 0.0])), [0.5, 2.0])


def test_default_range_from_reward_range_and_gamma():
    assert default_value_range((-16.0, 0.0), 0.99) == pytest.approx((-1600.0, 0.0))
    assert default_value_range((0.0, 1.0), 0.9) == pytest.approx((0.0, 10.0))
    head = make_value_head(ValueHeadConfig(kind="two_hot", num_bins=11), (-10.0, 0.0))
    assert float(head.support[0]) < -9 and float(head.support[-1]) > -1


def test_bad_head_configs_fail_clearly():
    with pytest.raises(ValueError, match="kind"):
        ValueHeadConfig(kind="quantile")
    with pytest.raises(ValueError, match="value range"):
        make_value_head(ValueHeadConfig(kind="hl_gauss"))
    with pytest.raises(ValueError, match="empty"):
        make_value_head(ValueHeadConfig(kind="hl_gauss", v_min=1.0, v_max=0.0))
