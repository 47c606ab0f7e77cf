"""Compare runs: one markdown table in the study's shape, every run's val curve on one plot, published GPT-2 apart.

    python -m gptlab.report runs/multirun/2026-11-27_21-00-00                 # a sweep: every job folder under it
    python -m gptlab.report runs/2026-11-27/21-00-00 runs/2026-11-28/09-30-00 out=reports/30m log_x=true
    python -m gptlab.report runs/multirun/2026-11-27_21-00-00 compare=hf:gpt2  # + GPT-2 scored live on the same tokens
    python -m gptlab.report runs/multirun/2026-11-27_23-43-33 predict=124M,1.5B   # + the L(N) fit's predictions
    python -m gptlab.report runs/multirun/2026-12-01_00-00-00 baseline=sched=cosine   # verdicts against that arm
    python -m gptlab.report runs/multirun/2026-12-01_00-00-00 generations=generations  # + python -m gptlab.generations
    python -m gptlab.report --help

Writes <out>/report.md, report.json, val_curves.png, loss_vs_params.png and, with cooldown branches, cooldowns.png
(gptlab/analysis/render.py), and prints the table, the verdicts and the fits.
Measured rows come from each run's summary.json (or its metrics.csv while a run has none); published GPT-2 figures
are shown in their own section, never in the measured table.
"""
from __future__ import annotations

from omegaconf import OmegaConf

from gptlab import cli
from gptlab.config.checks import require
from gptlab.devices import resolve_device


def as_list(v) -> list[str]:
    """A list, or 'a,b' written on the command line, as a list of strings."""
    v = OmegaConf.to_object(v) if OmegaConf.is_config(v) else v
    return [s.strip() for s in (v.split(",") if isinstance(v, str) else v or []) if str(s).strip()]


def check(cfg) -> dict:
    """The paths given and every size and number valid, before torch is imported; returns write_report's arguments."""
    from gptlab.analysis.render import model_size
    from gptlab.analysis.runs import find_run_dirs
    predict = as_list(cfg.predict)
    for spec in predict:
        model_size(spec)  # a bad size fails before any run is read
    runs = cli.given(cfg, "runs")
    require(runs, "no runs given: pass run folders or a sweep folder (python -m gptlab.report runs/multirun/<sweep>)")
    paths = as_list(runs)
    for p in paths:
        find_run_dirs(p)  # a missing folder, or one with no runs, is refused here
    cli.typed(cfg, "report")  # every key's type and range (gptlab/config/commands.py ReportCommand)
    resolve_device(cfg.device)
    if cfg.generations:
        from gptlab.analysis.sample_tables import read_generations
        read_generations(cfg.generations)  # a missing file is refused before any run is read
    require(cfg.baseline is None or isinstance(cfg.baseline, str),
            f"baseline must be an arm's overrides as one string (baseline=sched=cosine), got {cfg.baseline!r}")
    return dict(paths=paths, out=cfg.out, log_x=cfg.log_x, compare=as_list(cfg.compare), predict=predict,
                baseline=cfg.baseline, generations=cfg.generations,
                data_dir=cfg.data_dir, batch_size=cfg.batch_size, device=cfg.device)


def work(kw: dict) -> None:
    from gptlab.analysis.render import write_report
    res = write_report(**kw)
    print(res["table"] + "\n\n" + res["verdicts"] + "\n\n" + res["fits"])
    out = res["out"]
    print(f"\nwrote {out / 'report.md'}, report.json, val_curves.png and loss_vs_params.png in {out}")


ENTRY = cli.Entry("report", check, work, positional=("runs*",), lists=("compare", "predict"), verbatim=("baseline",))

if __name__ == "__main__":
    cli.run(ENTRY)
