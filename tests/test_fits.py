"""Power-law fits (gptlab.analysis.fits) on synthetic curves with known parameters, and the sweep report built on them.

    .venv/bin/python -m pytest tests/test_fits.py -q
"""
import json
import math

import numpy as np
import pytest
from helpers import run_entry
from test_report import TINY, fake_run

from gptlab.analysis.render import write_report
from gptlab.analysis.runs import ReportError
from gptlab.report import ENTRY as REPORT
from gptlab.run.curves import MIN_POINTS, FitError, fit_power_law
from gptlab.units import parse_count

TOKENS = np.arange(1, 11) * 51_200.0  # ten evals, as a 400-step run of 4 x 64 tokens evaluated every 40 steps


def test_noiseless_curve_is_recovered_exactly():
    fit = fit_power_law(TOKENS, 4.2 + 900 * TOKENS ** -0.55)
    assert (fit.c, fit.a, fit.b) == pytest.approx((4.2, 900, 0.55), rel=1e-6)
    assert fit.rmse < 1e-9 and fit.n == 10


@pytest.mark.parametrize("seed", range(8))
def test_noisy_curve_recovered_within_its_errors(seed):
    """Noise of 0.01 nats per eval (what a 16K-token val set gives), ten evals: the truth lies within 3 standard
    errors, L_inf within 0.15 nats (3.5%) and alpha within 0.1 (18%). Over 200 seeds the worst errors were 0.16
    and 0.058, and 3 standard errors covered L_inf in all but a few: ten noisy points pin alpha loosely."""
    rng = np.random.default_rng(seed)
    y = 4.2 + 900 * TOKENS ** -0.55 + rng.normal(0, 0.01, TOKENS.size)
    fit = fit_power_law(TOKENS, y)
    assert abs(fit.c - 4.2) < max(3 * fit.c_err, 1e-3) and abs(fit.c - 4.2) < 0.15
    assert abs(fit.b - 0.55) < 3 * fit.b_err and abs(fit.b - 0.55) < 0.1
    assert abs(fit.a - 900) < 3 * fit.a_err
    assert 0.004 < fit.rmse < 0.02


def test_prediction_interval_covers_the_truth_and_widens_with_distance():
    rng = np.random.default_rng(0)
    n = np.array([1.6e6, 2.4e6, 3.3e6, 4.9e6, 6.6e6, 8.2e6])
    truth = lambda x: 2.0 + 400 * x ** -0.35
    covered = 0
    for _ in range(40):
        fit = fit_power_law(n, truth(n) + rng.normal(0, 0.005, n.size))
        y, lo, hi = fit.predict(124e6)
        covered += lo <= truth(124e6) <= hi
        near = fit.predict(8e6)
        assert hi - lo > near[2] - near[1] > 0 and lo < y < hi
    assert covered >= 34  # a 95% interval: 38 of 40 expected; 34 allows for the delta method's approximation


def test_too_few_points_refused():
    with pytest.raises(FitError, match=f"4 distinct points; .* needs at least {MIN_POINTS}.*no extrapolation"):
        fit_power_law(TOKENS[:4], 4 + TOKENS[:4] ** -0.5)
    with pytest.raises(FitError, match="3 distinct points"):  # repeated x count once
        fit_power_law([1, 1, 2, 2, 3, 3], [5, 5, 4, 4, 3.5, 3.5])
    with pytest.raises(FitError, match="x must be > 0"):
        fit_power_law([0, 1, 2, 3, 4], [5, 4, 3, 2, 1])
    with pytest.raises(FitError, match="is the loss falling"):
        fit_power_law(TOKENS, 3 + TOKENS * 1e-6)  # rising: no decreasing power law fits
    sizes = [3.32e6, 3.42e6, 3.52e6, 6.83e6, 7.23e6, 7.62e6]  # a depth x width sweep: 6 layers at width 128 worst
    with pytest.raises(FitError, match="exponent ran to its bound"):
        fit_power_law(sizes, [6.053, 6.005, 6.016, 5.897, 5.874, 6.205])


def test_parse_count():
    assert [parse_count(s) for s in ("124M", "1.5B", "30m", "2e8", "350k")] == [124e6, 1.5e9, 30e6, 2e8, 350e3]
    with pytest.raises(ValueError, match="'big' is not a count; write e.g. 124M"):
        parse_count("big")


@pytest.fixture
def size_sweep(tmp_path):
    """Six jobs of a width sweep trained on the same tokens: final losses on a known L(N) = 2 + 400 N^-0.35,
    each val curve a known plateau law; job 5 was cut short (3 evals) and job 6 trained on other tokens."""
    root = tmp_path / "multirun" / "2026-11-28_10-00-00"
    law = lambda n: 2.0 + 400 * n ** -0.35
    sizes = [1.6e6, 2.4e6, 3.3e6, 4.9e6, 6.6e6]
    steps = np.arange(0, 9) * 50  # evals every 50 steps, 256 tokens a step
    for i, n in enumerate(sizes):
        t = steps[1:] * 256.0
        curve = law(n) - 30 * t[-1] ** -0.5 + 30 * t ** -0.5  # ends exactly at L(n), plateau law on the way
        fake_run(root / str(i), {**TINY, "n_embd": 32 * (i + 1)}, "shakespeare", 16384, int(n), 256,
                 [10.8] + list(curve), every=50)
    fake_run(root / "5", TINY, "shakespeare", 16384, 3_000_000, 256, [10.8, 7.0, 6.5], every=50)
    fake_run(root / "6", TINY, "shakespeare", 16384, 3_000_000, 256, [10.8] + [6] * 16, every=50)
    return root, law


def test_sweep_report_fits_plateaus_and_size_law(size_sweep, tmp_path):
    root, law = size_sweep
    res = write_report([root], tmp_path / "rep", predict=["124M", "gpt2"])
    sc = res["scaling"]
    assert [r["name"] for r in sc["runs"]] == ["0", "1", "2", "3", "4"]  # 5, 6: other token counts, left out
    assert (sc["fit"].c, sc["fit"].a, sc["fit"].b) == pytest.approx((2.0, 400, 0.35), rel=1e-4)
    p124, pgpt2 = sc["predictions"]
    assert p124["loss"] == pytest.approx(law(124e6), abs=1e-4) and p124["factor"] == pytest.approx(124e6 / 6.6e6)
    assert pgpt2["params"] == 123_653_376
    runs = {r["name"]: r for r in res["runs"]}
    assert runs["0"]["plateau"].b == pytest.approx(0.5, rel=1e-4)
    assert runs["0"]["plateau"].c == pytest.approx(law(1.6e6) - 30 * (400 * 256.0) ** -0.5, abs=1e-4)
    assert runs["5"]["plateau"].startswith("refused: 2 distinct points")
    md = (tmp_path / "rep" / "report.md").read_text()
    fits = md.split("## Fits")[1].split("## Published")[0]
    assert "| 5 | 2 | refused: 2 distinct points" in fits
    assert f"| 124M | 124.00M | {law(124e6):.3f} |" in fits and "| 18.8x |" in fits
    assert "Over the final val losses of 5 runs (0, 1, 2, 3, 4)" in fits
    for png in ("val_curves.png", "loss_vs_params.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_size_law_refused_with_too_few_sizes(size_sweep, tmp_path, capsys):
    root, _ = size_sweep
    assert run_entry(REPORT, [str(root / "0"), str(root / "1"), str(root / "2"), f"out={tmp_path / 'r'}",
                 "predict=124M"]) == 0
    out = capsys.readouterr().out
    assert "Refused: 3 distinct points" in out and "| 124M |" not in out  # no prediction without a fit
    assert "- predict=124M: not predicted: refused: 3 distinct points" in out  # ... and it says so, never silent
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["predictions"] == [{"name": "124M", "params": 124e6, "refused": data["size_fit"]}]
    assert (tmp_path / "r" / "loss_vs_params.png").exists()


def test_bad_prediction_size_fails_before_writing(size_sweep, tmp_path):
    root, _ = size_sweep
    with pytest.raises(ReportError, match=r"predict=huge: 'huge' is not a count.*or one of gpt2, gpt2-medium"):
        write_report([root], tmp_path / "x", predict=["huge"])
    assert not (tmp_path / "x").exists()
    assert math.isfinite(parse_count("1e9"))
