"""Scale-out, exercised on this machine's CPUs (gloo): two "nodes" started the way torchrun and SLURM start them,
FSDP, preemption on every rank and on one, SLURM requeue, a change of world size, and the sbatch script submitit
writes.

    .venv/bin/python -m pytest tests/test_scaling.py -q -m slow

Every run trains the same global batch (8 sequences a step: 2 micro batches of 4 on one process, or 1 on each of 2
ranks), so each is compared with one uninterrupted single-process run. The data order is the same by construction
(the datamodule numbers global micro batches); the sums differ only in float reduction order, hence TOL.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, TINY, in_process, require_slow, run_train
from test_reliability import metric_rows

RUN = ["trainer.max_steps=12", "trainer.eval_interval=4", "trainer.log_every_n_steps=3", "data.global_batch=8"]
# ranks agree on a signal at logged steps (3, 6, 9), none of them an evaluation's: a stop's save is its own
TWO_NODES = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=2"]
TOL = 1e-5  # |difference| of a loss, in nats, between 1 process and 2 ranks (measured: 0 under DDP, 9.5e-7 FSDP)
COLS = ("step", "tokens", "lr", "train/loss", "val/loss")


def rows(run: Path) -> list[tuple]:
    return metric_rows(run, cols=COLS)


def assert_same_records(run: Path, ref: Path, tol: float = TOL) -> None:
    """The same rows (steps, tokens, rates exactly; losses within tol) as the reference run's."""
    a, b = rows(run), rows(ref)
    assert [r[:3] for r in a] == [r[:3] for r in b]
    for x, y in zip(a, b):
        for u, v in zip(x[3:], y[3:]):
            assert (u == v == "") or abs(float(u) - float(v)) <= tol, (x, y)


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("ref")
    run_train([*RUN, f"hydra.run.dir={runs / 'ref'}"], tiny_data, runs)
    return runs / "ref"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env(rank: int, world: int, port: int) -> dict:
    """What torchrun sets for one process per node."""
    return {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "LOCAL_RANK": "0",
            "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": "1", "GROUP_RANK": str(rank), "ROLE_RANK": str(rank),
            "TORCHELASTIC_RUN_ID": "gptlab-test"}


def slurm_env(rank: int, world: int, port: int) -> dict:
    """What srun sets in an allocation of `world` nodes with one task each (MASTER_PORT given: the job id's port
    could be taken on a shared machine)."""
    return {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "gptlab", "SLURM_NTASKS": str(world), "SLURM_NNODES": str(world),
            "SLURM_NTASKS_PER_NODE": "1", "SLURM_PROCID": str(rank), "SLURM_LOCALID": "0", "SLURM_NODEID": str(rank),
            "SLURM_NODELIST": "127.0.0.1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def start(args, data, runs, log: Path, env: dict, extra=True) -> subprocess.Popen:
    """python -m gptlab.train in the background (TINY's settings unless args give them), output to `log`."""
    require_slow("start")
    mine = {a.split("=")[0] for a in args}
    base = ["data=text", "data.name=tiny", *[t for t in TINY if t.split("=")[0] not in mine]] if extra else []
    env = {**os.environ, "GPTLAB_DATA": str(data), "GPTLAB_RUNS": str(runs), "WANDB_SILENT": "true", **env}
    return subprocess.Popen([sys.executable, "-m", "gptlab.train", *base, *args], cwd=ROOT, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def nodes(args, data, runs, tmp: Path, envs: list[dict], tag: str, extra=True) -> list[subprocess.Popen]:
    return [start(args, data, runs, tmp / f"{tag}{i}.log", e, extra) for i, e in enumerate(envs)]


def wait_all(procs, tmp: Path, tag: str, timeout=300) -> list[str]:
    """Each process's exit status must be 0 within `timeout` s; returns their logs."""
    end = time.time() + timeout
    for p in procs:
        try:
            p.wait(max(1, end - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"{tag}: timed out (a deadlock?)") from None
    logs = [(tmp / f"{tag}{i}.log").read_text() for i in range(len(procs))]
    for p, text in zip(procs, logs):
        assert p.returncode == 0, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
    return logs


def trained_past(run: Path, step: int) -> bool:
    try:
        return any(r[0] and r[3] and int(r[0]) >= step for r in rows(run))
    except (FileNotFoundError, ValueError):
        return False


def wait_until(cond, procs, what: str, timeout=300) -> None:
    end = time.time() + timeout
    while not cond():
        assert all(p.poll() is None for p in procs), f"a rank ended before {what}"
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def by_rank(logs: list[str]) -> dict:
    """The RankReport records of each rank: {rank: [record, ...]}."""
    out = {}
    for text in logs:  # found anywhere: rank 0's progress bar shares its lines
        for r in map(json.loads, re.findall(r"val-by-rank (\{[^}]*\})", text)):
            out.setdefault(r["rank"], []).append(r)
    return out


RANKS = ["+callbacks.ranks._target_=gptlab.training.callbacks.RankReport"]


@pytest.mark.slow
def test_two_torchrun_nodes_equal_one_process_and_only_rank_0_writes(reference, tiny_data, tmp_path):
    run, port = tmp_path / "two", free_port()
    logger = ["logger=wandb_tensorboard", "logger.wandb.mode=offline"]
    procs = nodes([*TWO_NODES, *RUN, *RANKS, *logger, f"hydra.run.dir={run}"], tiny_data, tmp_path, tmp_path,
                  [torchrun_env(r, 2, port) for r in range(2)], "node")
    logs = wait_all(procs, tmp_path, "node")
    ranks = by_rank(logs)
    assert sorted(ranks) == [0, 1]
    for r, records in ranks.items():
        assert {(x["node_rank"], x["local_rank"], x["world_size"], x["environment"]) for x in records} == {
            (r, 0, 2, "TorchElasticEnvironment")}
    assert [x["val_loss"] for x in ranks[0]] == [x["val_loss"] for x in ranks[1]]
    assert "tokens per iteration: 256 = 1 accumulation x 4 micro batch x 32 block x 2 device(s)" in logs[0]
    assert_same_records(run, reference)
    # rank 0 alone wrote the folder: one of each record, one W&B run, one TensorBoard run
    assert [s for s, *_ in rows(run)].count("0") == len([r for r in rows(reference) if r[0] == "0"])
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1
    events = list(run.rglob("events.out.tfevents.*"))  # <time>.<host>.<pid>.<n>: one run, rank 0's writers
    assert {e.parent for e in events} == {run / "tensorboard"}
    assert {int(e.name.split(".")[-2]) for e in events} == {procs[0].pid}
    assert (run / "train.log").read_text().count("val before training") == 1
    assert "gptlab:" not in logs[1] and "val after training" not in logs[1]  # rank 1 prints no run lines
    s = json.loads((run / "summary.json").read_text())
    assert s["finished"] and s["steps"] == 12


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGUSR1", "SIGTERM"])
def test_slurm_ranks_stop_together_on_a_signal_and_the_requeued_command_continues(reference, tiny_data, tmp_path,
                                                                                    sig):
    """SLURM's signal reaches every task: all stop at one step boundary, last.ckpt is written once, every process
    exits 0 within 30 s, rank 0 requeues the job on SIGUSR1; the same command, run again, continues the run."""
    run, port, saves = tmp_path / "slurm-4242", free_port(), tmp_path / "saves.txt"  # the job's default folder
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol.txt"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    (bin_dir / "scontrol").chmod(0o755)
    args = [*TWO_NODES, *RUN, *RANKS, "+callbacks.saves._target_="
            "gptlab.training.drills.SaveTrace", f"+callbacks.saves.path={saves}"]  # no hydra.run.dir: as sbatch runs it
    tasks = lambda port: [{**slurm_env(r, 2, port), "PATH": f"{bin_dir}:{os.environ['PATH']}"}  # noqa: E731
                          for r in range(2)]
    envs = tasks(port)
    procs = nodes(args, tiny_data, tmp_path, tmp_path, envs, "task")
    wait_until(lambda: trained_past(run, 2), procs, "step 3")
    for p in procs:
        p.send_signal(getattr(signal, sig))
    sent = time.time()
    logs = wait_all(procs, tmp_path, "task", timeout=30)
    assert time.time() - sent < 30
    stopped = int(logs[0].split("stopped at step ")[1].split(" ")[0])
    assert f"({sig})" in logs[0] and stopped < 12
    seen = saves.read_text().split("\n")[:-1]  # `rank step` per save: the stop's step is saved once, by all ranks
    assert sorted(x for x in seen if x.endswith(f" {stopped}")) == [f"0 {stopped}", f"1 {stopped}"]
    assert (calls.read_text().split() if calls.exists() else []) == (["requeue", "4242"] if sig == "SIGUSR1" else [])
    ranks = by_rank(logs)  # step 0's validation: SLURMEnvironment gave each task its rank
    assert {r: (x[0]["node_rank"], x[0]["local_rank"], x[0]["environment"]) for r, x in ranks.items()} == {
        0: (0, 0, "SLURMEnvironment"), 1: (1, 0, "SLURMEnvironment")}
    # another command into the job's folder is refused; the job's own command continues it
    other = nodes([*args, "optim.lr=1e-2"], tiny_data, tmp_path, tmp_path, envs[:1],
                  "other")[0]
    assert other.wait(120) == 2
    assert "already holds a run with another config (optim.lr: 0.003 -> 0.01)" in (tmp_path / "other0.log").read_text()
    logs = wait_all(nodes(args, tiny_data, tmp_path, tmp_path, tasks(free_port()), "again"), tmp_path, "again")
    assert "holds this command's own run (the same config): continuing it from its last.ckpt" in logs[0]
    assert f"resumed at step {stopped}" in logs[0]
    assert_same_records(run, reference)


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_every_rank_without_deadlock(reference, tiny_data, tmp_path):
    run, port = tmp_path / "one", free_port()
    envs = [torchrun_env(r, 2, port) for r in range(2)]
    procs = nodes([*TWO_NODES, *RUN, f"hydra.run.dir={run}"], tiny_data, tmp_path, tmp_path, envs, "node")
    wait_until(lambda: trained_past(run, 2), procs, "step 3")
    procs[1].send_signal(signal.SIGTERM)  # rank 1 only: rank 0 learns of it at the next logged step
    logs = wait_all(procs, tmp_path, "node", timeout=30)
    assert "(another rank)" in logs[0]
    assert json.loads((run / "summary.json").read_text())["stopped"] == "another rank"
    port = free_port()
    envs = [torchrun_env(r, 2, port) for r in range(2)]
    wait_all(nodes([f"resume={run}"], tiny_data, tmp_path, tmp_path, envs, "resume", extra=False), tmp_path, "resume")
    assert_same_records(run, reference)


def resume_alone(run: Path, data, runs, tries=4) -> None:
    """resume=<run> alone (each resume of a stop_after run is one more slice) until the run is finished."""
    for _ in range(tries):
        run_train([f"resume={run}"], data, runs, extra=False)
        if json.loads((run / "summary.json").read_text()).get("finished"):
            return
    raise AssertionError(f"{run} did not finish in {tries} resumes")


@pytest.mark.slow
@pytest.mark.parametrize("devices,strategy", [(1, "auto"), (2, "ddp_spawn"), (2, "ddp")])
def test_stop_after_at_a_step_that_logs_nothing_then_resume_alone(reference, tiny_data, tmp_path, devices, strategy):
    """ddp_spawn's workers and ddp's relaunched rank both stop at the slice's end and return normally; step 5 logs
    no row (rows every 3 steps), and the stop adds none (Lightning would repeat step 3's); the parent of ddp_spawn's
    workers reads why they stopped from last.ckpt."""
    run = tmp_path / strategy
    p = run_train(["trainer.accelerator=cpu", f"trainer.devices={devices}", f"trainer.strategy={strategy}", *RUN,
                   "trainer.stop_after=5", f"hydra.run.dir={run}"], tiny_data, tmp_path)
    assert "stopped at step 5 (trainer.stop_after=5)" in p.stdout + p.stderr
    s = json.loads((run / "summary.json").read_text())
    assert (s["finished"], s["steps"], s["stopped"]) == (False, 5, "trainer.stop_after=5")
    resume_alone(run, tiny_data, tmp_path)
    assert_same_records(run, reference)


@pytest.mark.slow
@pytest.mark.parametrize("first,then", [
    (["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp_spawn"],
     ["trainer.devices=1", "trainer.strategy=auto"]),
    ([], ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp_spawn"])], ids=["2to1", "1to2"])
def test_a_resume_on_another_number_of_ranks_keeps_the_global_batch_and_data_order(reference, tiny_data, tmp_path,
                                                                                     first, then):
    run = tmp_path / "moved"
    run_train([*first, *RUN, "trainer.stop_after=6", f"hydra.run.dir={run}"], tiny_data, tmp_path)
    p = run_train([f"resume={run}", "trainer.stop_after=null", *then], tiny_data, tmp_path, extra=False)
    accumulation = 2 if "trainer.devices=1" in then else 1  # 8 sequences a step either way
    devices = 3 - accumulation
    assert (f"tokens per iteration: 256 = {accumulation} accumulation x 4 micro batch x 32 block x {devices} "
            "device(s)") in p.stdout
    assert json.loads((run / "summary.json").read_text())["finished"]
    assert_same_records(run, reference)


@pytest.mark.slow
def test_fsdp_on_two_cpu_processes_resumes_exactly_agrees_with_ddp_and_its_checkpoint_loads(reference, tiny_data,
                                                                                             tmp_path):
    fsdp = ["trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2", *RUN]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run_train([*fsdp, f"hydra.run.dir={whole}"], tiny_data, tmp_path)
    run_train([*fsdp, "trainer.stop_after=5", f"hydra.run.dir={cut}"], tiny_data, tmp_path)
    resume_alone(cut, tiny_data, tmp_path)
    assert_same_records(cut, whole, tol=0.0)  # FSDP against FSDP: the same sums in the same order
    assert_same_records(whole, reference)  # against one process: float reduction order only
    # one consolidated checkpoint, with the keys a DDP run's has: every reader takes it as it is
    from gptlab.model.checkpoint import read_checkpoint
    keys = set(read_checkpoint(whole / "checkpoints" / "last.ckpt")["state_dict"])
    assert keys == set(read_checkpoint(reference / "checkpoints" / "last.ckpt")["state_dict"])
    env = {"GPTLAB_DATA": str(tiny_data), "GPTLAB_RUNS": str(tmp_path)}
    out = {}
    for cmd in (["eval", f"model={whole}"], ["sample", f"model={whole}", "max_new_tokens=4"],
                ["generations", f"models=[{whole}]", "prompts=builtin", "n_samples=1", "max_new_tokens=4",
                 f"out={tmp_path / 'gen'}"], ["hf", "export", f"model={whole}", f"out={tmp_path / 'hf'}"]):
        done = in_process(cmd[0], cmd[1:], env)
        out[cmd[0]] = done.stdout + done.stderr
    assert abs(float(out["eval"].split(": difference ")[1].split(" ")[0])) < 1e-5  # eval reproduces training
    assert (tmp_path / "gen" / "generations.json").is_file() and (tmp_path / "hf" / "config.json").is_file()


def test_muon_with_fsdp_is_refused_in_one_line(tmp_path):
    """Refused for what it asks, before the dataset is looked for (here there is none: a fresh clone's case)."""
    env = {**os.environ, "GPTLAB_RUNS": str(tmp_path), "GPTLAB_DATA": str(tmp_path / "no_data")}
    p = subprocess.run([sys.executable, "-m", "gptlab.train", "trainer=fsdp", "trainer.accelerator=cpu",
                        "trainer.devices=2", "optim=muon"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].endswith("use trainer=ddp with Muon, or optim=adamw with FSDP")


def test_the_sbatch_script_submitit_writes_for_two_nodes_of_eight_gpus(tmp_path):
    """hydra/launcher=slurm as a user types it, with sbatch and srun replaced by stand-ins: the script it submits
    asks for 2 nodes, 8 tasks and 8 GPUs on each, submitit's warning signal, and starts the ranks with srun."""
    bin_dir, script = tmp_path / "bin", tmp_path / "job.sbatch"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {script}\necho "Submitted batch job 1234"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit checks that srun exists
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "GPTLAB_RUNS": str(tmp_path)}
    p = subprocess.Popen([sys.executable, "-m", "gptlab.train", "-m", "hydra/launcher=slurm", "trainer=ddp",
                          "trainer.devices=8", "trainer.num_nodes=2", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # after sbatch, submitit waits for the job forever: stop it once the script is captured
        end = time.time() + 120
        while not script.is_file() and p.poll() is None and time.time() < end:
            time.sleep(0.05)
    finally:
        p.kill()
        p.wait()
    lines = script.read_text().splitlines()
    for want in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --signal=USR2@120"):
        assert want in lines
    srun = [x for x in lines if x.startswith("srun ")]
    assert len(srun) == 1 and "-m submitit.core._submit" in srun[0]
