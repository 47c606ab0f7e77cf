"""A run folder is one trustworthy record: resume from its own config, the same records across interruptions, eval
that reproduces training, loggers that never block.

    .venv/bin/python -m pytest tests/test_runfolder.py -q

Each way of stopping (trainer.stop_after, SIGTERM, SIGUSR1, SIGKILL after a time-cadence checkpoint) is followed
by resume= alone and compared with one uninterrupted run: the same metrics.csv rows (every column that does not
measure time) and the same summary.json.
"""
import json
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from helpers import in_process, run_train
from test_reliability import metric_rows, sigkill, start_train, wait_for

RUN = ["trainer.max_steps=22", "trainer.eval_interval=8", "trainer.log_every_n_steps=2", "data.global_batch=8",
       "model.dropout=0.1"]  # accumulation 2 and dropout: the micro-batch stream and the RNG state are exercised; the
# last step, 22, is no multiple of the eval interval: it validates all the same, uninterrupted or resumed
TIMED = ("train_s", "val_s", "ckpt_s", "startup_s")  # the summary's figures that measure time


def summary(run: Path) -> dict:
    return {k: v for k, v in json.loads((run / "summary.json").read_text()).items() if k not in TIMED}


def rows(run: Path):
    return metric_rows(run, cols=("epoch", "step", "tokens", "lr", "train/loss", "val/loss", "val/ppl", "val/tokens"))


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("ref")
    run_train([*RUN, f"hydra.run.dir={runs / 'ref'}"], tiny_data, runs)
    return runs / "ref"


def resume_until_done(run: Path, data, runs, tries=4, steps=22):
    """resume=<run> alone, as often as its stop_after slices need, until the run has all its steps."""
    for _ in range(tries):
        p = run_train([f"resume={run}"], data, runs, extra=False)
        done = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
        if done.get("finished"):
            assert done["steps"] == done["final_val_step"] == steps
            return p
    raise AssertionError(f"{run} did not finish in {tries} resumes")


@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [8, 13])  # at an evaluating step, and between evaluations
def test_stop_after_then_resume_alone_gives_the_uninterrupted_records(reference, tiny_data, tmp_path, stop_after):
    run = tmp_path / "cut"
    p = run_train([*RUN, f"trainer.stop_after={stop_after}", f"hydra.run.dir={run}"], tiny_data, tmp_path)
    cut = json.loads((run / "summary.json").read_text())
    assert (cut["finished"], cut["stopped"], cut["steps"], cut["final_val_step"]) == (
        False, f"trainer.stop_after={stop_after}", stop_after, 8)  # the figures it holds are from step 8, and say so
    assert f"stopped at step {stop_after} (trainer.stop_after={stop_after}); last validation at step 8: loss " \
           f"{cut['final_val_loss']:.4f}; resume with: python -m gptlab.train resume={run}" in p.stdout
    assert "val after training" not in p.stdout and "sample:" not in p.stdout
    folders = set(tmp_path.rglob("*"))
    resume_until_done(run, tiny_data, tmp_path)
    assert rows(run) == rows(reference)
    assert summary(run) == summary(reference)
    assert not (run / ".lock").exists()
    new = {f for f in set(tmp_path.rglob("*")) - folders if f.is_dir() and run not in f.parents and f != run}
    assert new == set(), f"a resume made folders: {new}"  # it writes into the run's own folder only
    done = json.loads((run / "summary.json").read_text())
    for clock in ("train_s", "val_s", "startup_s"):  # each sums the invocations: a resume adds its own
        assert done[clock] > cut[clock] > 0, clock
    # a checkpoint holds the clocks as they stood when it began to be written, so the stop's own last.ckpt write is
    # in the cut's summary but not in what the resume restores: at most one write of each slice is not counted
    assert done["ckpt_s"] > 0 and cut["ckpt_s"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGUSR1", "SIGINT"])
def test_a_preemption_signal_writes_last_ckpt_and_the_resume_matches(reference, tiny_data, tmp_path, sig):
    run, log = tmp_path / "pre", tmp_path / "pre.log"
    p = start_train([*RUN, f"hydra.run.dir={run}"], tiny_data, tmp_path, log)
    wait_for(lambda: any(r[1] not in ("", "0") and int(r[1]) >= 9 for r in _rows_or_empty(run)), p, "step 10", log)
    p.send_signal(getattr(signal, sig))
    assert p.wait(120) == (130 if sig == "SIGINT" else 0), log.read_text()[-2000:]  # Ctrl-C: 130, as shells expect
    text = log.read_text()
    assert "Traceback" not in text
    stopped = int(text.split("stopped at step ")[1].split(" ")[0])
    assert f"stopped at step {stopped} ({sig}); last validation at step {stopped // 8 * 8}: loss" in text
    assert 10 <= stopped < 22 and json.loads((run / "summary.json").read_text())["finished"] is False
    resume_until_done(run, tiny_data, tmp_path)
    assert rows(run) == rows(reference)
    assert summary(run) == summary(reference)


def _rows_or_empty(run: Path):
    try:
        return rows(run)
    except (FileNotFoundError, ValueError):
        return []


@pytest.mark.slow
def test_sigkill_after_a_time_cadence_checkpoint_loses_nothing(reference, tiny_data, tmp_path):
    """trainer.ckpt_every_minutes writes last.ckpt between evaluations: a kill at step 13 resumes from step 13 or
    12, not from the step-8 evaluation, and the records still match."""
    run, log = tmp_path / "kill", tmp_path / "kill.log"
    p = start_train([*RUN, "trainer.ckpt_every_minutes=0.0001", f"hydra.run.dir={run}"], tiny_data, tmp_path, log)
    last = run / "checkpoints" / "last.ckpt"
    wait_for(lambda: last.exists() and _step(last) >= 13, p, "a checkpoint at step 13", log)
    sigkill(p)
    assert _step(last) % 8 != 0  # a cadence checkpoint, not an evaluation's
    resume_until_done(run, tiny_data, tmp_path)
    assert rows(run) == rows(reference)
    assert summary(run) == summary(reference)


def _step(path: Path) -> int:
    import torch
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["global_step"]
    except Exception:  # caught between the rename and the read: try again
        return -1


@pytest.mark.slow
def test_resume_alone_keeps_the_runs_config_and_refuses_unsafe_changes(tiny_data, tmp_path):
    run = tmp_path / "r"
    run_train(["model.n_layer=1", "sched=constant", "trainer.max_steps=6", "trainer.stop_after=3",
               "trainer.eval_interval=3", f"hydra.run.dir={run}"], tiny_data, tmp_path)
    p = run_train([f"resume={run}", "trainer.stop_after=null"], tiny_data, tmp_path, extra=False)
    assert "resumed at step 3; changed: trainer.stop_after: 3 -> None" in p.stdout
    assert "1 accumulation x 4 micro batch x 32 block" in p.stdout and "constant" in p.stdout and "6 steps" in p.stdout
    assert json.loads((run / "summary.json").read_text())["steps"] == 6
    before = (run / "summary.json").read_bytes(), (run / "metrics.csv").read_bytes()
    p = run_train([f"resume={run}"], tiny_data, tmp_path, extra=False)
    assert f"{run} finished at step 6 (trainer.max_steps=6); nothing to do. Extend it: python -m gptlab.train " \
           f"resume={run} trainer.max_steps=12" in p.stdout
    assert ((run / "summary.json").read_bytes(), (run / "metrics.csv").read_bytes()) == before
    p = run_train([f"resume={run}", "optim.lr=0.5"], tiny_data, tmp_path, extra=False, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "error: optim.lr cannot change on a resume: the run was trained with 0.003, given 0.5; a resume " \
           "may change only trainer.max_steps" in p.stderr
    p = run_train([f"resume={run}", "sched=cosine"], tiny_data, tmp_path, extra=False, check=False)
    assert p.returncode == 2 and "error: sched cannot change on a resume" in p.stderr
    p = run_train([f"resume={run}", "trainer.max_steps=9"], tiny_data, tmp_path, extra=False)
    assert "changed: trainer.max_steps: 6 -> 9" in p.stdout and json.loads((run / "summary.json").read_text())[
        "steps"] == 9


@pytest.mark.slow
def test_eval_of_a_run_alone_reproduces_its_val_loss(tiny_data, tmp_path):
    run = tmp_path / "r"
    run_train(["trainer.max_steps=10", "data.val_tokens=1000", f"hydra.run.dir={run}"], tiny_data, tmp_path)
    env = {"GPTLAB_DATA": str(tiny_data)}
    p = in_process("eval", [f"model={run}"], env)
    assert p.returncode == 0, p.stderr
    s = json.loads((run / "summary.json").read_text())
    line = next(x for x in p.stdout.splitlines() if "summary.json best_val_loss" in x)
    got = float(line.split("this eval ")[1].split(":")[0])
    assert got == pytest.approx(s["best_val_loss"], abs=1e-6)
    assert s["val_tokens"] == 992 and "992 tokens, ctx 32" in line  # whole windows of 32 within val_tokens=1000
    p = in_process("eval", [f"model={run}", "max_tokens=64"], env)
    assert "(64 tokens, ctx 32, stride 32)" in p.stdout  # an explicit override still wins


@pytest.mark.slow
def test_a_val_split_shorter_than_asked_warns_and_records_the_real_count(tiny_data, tmp_path):
    run = tmp_path / "short"
    p = run_train(["trainer.max_steps=4", "data.val_tokens=10000000", f"hydra.run.dir={run}"], tiny_data, tmp_path)
    held = json.loads((tiny_data / "tiny" / "manifest.json").read_text())["splits"]["val"]["tokens"]
    scored = (held - 1) // 32 * 32
    assert f"data.val_tokens=10,000,000 but {tiny_data / 'tiny'} val holds {held:,} tokens: each validation scores " \
           f"{scored:,}" in p.stderr
    assert json.loads((run / "summary.json").read_text())["val_tokens"] == scored


# --- loggers --------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_runs_curves(tiny_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run = tmp_path / "tb"
    run_train(["logger=tensorboard", "trainer.max_steps=10", f"hydra.run.dir={run}"], tiny_data, tmp_path)
    val = {}
    for f in (run / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(f))
        acc.Reload()
        if "val/loss" in acc.Tags()["scalars"]:
            val.update({e.step: e.value for e in acc.Scalars("val/loss")})
    csv_val = [float(r[5]) for r in rows(run) if r[5]]
    assert sorted(val.values()) == pytest.approx(sorted(csv_val), rel=1e-6) and len(val) == len(csv_val) == 3
    assert "W&B" not in (run / "train.log").read_text() and not (run / "wandb").exists()


class Silent:
    """A local server that accepts connections and never answers: a W&B endpoint behind a dead proxy."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.conns, self.stop = [], False
        threading.Thread(target=self._accept, daemon=True).start()
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                pass

    def __exit__(self, *exc):
        self.stop = True
        self.sock.close()


@pytest.mark.slow
@pytest.mark.parametrize("server", ["refused", "silent"])
def test_wandb_with_a_key_but_no_server_goes_offline_within_the_bound(tiny_data, tmp_path, server):
    run = tmp_path / "wb"
    env = {"WANDB_API_KEY": "x" * 40, "WANDB_SILENT": None}
    with Silent() as url:
        env["WANDB_BASE_URL"] = url if server == "silent" else "http://127.0.0.1:9"
        t0 = time.time()
        p = run_train(["logger=wandb", "logger.wandb.init_timeout=4", "trainer.max_steps=4", f"hydra.run.dir={run}"],
                      tiny_data, tmp_path, env=env)
        took = time.time() - t0
    out = p.stdout + p.stderr
    assert "W&B: 127.0.0.1 cannot be reached: the run is written offline" in p.stdout, out[-3000:]
    assert f"W&B: written offline; upload it with: wandb sync {run}/wandb/offline-run-" in p.stdout
    assert "anonymous" not in out and "Traceback" not in out and "Loaded credentials" not in out
    assert took < 90  # 4 s bound + start-up and the tiny run; wandb's own retries would take minutes
    log = (run / "train.log").read_text()
    assert "tokens per iteration" in log and "W&B: written offline" in log  # the run's own lines, kept


@pytest.mark.slow
def test_wandb_gets_the_full_config_tokens_axis_and_summary(tiny_data, tmp_path):
    from test_sweep import wandb_records
    run = tmp_path / "wb"
    run_train(["logger=wandb", "logger.wandb.mode=offline", "logger.wandb.job_type=arm-a", "trainer.max_steps=8",
               f"hydra.run.dir={run}"], tiny_data, tmp_path)
    (f,) = run.glob("wandb/offline-run-*/run-*.wandb")
    records = list(wandb_records(f))
    config = {}
    for r in records:
        if r.WhichOneof("record_type") == "config":
            config.update({u.key: u.value_json for u in r.config.update})
        if r.WhichOneof("record_type") == "run":
            assert r.run.job_type == "arm-a"
    assert {"data", "trainer", "seed", "optim", "model", "paths"} <= set(config)
    assert json.loads(config["trainer"])["max_steps"] == 8 and json.loads(config["data"])["name"] == "tiny"
    metrics = {m.name: m.step_metric for r in records if r.WhichOneof("record_type") == "metric" for m in [r.metric]}
    assert metrics.get("val/loss") == "tokens" and metrics.get("train/loss") == "tokens"
    wb = {}  # the W&B summary describes the run's last validation, at step 8 (no multiple of eval_interval=5)
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            wb.update({u.key: json.loads(u.value_json) for u in r.summary.update})
    s = json.loads((run / "summary.json").read_text())
    assert (wb["final_val_step"], wb["best_val_step"], wb["finished"]) == (8, s["best_val_step"], True)
    assert wb["final_val_loss"] == pytest.approx(s["final_val_loss"], rel=1e-12) and s["final_val_step"] == 8
    summary_keys = set()
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary_keys |= {u.key for u in r.summary.update}
    assert {"best_val_loss", "best_val_step", "final_val_ppl"} <= summary_keys

