"""Learning-rate schedules at known steps (warmup 10, 100 steps, lr 1e-3, min 1e-4)."""
import math

import pytest

from gptlab.training.schedules import lr_at

LR, MIN = 1e-3, 1e-4


def at(name, step, **kw):
    return lr_at(step, name, LR, 100, 10, min_lr_ratio=kw.pop("min_lr_ratio", 0.1), **kw)


@pytest.mark.parametrize("name", ["cosine", "linear", "constant", "wsd"])
def test_warmup_is_linear_and_starts_above_zero(name):
    assert at(name, 0) == pytest.approx(LR / 10)
    assert at(name, 4) == pytest.approx(LR / 2)
    assert at(name, 9) == pytest.approx(LR)


def test_cosine():
    assert at("cosine", 10) == pytest.approx(LR)
    assert at("cosine", 55) == pytest.approx(MIN + (LR - MIN) / 2)  # halfway through the decay
    assert at("cosine", 32.5) == pytest.approx(MIN + 0.5 * (LR - MIN) * (1 + math.cos(math.pi / 4)))
    assert at("cosine", 100) == pytest.approx(MIN)
    assert at("cosine", 500) == pytest.approx(MIN)  # past the end it stays at min_lr


def test_linear():
    assert at("linear", 55) == pytest.approx((LR + MIN) / 2)
    assert at("linear", 100) == pytest.approx(MIN)


def test_constant():
    assert at("constant", 10) == at("constant", 99) == LR


def test_wsd_is_flat_then_decays_over_the_last_fraction():
    assert at("wsd", 79, decay_fraction=0.2) == LR
    assert at("wsd", 80, decay_fraction=0.2) == LR
    assert at("wsd", 90, decay_fraction=0.2) == pytest.approx((LR + MIN) / 2)
    assert at("wsd", 100, decay_fraction=0.2) == pytest.approx(MIN)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="cosine, linear, constant, wsd"):
        at("exp", 50)
