"""Sweeps end to end on the tiny corpus: Hydra multirun, W&B groups, the sweep report, the launchers, Optuna, and
the named studies' configs.

    .venv/bin/python -m pytest tests/test_sweep.py -q
"""
import json
import os
import struct
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, composed, run_train, validated
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from gptlab.analysis.render import write_report

SHORT = ["trainer.max_steps=30", "trainer.eval_interval=5"]  # six evals after step 0: enough for a plateau fit


def wandb_records(path: Path):
    """The protobuf records of an offline .wandb file (LevelDB log format: 7-byte file header, 32 KiB blocks,
    chunks of crc32 | length | type), parsed with wandb's own schema."""
    from wandb.proto import wandb_internal_pb2 as pb
    data, pos, block, buf = path.read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk  # FULL, FIRST start a record; MIDDLE, LAST continue it
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def wandb_run_record(run_dir: Path):
    (f,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    return next(r.run for r in wandb_records(f) if r.WhichOneof("record_type") == "run")


def sweep_dirs(runs: Path) -> list[Path]:
    (sweep,) = [d for d in (runs / "multirun").iterdir() if d.name != "last"]
    assert (runs / "multirun" / "last").resolve() == sweep.resolve()  # runs/multirun/last names the latest sweep
    return sweep, sorted((d for d in sweep.iterdir() if d.name.isdigit()), key=lambda d: int(d.name))


@pytest.mark.slow
def test_four_job_multirun_summaries_wandb_group_and_report(tiny_data, tmp_path):
    p = run_train(["-m", "model.n_layer=1,2", "model.n_embd=32,48", "logger=wandb", "logger.wandb.mode=offline",
                   *SHORT],
                  tiny_data, tmp_path, timeout=180)  # the bound: 4 jobs in under 3 minutes
    sweep, jobs = sweep_dirs(tmp_path)
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    shapes = set()
    for j in jobs:
        summary = json.loads((j / "summary.json").read_text())
        assert summary["steps"] == 30 and summary["final_val_loss"] < summary["val_before_loss"]
        shapes.add((summary["model"]["n_layer"], summary["model"]["n_embd"]))
        run = wandb_run_record(j)
        n_layer, n_embd = summary["model"]["n_layer"], summary["model"]["n_embd"]
        assert run.run_group == sweep.name and run.project == "gptlab"
        assert run.display_name == f"n_layer={n_layer} n_embd={n_embd}"  # what the job varies, as the legends say
        assert run.job_type == run.display_name  # no seed swept: each job is its own arm
        assert set(summary["plateau_extrapolated"]) == {"L_inf", "L_inf_err", "alpha", "alpha_err", "evals"}
    assert shapes == {(1, 32), (1, 48), (2, 32), (2, 48)}
    res = write_report([sweep], predict=["124M"])
    md = (sweep / "report" / "report.md").read_text()
    assert all(f"| {j.name} | 6 | " in md for j in jobs)  # every run's plateau fitted on its 6 evals
    assert "Refused: 4 distinct points" in md  # 4 sizes: the size law needs 5
    assert all(not isinstance(r["plateau"], str) and r["plateau"].c < r["final_val_loss"] for r in res["runs"])
    for r in res["runs"]:  # the summary's plateau is the report's, fitted alike
        assert json.loads(Path(r["dir"], "summary.json").read_text())["plateau_extrapolated"]["L_inf"] == \
            pytest.approx(r["plateau"].c)
    labels = sorted(r["label"] for r in res["runs"])  # only the swept keys label the curves
    assert labels[0] == "0: n_layer=1 n_embd=32"
    for png in ("val_curves.png", "loss_vs_params.png"):
        assert (sweep / "report" / png).stat().st_size > 10_000
    assert "Launching 4 jobs locally" in p.stdout + p.stderr


@pytest.mark.slow
def test_study_seeds_make_arms_with_one_wandb_job_type(tiny_data, tmp_path):
    """study.seeds=2 on a study: 2 arms x 2 seeds; each arm's runs share a W&B job type (W&B draws their mean and
    band), and the report tests the arms per seed."""
    run_train(["-m", "experiment=dropout", "study.seeds=2", "data=text", "data.name=tiny", "trainer.max_steps=10",
               "logger=wandb", "logger.wandb.mode=offline"], tiny_data, tmp_path, timeout=300)
    sweep, jobs = sweep_dirs(tmp_path)
    seen = []
    for j in jobs:
        cfg = yaml.safe_load((j / "config.yaml").read_text())
        run = wandb_run_record(j)
        seen.append((cfg["model"]["dropout"], cfg["seed"], run.job_type))
        assert run.display_name == f"{run.job_type} seed={cfg['seed']}"
    assert seen == [(0.0, 1, "dropout=0.0"), (0.0, 2, "dropout=0.0"), (0.1, 1, "dropout=0.1"), (0.1, 2, "dropout=0.1")]
    res = write_report([sweep])
    (t,) = res["arms"]["comparisons"]
    assert (t["arm"], t["baseline"], t["difference"].test, t["difference"].n_a) == ("dropout=0.1", "dropout=0.0",
                                                                                    "paired t", 2)


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_two_job_sweep(tiny_data, tmp_path):
    """submitit_local: each job in its own process through submitit, as hydra/launcher=slurm does on a cluster;
    the second job is DDP on 2 CPU processes (ddp_spawn), which works inside a sweep."""
    run_train(["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "trainer=default,ddp_cpu",
               "trainer.max_steps=5"], tiny_data, tmp_path)
    sweep, jobs = sweep_dirs(tmp_path)
    summaries = [json.loads((j / "summary.json").read_text()) for j in jobs]
    assert [s["tokens_per_step"] for s in summaries] == [4 * 32, 2 * 4 * 32]  # 2 ranks: twice the tokens a step
    assert list((sweep / ".submitit").glob("*/*_result.pkl"))  # submitit ran them, not the basic launcher


@pytest.mark.slow
def test_joblib_launcher_splits_cores_between_jobs(tiny_data, tmp_path):
    p = run_train(["-m", "hydra/launcher=joblib_cpu", "trainer.threads=null", "sched=cosine,linear",
                   "trainer.max_steps=5"], tiny_data, tmp_path)
    _, jobs = sweep_dirs(tmp_path)
    assert len(jobs) == 2 and all((j / "summary.json").exists() for j in jobs)
    assert "Joblib.Parallel(n_jobs=2" in p.stdout + p.stderr
    threads = max(1, len(os.sched_getaffinity(0)) // 2)  # each job gets its share of the cores
    assert [(j / "train.log").exists() for j in jobs] and f"device cpu ({threads} threads)" in p.stdout + p.stderr


@pytest.mark.slow
def test_optuna_search_minimises_val_loss_in_memory(tiny_data, tmp_path):
    # search spaces on the command line replace the config's (sized for the tiny model here)
    run_train(["-m", "hparams_search=val_loss_optuna", "hydra.sweeper.n_trials=3", "model.n_embd=choice(32,48)",
               "optim.lr=tag(log,interval(1e-3,1e-2))", "sched.warmup_steps=range(1,4)", "trainer.max_steps=5"],
              tiny_data, tmp_path)
    sweep, jobs = sweep_dirs(tmp_path)
    best = [json.loads((j / "summary.json").read_text())["best_val_loss"] for j in jobs]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert len(jobs) == 3 and result["best_value"] == pytest.approx(min(best))
    assert set(result["best_params"]) == {"optim.lr", "sched.warmup_steps", "model.n_embd"}


@pytest.mark.slow
def test_plain_ddp_inside_a_local_sweep_is_refused(tiny_data, tmp_path):
    p = run_train(["-m", "trainer.devices=2", "trainer.accelerator=cpu", "seed=1,2"], tiny_data, tmp_path,
                  check=False)
    assert p.returncode == 2 and "trainer.strategy=auto on 2 devices" in p.stderr and "ddp_spawn" in p.stderr
    assert "Traceback" not in p.stderr


STUDIES = sorted(f.stem for f in (ROOT / "conf" / "experiment").glob("*.yaml")
                 if "sweeper" in f.read_text())


@pytest.mark.parametrize("study", STUDIES)
def test_named_studies_compose_and_sweep_real_keys(study):
    """Each study's swept keys exist in the composed config, and every job it would launch validates: each arm once
    (its jobs differ only by seed, and every seed the grid names is a valid one)."""
    assert {"depth_width", "decay", "dropout", "accumulation", "cooldown", "study_30m_vs_gpt2"} <= set(STUDIES)
    assert (ROOT / "experiments" / study / "README.md").is_file()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        params = compose("train", [f"experiment={study}"], return_hydra_config=True).hydra.sweeper.params
    groups = {d.name for d in (ROOT / "conf").iterdir() if d.is_dir()}
    jobs = [[]]
    for key, values in OmegaConf.to_container(params, resolve=True).items():  # ${seeds:3} -> 1,2,3
        jobs = [j + [f"{key}={v.strip()}"] for j in jobs for v in str(values).split(",")]
    assert len(jobs) >= 2
    seeds = {o.split("=")[1] for j in jobs for o in j if o.startswith("seed=")}
    assert all(s.isdigit() and 0 <= int(s) < 2**32 for s in seeds), seeds
    arms = {tuple(o for o in j if not o.startswith("seed=")): j for j in jobs}  # an arm's first job
    for job in arms.values():
        cfg = composed(f"experiment={study}", *job)
        for key in (o.split("=")[0] for o in job):
            if key in groups:  # a config group (optim, modern): its choice must be an existing option file
                assert (ROOT / "conf" / key / f"{dict(o.split('=') for o in job)[key]}.yaml").is_file()
                continue
            absent = object()  # a key may hold null (model.mup_base_width=null): it must exist, not be set
            assert OmegaConf.select(cfg, key, default=absent) is not absent, f"{study}: {key} is not a config key"
        validated(cfg)
