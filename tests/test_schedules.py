"""Learning-rate schedules at known steps (warmup 10, 100 steps, lr 1e-3, min 1e-4), built from the conf/sched/
presets as a run builds them, and checked by hand.

    .venv/bin/python -m pytest tests/test_schedules.py -q
"""
import math

import pytest

from gptlab.config import ConfigError
from gptlab.config.presets import preset
from gptlab.optim.schedule import Schedule

LR, MIN = 1e-3, 1e-4


def at(name, step, **kw):
    """The rate of the conf/sched/<name>.yaml preset at `step` of a 100-step run, warmup 10."""
    spec = {**preset("sched", name), "warmup_steps": 10, **kw}
    spec.setdefault("min_lr_ratio", 0.1)
    return LR * Schedule.of(spec).factor(step, 100)


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
    assert at("wsd", 79, min_lr_ratio=0.1) == LR
    assert at("wsd", 80, min_lr_ratio=0.1) == LR
    assert at("wsd", 90, min_lr_ratio=0.1) == pytest.approx((LR + MIN) / 2)
    assert at("wsd", 100, min_lr_ratio=0.1) == pytest.approx(MIN)


def test_a_new_shape_is_one_file_of_existing_pieces():
    """1-sqrt over the whole run, the shape no preset has: one spec, no code."""
    s = Schedule.of({"_target_": "gptlab.optim.schedule.Schedule", "warmup_steps": 10, "decay": "1-sqrt",
                     "min_lr_ratio": 0.0})
    assert s.factor(55, 100) == pytest.approx(1 - math.sqrt(0.5))


@pytest.mark.parametrize("spec,message", [
    ({"decay": "exp"}, "sched.decay must be one of cosine, linear, 1-sqrt, none, got 'exp'"),
    ({"warmup_steps": -1}, "sched.warmup_steps must be an integer >= 0, got -1"),
    ({"decay_fraction": 0}, "sched.decay_fraction must be in (0, 1], got 0"),
    ({"speed": 2}, "sched.speed is not a key; allowed: decay, decay_fraction, min_lr_ratio, warmup_steps")])
def test_bad_schedules_are_refused_naming_the_key(spec, message):
    with pytest.raises(ConfigError) as e:
        Schedule.of(spec)
    assert str(e.value) == message
