"""experiments/modern_gpt/add_rates.py: archived arms (report.json's numbers only) joined by run folders at a new
rate; the rate chosen on half a, the paired t against scipy, the multiplier read by hand on half b, an archived
full-curve multiplier not used where half b is due, a repeated run as a check.

    .venv/bin/python -m pytest tests/test_add_rates.py -q
"""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("add_rates", ROOT / "experiments" / "modern_gpt" / "add_rates.py")
add_rates = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(add_rates)

BASE_B = {1: 5.60, 2: 5.64, 3: 5.57}  # the baseline's half-b losses per seed; its full val loss is 0.03 lower
OLD_RATIOS = [0.9, 0.8, 0.85]


def archive(tmp: Path) -> Path:
    runs, arms = [], []
    for label, words, loss in (("optim=adamw", ["optim=adamw"], BASE_B), ("modern=rope", ["modern=rope"],
                                                                        {s: v - 0.05 for s, v in BASE_B.items()})):
        dirs = []
        for seed in (1, 2, 3):
            d = f"old/{label}/{seed}"
            runs.append({"dir": d, "seed": seed, "lr": 0.002, "tokens": 1000, "kind": "measured",
                         "final_val_loss": loss[seed] - 0.03, "final_val_loss_a": loss[seed] - 0.01,
                         "final_val_loss_b": loss[seed]})
            dirs.append(d)
        arms.append({"label": label, "overrides": words, "runs": dirs})
    report = {"baseline": "optim=adamw", "arms": arms, "runs": runs,
              "multipliers": [{"label": "modern=rope", "n": 3, "paired": True, "reached": 3, "ratios": OLD_RATIOS,
                               "multiplier": float(np.exp(np.log(OLD_RATIOS).mean())), "low": 0.7, "high": 1.0,
                               "p": 0.04, "p_holm": 0.04}]}
    path = tmp / "report.json"
    path.write_text(json.dumps(report))
    return path


def run_folder(d: Path, words: list[str], seed: int, lr: float, a: float, b: float, curve, curve_b=None) -> None:
    """A finished run folder; its val/loss_b column is curve_b's (at the same tokens), or b at every eval."""
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(words + [f"seed={seed}", "trainer.threads=1"]))
    (d / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "optim": {"lr": lr}, "data": {"block_size": 64}}))
    (d / "summary.json").write_text(json.dumps({"final_val_loss": curve[-1][1], "final_val_loss_a": a,
                                                "final_val_loss_b": b, "tokens": curve[-1][0], "params": 10}))
    half_b = [v for _, v in curve_b] if curve_b else [b] * len(curve)
    (d / "metrics.csv").write_text("tokens,val/loss,val/loss_b\n" + "".join(
        f"{t},{v},{vb}\n" for (t, v), vb in zip(curve, half_b)))


def test_a_new_rate_that_wins_on_half_a_is_chosen_tested_paired_and_its_multiplier_read_off_its_curve(tmp_path):
    new_b = {1: 5.50, 2: 5.55, 3: 5.49}
    for seed in (1, 2, 3):
        target = BASE_B[seed] - 0.03  # the baseline's final full-val loss
        curve = [(0, 10.0), (400, target + 0.2), (600, target - 0.2), (1000, target - 0.4)]  # crosses at 500
        # half b crosses the baseline's final half-b loss at 400 + (0.15 / 0.2) x 200 = 550 tokens
        curve_b = [(0, 10.0), (400, BASE_B[seed] + 0.15), (600, BASE_B[seed] - 0.05), (1000, new_b[seed])]
        run_folder(tmp_path / "new" / str(seed), ["modern=rope"], seed, 0.004, new_b[seed] - 0.2, new_b[seed], curve,
                   curve_b)
    run_folder(tmp_path / "new" / "twin", ["optim=adamw"], 1, 0.002, BASE_B[1] - 0.01, BASE_B[1],
               [(0, 10.0), (1000, BASE_B[1] - 0.03)])
    add_rates.main([str(tmp_path / "new"), "--archive", str(archive(tmp_path)), "--out", str(tmp_path / "out")])
    out = json.loads((tmp_path / "out" / "rates.json").read_text())
    rope = next(a for a in out["arms"] if a["label"] == "modern=rope")
    assert rope["selection"]["grid"] == [0.002, 0.004] and rope["selection"]["chosen"] == 0.004
    assert rope["selection"]["by_lr_a"] == {"0.002": pytest.approx(np.mean(list(BASE_B.values())) - 0.06),
                                            "0.004": pytest.approx(np.mean(list(new_b.values())) - 0.2)}
    assert len(next(a for a in out["arms"] if a["label"] == "optim=adamw")["runs"]) == 3  # the twin is a check
    (v,) = out["verdicts"]
    ref = stats.ttest_rel([new_b[s] for s in (1, 2, 3)], [BASE_B[s] for s in (1, 2, 3)])
    assert v["diff"] == pytest.approx(np.mean([new_b[s] - BASE_B[s] for s in (1, 2, 3)]))
    assert v["p"] == pytest.approx(ref.pvalue) and v["p_holm"] == pytest.approx(ref.pvalue)
    (m,) = out["multipliers"]
    # on half b (rope chose its rate there): 550 of the baseline's 1000 tokens; all of val would have said 500
    assert m["from"] == "val curves" and m["half"] == "b" and m["ratios"] == pytest.approx([0.55, 0.55, 0.55])
    assert "modern=rope reaches the baseline's loss on val half b with 0.55x" in \
        (tmp_path / "out" / "rates.md").read_text()
    (c,) = out["checks"]
    assert c["equal"] and c["seed"] == 1 and c["lr"] == 0.002
    assert (tmp_path / "out" / "rates_tokens_to_loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "lr 0.002, seed 1): half b 5.6 archived, 5.6 now: equal" in (tmp_path / "out" / "rates.md").read_text()


def test_a_new_rate_that_loses_on_half_a_keeps_the_archived_rate_but_not_its_full_curve_multiplier(tmp_path):
    """rope now has two rates, so its multiplier is due on half b; report.json's was read on all of val."""
    for seed in (1, 2, 3):
        run_folder(tmp_path / "new" / str(seed), ["modern=rope"], seed, 0.004, 6.0, 6.0, [(0, 10.0), (1000, 6.0)])
    run_folder(tmp_path / "unfinished", ["modern=rope"], 1, 0.008, 5.0, 5.0, [(0, 10.0), (1000, 5.0)])
    (tmp_path / "unfinished" / "summary.json").unlink()  # still running: left out, not read from its metrics
    add_rates.main([str(tmp_path / "new"), str(tmp_path / "unfinished"), "--archive", str(archive(tmp_path)),
                    "--out", str(tmp_path / "out")])
    out = json.loads((tmp_path / "out" / "rates.json").read_text())
    rope = next(a for a in out["arms"] if a["label"] == "modern=rope")
    assert rope["selection"]["grid"] == [0.002, 0.004] and rope["selection"]["chosen"] == 0.002
    assert rope["values"] == {str(s): pytest.approx(BASE_B[s] - 0.05) for s in (1, 2, 3)}
    (m,) = out["multipliers"]
    assert m["from"] == "report.json" and m["half"] == "b" and m["multiplier"] is None and m["p_holm"] is None
    assert m["reason"].startswith("no val/loss_b curve") and m["archived_full"]["ratios"] == OLD_RATIOS
    text = (tmp_path / "out" / "rates.md").read_text()
    assert "modern=rope: no multiplier on val half b: no val/loss_b curve" in text
    assert f"archived, read on all of val, which holds half a that chose a rate, so not used: " \
           f"{m['archived_full']['multiplier']:.2f}x [0.70, 1.00]" in text
    assert out["checks"] == []


def test_a_repeat_that_differs_from_its_archived_run_is_reported_not_equal(tmp_path):
    run_folder(tmp_path / "twin", ["optim=adamw"], 2, 0.002, 5.0, 5.61, [(0, 10.0), (1000, 5.58)])
    add_rates.main([str(tmp_path / "twin"), "--archive", str(archive(tmp_path)), "--out", str(tmp_path / "out")])
    (c,) = json.loads((tmp_path / "out" / "rates.json").read_text())["checks"]
    assert not c["equal"] and c["final_val_loss_b_archived"] == 5.64 and c["final_val_loss_b_new"] == 5.61
    assert "NOT EQUAL" in (tmp_path / "out" / "rates.md").read_text()
    # one rate for every arm: no rate was chosen on half a, so the archived full-curve multiplier stands
    (m,) = json.loads((tmp_path / "out" / "rates.json").read_text())["multipliers"]
    assert m["from"] == "report.json" and m["half"] == "full" and m["ratios"] == OLD_RATIOS
    assert m["p_holm"] == pytest.approx(0.04)


@pytest.mark.parametrize("args, says", [(["{tmp}/none"], "no such file or folder"),
                                        (["{tmp}", "--archive", "{tmp}/r.json"], "not a readable report.json")])
def test_bad_input_is_one_line_and_exit_2_before_any_work(tmp_path, capsys, args, says):
    run_folder(tmp_path / "run", ["modern=rope"], 1, 0.004, 6.0, 6.0, [(0, 10.0), (1000, 6.0)])
    (tmp_path / "out").mkdir()
    with pytest.raises(SystemExit) as e:
        add_rates.main([a.format(tmp=tmp_path) for a in args] + ["--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and says in err and err.count("\n") == 1 and "Traceback" not in err
    assert not any((tmp_path / "out").iterdir())  # nothing written
