"""The run's clocks (gptlab/training/callbacks.py Clocks): training time does not move when validation does, the
four clocks add up to the invocation's time, and time to a target is read on the training clock.

    .venv/bin/python -m pytest tests/test_clocks.py -q
"""
import csv
import json
import time

import pytest
from helpers import train_here

from gptlab.training.callbacks import Clocks, now_s, process_start

# Validation made expensive against a step (8x the tokens of a step, scored every step in one run and every 10th in
# the other): if validation leaked into the training clock, the first run's train_s would be about 5x the second's.
STEPS, VAL = 30, ["data.val_tokens=8192", "trainer.log_every_n_steps=1"]
TOLERANCE = 1.5  # train_s of the two runs within a factor of 1.5: scheduling noise on a shared 2-core machine


@pytest.fixture(scope="module")
def two_runs(tiny_data, tmp_path_factory):
    out = {}
    for every in (1, 10):
        run_dir = tmp_path_factory.mktemp("clocks") / f"every{every}"
        began = now_s()
        train_here([*VAL, f"trainer.max_steps={STEPS}", f"trainer.eval_interval={every}"], tiny_data, run_dir)
        out[every] = (json.loads((run_dir / "summary.json").read_text()), now_s() - began, run_dir)
    return out


@pytest.mark.slow  # two tiny runs in this process, about 30 s
def test_training_time_does_not_count_validation(two_runs):
    (every_step, _, _), (every_ten, _, _) = two_runs[1], two_runs[10]
    assert every_step["val_s"] > 4 * every_ten["val_s"]  # 31 validations against 4
    ratio = every_step["train_s"] / every_ten["train_s"]
    assert 1 / TOLERANCE < ratio < TOLERANCE, (every_step, every_ten)


@pytest.mark.slow  # two tiny runs in this process, about 30 s
def test_the_clocks_add_up_to_the_invocation_and_each_counts_something(two_runs):
    for summary, elapsed, _ in two_runs.values():
        parts = [summary[k] for k in Clocks.KINDS]
        assert all(p > 0 for p in parts), summary
        # start-up begins before this test's timer (the process's start, or the previous fit's end): the others
        # were all measured inside it
        assert summary["train_s"] + summary["val_s"] + summary["ckpt_s"] <= elapsed


@pytest.mark.slow  # two tiny runs in this process, about 30 s
def test_val_rows_carry_the_clocks_and_the_target_reads_the_training_clock(two_runs, tmp_path):
    from gptlab.run.records import time_to
    _, _, run_dir = two_runs[10]
    rows = [{k: float(v) for k, v in r.items() if v} for r in csv.DictReader((run_dir / "metrics.csv").open())]
    val = [r for r in rows if "val/loss" in r]
    assert val[0]["tokens"] == 0 and val[1]["tokens"] == 10 * val[1]["tokens"] / 10
    train = [r["train_s"] for r in val]
    assert train == sorted(train) and train[0] < 0.05  # the validation before training: no training yet
    target = (val[1]["val/loss"] + val[2]["val/loss"]) / 2
    hit = time_to(val, target)
    assert hit["train_s"] == pytest.approx((val[1]["train_s"] + val[2]["train_s"]) / 2, rel=0.02)


def test_a_clock_restored_from_a_checkpoint_adds_this_invocations_time():
    c = Clocks()
    c.load_state_dict({"clocks": {"train_s": 10.0, "val_s": 2.0, "ckpt_s": 1.0, "startup_s": 3.0}})
    c._switch("train_s")
    time.sleep(0.05)
    got = c.read()
    assert got["train_s"] >= 10.05 and got["val_s"] == 2.0 and got["ckpt_s"] == 1.0 and got["startup_s"] > 3.0


def test_the_process_start_is_read_from_proc():
    start = process_start()
    assert start is not None and 0 < now_s() - start < 24 * 3600  # this test process started before now
