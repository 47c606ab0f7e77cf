"""Cooldown branches (Hägele et al. 2024): kept checkpoints, the branch's schedule and config, a branch that
continues exactly where its run was, branches run when a run ends, and the L(D) and L(N, D) fits on them.

    .venv/bin/python -m pytest tests/test_cooldown.py -q
"""
import csv
import hashlib
import json
import math

import numpy as np
import pytest
import yaml
from helpers import composed, run_entry, run_train
from omegaconf import OmegaConf
from test_sweep import wandb_records

from gptlab.analysis.fits import fit_surface
from gptlab.config import ConfigError, run_config
from gptlab.config.study import seed_list
from gptlab.eval import ENTRY as EVAL
from gptlab.optim.schedule import Schedule
from gptlab.report import ENTRY as REPORT
from gptlab.run.branch import branch_config, check_branches, cooldown_steps
from gptlab.run.curves import FitError


def test_one_minus_sqrt_cooldown_by_hand():
    # 100 steps, decay over the last 20 from 1e-3 to 0: at step 85 the decay is 5/20 done, sqrt(0.25) = 0.5
    at = lambda s, shape: 1e-3 * Schedule(10, shape, 0.2, 0.0).factor(s, 100)  # noqa: E731
    assert at(80, "1-sqrt") == at(80, "linear") == pytest.approx(1e-3)  # the decay starts at the peak
    assert at(85, "1-sqrt") == pytest.approx(1e-3 * (1 - 0.5))
    assert at(85, "linear") == pytest.approx(1e-3 * (1 - 0.25))
    assert at(100, "1-sqrt") == pytest.approx(0.0)


def test_branch_config_decays_from_the_kept_step():
    saved = composed("sched=constant", "trainer.max_steps=400", "sched.warmup_steps=30")
    OmegaConf.update(saved, "paths.run_dir", "runs/src")
    OmegaConf.update(saved, "callbacks.last.dirpath", "runs/src/checkpoints")
    cool = {"fraction": 0.2, "shape": "1-sqrt", "min_lr_ratio": 0.0}
    out = branch_config(saved, "runs/src/checkpoints/step-000200.ckpt", 200, cool, "runs/b")
    assert cooldown_steps(200, 0.2) == 50  # 50 of the branch's 250 steps decay: 20%
    s = Schedule.of(out.sched)
    assert out.trainer.max_steps == 250 and s.decay == "1-sqrt" and s.decay_start(250) == 200
    assert out.branch == "runs/src/checkpoints/step-000200.ckpt" and out.paths.run_dir == "runs/b"
    assert out.callbacks.last.dirpath == "runs/b/checkpoints"  # never written into the source's folder
    run = run_config(out)
    source = Schedule.of(saved.sched)
    assert source.factor(199, 400) == Schedule.of(run.sched).factor(200, 250) == 1.0


@pytest.mark.parametrize("args, message", [
    (("sched=cosine",), "branch=x.ckpt: the run's rate (cosine decay from step 30) has already decayed at step 200"),
    (("sched=constant", "sched.warmup_steps=300"), "branch=x.ckpt: step 200 is inside the run's warmup (300 steps)"),
])
def test_branch_from_a_decayed_or_warming_rate_is_refused(args, message):
    saved = composed(*args, "trainer.max_steps=400")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        branch_config(saved, "x.ckpt", 200, {"fraction": 0.2, "shape": "linear", "min_lr_ratio": 0.0}, "b")


def test_keep_tokens_become_eval_steps():
    cfg = composed("trainer.max_steps=400", "trainer.eval_interval=50", "trainer.keep_tokens=[12.8K,30000,102400]",
                   "data.batch_size=4", "model=tiny")  # 256 tokens a step: steps 50, 117 -> 100, 400
    assert run_config(cfg).derived.keep_steps == [50, 100, 400]
    with pytest.raises(ConfigError, match="trainer.keep_tokens: 14K falls on eval step 50, as an earlier budget does"):
        run_config(composed("trainer.max_steps=400", "trainer.eval_interval=50", "trainer.keep_tokens=[12.8K,14K]",
                            "data.batch_size=4", "model=tiny"))  # steps 50 and 55 -> 50: two budgets would be one
    with pytest.raises(ConfigError, match="past trainer.max_steps=400"):
        run_config(composed("trainer.max_steps=400", "trainer.eval_interval=50", "trainer.keep_tokens=[1M]",
                            "data.batch_size=4", "model=tiny"))


@pytest.mark.parametrize("args, message", [
    (["cooldown.shape=cosine"], "cooldown.shape must be one of linear, 1-sqrt, got 'cosine'"),
    (["cooldown.fraction=1"], "cooldown.fraction must be in (0, 1)"),
    (["cooldown.branches=true"], "cooldown.branches=true needs trainer.keep_tokens"),
    (["trainer.keep_tokens=[lots]"], "trainer.keep_tokens: 'lots' is not a token count"),
    (["study.seeds=0"], "study.seeds must be a count >= 1"),
    (["cooldown.branches=true", "trainer.keep_tokens=[1000]", "sched=cosine", "trainer.eval_interval=1",
      "sched.warmup_steps=2"], "trainer.keep_tokens: the run's rate (cosine decay from step 2) has already decayed at "
                               "step 4"),
])
def test_bad_study_and_cooldown_settings_are_refused(args, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_branches(run_config(composed(*args)))  # what compose_run checks


def test_seeds_resolver():
    assert seed_list(3) == "1,2,3" and seed_list(1) == "1"
    with pytest.raises(ConfigError, match="study.seeds must be a count >= 1"):
        seed_list(0)


def test_surface_fit_recovers_its_parameters_within_its_interval():
    """Chinchilla's form on 3 sizes x 5 budgets with 0.003 nats of noise: E, alpha and beta within 2.5 s.e."""
    rng = np.random.default_rng(7)
    n = np.repeat([1.6e6, 3.4e6, 7.2e6], 5)
    d = np.tile([1.28e4, 2.56e4, 5.12e4, 7.68e4, 1.024e5], 3)
    truth = dict(E=3.0, A=900.0, alpha=0.45, B=250.0, beta=0.40)
    y = truth["E"] + truth["A"] * n ** -truth["alpha"] + truth["B"] * d ** -truth["beta"] + rng.normal(0, 0.003, 15)
    f = fit_surface(n, d, y)
    for key in ("E", "alpha", "beta"):
        assert abs(getattr(f, key) - truth[key]) < 2.5 * getattr(f, f"{key}_err"), key
    loss, low, high = f.predict(1.24e8, 1.024e5)
    exact = truth["E"] + truth["A"] * 1.24e8 ** -truth["alpha"] + truth["B"] * 1.024e5 ** -truth["beta"]
    assert low < loss < high and abs(loss - exact) < 3 * (high - low)
    with pytest.raises(FitError, match="needs at least 7 points"):
        fit_surface(n[:5], d[:5], y[:5])  # one size


@pytest.mark.parametrize("seed", range(5))
def test_budget_fit_recovers_E_within_its_interval(seed):
    """L(D) = E + B D^-beta on 5 cooldown budgets (steps 50 ... 400 of 256 tokens), 0.004 nats of noise: the 95%
    interval of E (t on 2 dof) holds the true E = 4.8."""
    from scipy.stats import t

    from gptlab.run.curves import fit_power_law
    d = np.array([50, 100, 200, 300, 400]) * 256.0
    y = 4.8 + 60 * d ** -0.35 + np.random.default_rng(seed).normal(0, 0.004, 5)
    f = fit_power_law(d, y)
    assert abs(f.c - 4.8) < t.ppf(0.975, f.n - 3) * f.c_err


def val_rows(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def by_tokens(rows, key):
    return {int(float(r["tokens"])): float(r[key]) for r in rows if r.get(key)}


@pytest.mark.slow
def test_branch_continues_exactly_where_the_run_was(tiny_data, tmp_path, capsys):
    """A branch from step 15 of a constant-rate run with dropout: its first two losses are the run's own (same weights,
    batch, dropout masks, and the optimizer state that steps at the same rate), the third differs (the rate fell)."""
    src, branch = tmp_path / "src", tmp_path / "branch"
    run_train(["sched=constant", "trainer.max_steps=30", "model.dropout=0.1", "trainer.keep_tokens=[1920]",
               f"hydra.run.dir={src}"], tiny_data, tmp_path)  # 128 tokens a step: step 15
    kept = src / "checkpoints" / "step-000015.ckpt"
    last = hashlib.sha256((src / "checkpoints" / "last.ckpt").read_bytes()).hexdigest()
    run_train([f"branch={kept}", f"hydra.run.dir={branch}"], tiny_data, tmp_path, extra=False)
    a, b = val_rows(src), val_rows(branch)
    tps = 128
    train_a, train_b = by_tokens(a, "train/loss"), by_tokens(b, "train/loss")
    for step in (16, 17):  # forwards at steps 15 and 16: weights after 15 updates, then after one at the peak rate
        assert train_b[step * tps] == pytest.approx(train_a[step * tps], abs=1e-6), step
    assert abs(train_b[18 * tps] - train_a[18 * tps]) > 1e-5  # the update at step 16 ran at a decayed rate
    lr_b = by_tokens(b, "lr")
    assert lr_b[16 * tps] == pytest.approx(3e-3) and lr_b[17 * tps] == pytest.approx(3e-3 * (1 - math.sqrt(1 / 4)))
    # the source's records up to the step, then the branch's own; it ends with a validation at step 19
    assert {t: v for t, v in by_tokens(b, "val/loss").items() if t <= 15 * tps} == \
        {t: v for t, v in by_tokens(a, "val/loss").items() if t <= 15 * tps}
    summary = json.loads((branch / "summary.json").read_text())
    assert summary["steps"] == 19 and summary["final_val_loss"] == pytest.approx(by_tokens(b, "val/loss")[19 * tps])
    assert summary["cooldown"] == {"from": str(kept), "from_step": 15, "steps": 4, "fraction": 4 / 19,
                                   "shape": "1-sqrt", "min_lr_ratio": 0.0}
    assert yaml.safe_load((branch / "config.yaml").read_text())["sched"]["decay"] == "1-sqrt"
    assert hashlib.sha256((src / "checkpoints" / "last.ckpt").read_bytes()).hexdigest() == last  # source untouched
    # eval model=<branch> scores the weights its summary describes (validated after its last step, then saved)
    capsys.readouterr()
    assert run_entry(EVAL, [f"model={branch}", f"paths.data_dir={tiny_data}"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "this eval" in x)
    assert abs(float(line.split("difference ")[1].split()[0])) < 1e-5, line


@pytest.mark.slow
def test_branches_when_the_run_ends_and_their_report(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    budgets = ",".join(str(s * 128) for s in (5, 10, 15, 20, 25))
    run_train(["sched=constant", "trainer.max_steps=25", f"trainer.keep_tokens=[{budgets}]", "cooldown.branches=true",
               "cooldown.shape=linear", "logger=wandb", "logger.wandb.mode=offline", f"hydra.run.dir={run}"], tiny_data,
              tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    steps = [c["steps"] for c in summary["cooldowns"]]
    assert [c["from_step"] for c in summary["cooldowns"]] == [5, 10, 15, 20, 25]
    assert steps == [s + cooldown_steps(s, 0.2) for s in (5, 10, 15, 20, 25)]
    for c in summary["cooldowns"]:
        branch = json.loads((run / "cooldowns" / f"step-{c['from_step']:06d}" / "summary.json").read_text())
        assert c["final_val_loss"] == branch["final_val_loss"] and branch["cooldown"]["shape"] == "linear"
    keys = set()  # the run's W&B summary, reopened once the branches ended, holds each budget's loss
    for f in run.glob("wandb/offline-run-*/run-*.wandb"):
        keys |= {u.key for r in wandb_records(f) if r.WhichOneof("record_type") == "summary" for u in r.summary.update}
    assert {f"cooldown/loss@{c['tokens']}" for c in summary["cooldowns"]} <= keys
    assert "plateau" in keys or "plateau/L_inf" in keys  # the single-curve fit, or why it was refused
    branch_keys = {u.key for f in (run / "cooldowns" / "step-000010").glob("wandb/offline-run-*/run-*.wandb")
                   for r in wandb_records(f) if r.WhichOneof("record_type") == "summary" for u in r.summary.update}
    assert {"cooldown/from_step", "cooldown/steps", "final_val_loss"} <= branch_keys
    again = run_train([f"resume={run}"], tiny_data, tmp_path, extra=False)  # finished: nothing trains again
    assert "nothing to do" in again.stdout + again.stderr
    assert json.loads((run / "summary.json").read_text())["cooldowns"] == summary["cooldowns"]
    assert run_entry(REPORT, [str(run), f"out={tmp_path / 'rep'}", "predict=124M"]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Plateaus measured by cooldowns" in md and "124M: not predicted: the L(N, D) fit was refused" in md
    data = json.loads((tmp_path / "rep" / "report.json").read_text())["cooldowns"]
    assert [b["tokens"] for b in data["sources"][0]["budgets"]] == [s * 128 for s in steps]
    assert (tmp_path / "rep" / "cooldowns.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_branch_of_a_missing_checkpoint_is_one_line(tiny_data, tmp_path):
    p = run_train([f"branch={tmp_path / 'nope.ckpt'}"], tiny_data, tmp_path, check=False, extra=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"branch={tmp_path / 'nope.ckpt'}: no such checkpoint" in p.stderr
