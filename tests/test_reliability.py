"""Faults and what they must not damage: SIGKILL and resume, a full disk, NaN losses, killed prepares, two writers.

    .venv/bin/python -m pytest tests/test_reliability.py -q -m "not slow"    # the fast ones (seconds)
    .venv/bin/python -m pytest tests/test_reliability.py -q                  # + kill/resume and CLI runs (~2 min)
    GPTLAB_KILL_SEED=123 .venv/bin/python -m pytest tests/test_reliability.py -k kill   # replay given kill steps
"""
import csv
import errno
import hashlib
import io
import os
import random
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, TINY, run_train

from gptlab import fs
from gptlab.run.lock import RunFolderError, RunLock, claim
from gptlab.training.drills import InjectNonFinite
from gptlab.training.guards import (
    WRITE_DELAY_ENV,
    AtomicCheckpointIO,
    CheckpointWriteError,
    FiniteLossGuard,
    NonFiniteLoss,
    RNGState,
)

# --- helpers -----------------------------------------------------------------------------------------------------


def ckpt(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train_cmd(args):
    return [sys.executable, "-m", "gptlab.train", "data=text", "data.name=tiny", *TINY, *args]


def start_train(args, data_root, runs, log: Path, env=None) -> subprocess.Popen:
    """python -m gptlab.train in the background, stdout and stderr to `log` (a pipe could fill and block it)."""
    env = {**os.environ, "GPTLAB_DATA": str(data_root), "GPTLAB_RUNS": str(runs), "WANDB_SILENT": "true", **(env or {})}
    out = open(log, "w")
    return subprocess.Popen(train_cmd(args), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(cond, proc: subprocess.Popen, what: str, log: Path, timeout=300.0) -> None:
    """Poll cond() every 10 ms until it holds; fail if proc ends first or the time runs out."""
    end = time.time() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.time() > end:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def sigkill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL


def read_trace(path) -> list[tuple[int, int, int, int]]:
    """BatchTrace lines (pid, step, k, crc32); a last line cut by the kill (no newline) is dropped."""
    if not Path(path).exists():
        return []
    text = Path(path).read_text()
    return [tuple(map(int, line.split())) for line in text[:text.rfind("\n") + 1].splitlines()]


def metric_rows(run, cols=("step", "tokens", "lr", "train/loss", "val/loss", "val/ppl")) -> list[tuple]:
    """metrics.csv as tuples of the columns that do not depend on timing, cells compared as written."""
    with open(Path(run) / "metrics.csv", newline="") as f:
        return [tuple(r.get(c, "") for c in cols) for r in csv.DictReader(f)]


# --- SIGKILL at random steps and mid-checkpoint, then resume: the same run ---------------------------------------

KILL_RUN = ["trainer.max_steps=30", "trainer.eval_interval=5", "data.global_batch=8", "model.dropout=0.1"]
ACCUM = 2  # data.global_batch=8 / data.batch_size=4: two micro batches a step, 60 batches in all


def trace_args(path):
    return ["+callbacks.trace._target_=gptlab.training.drills.BatchTrace", f"+callbacks.trace.path={path}"]


@pytest.mark.slow
def test_sigkill_and_resume_equals_an_uninterrupted_run(tiny_data, tmp_path):
    """Three SIGKILLs (at a random step, in the middle of a checkpoint write, just after a checkpoint lands), each
    followed by resume=: final weights, optimizer state, data position and every metrics.csv row equal the
    uninterrupted run's bit for bit. CPU, one thread, the same ops in the same order: nothing may differ, so no
    tolerance is needed, and a missed RNG state, a skipped or repeated batch or a lost val row shows up as a
    difference. Dropout 0.1 and gradient accumulation are on: the RNG state and the micro-batch stream are checked."""
    seed = int(os.environ.get("GPTLAB_KILL_SEED") or random.randrange(10**6))
    rng, note = random.Random(seed), f"(GPTLAB_KILL_SEED={seed} replays these kill steps)"
    ref, run = tmp_path / "ref", tmp_path / "run"
    ref_trace, trace, ckpts = tmp_path / "ref_trace.txt", tmp_path / "trace.txt", run / "checkpoints"
    reference = start_train([*KILL_RUN, *trace_args(ref_trace), f"hydra.run.dir={ref}"], tiny_data, tmp_path,
                            tmp_path / "ref.log")

    def steps_seen(pid):
        return max((s for p, s, _, _ in read_trace(trace) if p == pid), default=-1)

    def last_step():
        return ckpt(ckpts / "last.ckpt")["global_step"]  # loads with weights_only=True, or the test fails here

    starts, pids = [0], []
    # 1. a fresh run, killed at a random step once it has a checkpoint
    kill_at = rng.randint(6, 22)
    log = tmp_path / "attempt1.log"
    p = start_train([*KILL_RUN, *trace_args(trace), f"hydra.run.dir={run}"], tiny_data, tmp_path, log)
    wait_for(lambda: (ckpts / "last.ckpt").exists() and steps_seen(p.pid) >= kill_at, p, f"step {kill_at}", log)
    sigkill(p)
    pids.append(p.pid)
    s1 = last_step()
    assert s1 % 5 == 0 and 5 <= s1 <= kill_at, note
    starts.append(s1)

    # 2. resumed, killed half way through writing its first checkpoint (the writer pauses there: WRITE_DELAY_ENV)
    log = tmp_path / "attempt2.log"
    p = start_train([*KILL_RUN, *trace_args(trace), f"resume={run}", f"hydra.run.dir={tmp_path / 'call2'}"],
                    tiny_data, tmp_path, log, env={WRITE_DELAY_ENV: "30"})
    wait_for(lambda: any(f.stat().st_size >= 1 << 20 for f in ckpts.glob(".*.tmp")), p, "a checkpoint write", log)
    sigkill(p)
    pids.append(p.pid)
    partial = list(ckpts.glob(".*.tmp"))
    assert len(partial) == 1 and partial[0].name.startswith(".last.ckpt.")  # the kill hit the write ...
    assert 0 < partial[0].stat().st_size < (ckpts / "last.ckpt").stat().st_size
    assert last_step() == s1, note  # ... and last.ckpt is still the complete previous one
    starts.append(s1)

    # 3. resumed again (the stale temp file goes), killed the moment a checkpoint lands after a random step: with
    #    'last' saved before its validation (Lightning's every_n_train_steps) that validation's row would be lost
    after = rng.randint(s1 + 1, 24)
    log = tmp_path / "attempt3.log"
    p = start_train([*KILL_RUN, *trace_args(trace), f"resume={run}", f"hydra.run.dir={tmp_path / 'call3'}"],
                    tiny_data, tmp_path, log)
    wait_for(lambda: steps_seen(p.pid) >= after, p, f"step {after}", log)
    inode = (ckpts / "last.ckpt").stat().st_ino
    wait_for(lambda: (ckpts / "last.ckpt").stat().st_ino != inode, p, "the next checkpoint", log)
    sigkill(p)
    pids.append(p.pid)
    assert not partial[0].exists()  # removed under the lock: no live writer owned it
    s3 = last_step()
    assert s3 % 5 == 0 and after < s3 <= after + 5, note
    starts.append(s3)

    # 4. resumed to the end
    run_train([*KILL_RUN, *trace_args(trace), f"resume={run}", f"hydra.run.dir={tmp_path / 'call4'}"], tiny_data,
              tmp_path)
    assert reference.wait(600) == 0, (tmp_path / "ref.log").read_text()[-3000:]

    # the reference read batches k = 0..59 in order, and batch k is TrainWindows.batch_at(k), computed here apart
    from gptlab.data.datamodule import TrainWindows
    from gptlab.data.shards import open_split
    want = read_trace(ref_trace)
    assert [(s, k) for _, s, k, _ in want] == [(k // ACCUM, k) for k in range(30 * ACCUM)]
    windows = TrainWindows([m.filename for m in open_split(tiny_data / "tiny", "train")], 32, 4, 1337, 0)
    assert [c for *_, c in want] == [zlib.crc32(windows.batch_at(k)[0].contiguous().numpy().tobytes())
                                     for k in range(30 * ACCUM)]
    # the interrupted run: what each attempt trained before the next one resumed from its checkpoint
    lines = read_trace(trace)
    pids.append(lines[-1][0])
    assert len(set(pids)) == 4 and [p for p, *_ in lines] == sorted([p for p, *_ in lines], key=pids.index)
    kept = []
    for i, pid in enumerate(pids):
        mine = [(s, k, c) for p, s, k, c in lines if p == pid]
        assert mine[0][:2] == (starts[i], starts[i] * ACCUM), note  # each attempt starts where its checkpoint ends
        kept += [line for line in mine if i + 1 == len(pids) or line[0] < starts[i + 1]]
    assert kept == [(s, k, c) for _, s, k, c in want], note  # no window twice, none skipped, the same data

    a, b = ckpt(ref / "checkpoints" / "last.ckpt"), ckpt(ckpts / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 30
    dm = next(k for k in a if k.endswith("TokenDataModule"))
    assert a[dm] == b[dm] == {"train_batches": 30 * ACCUM, "global_batches": 30 * ACCUM}  # one process
    for k, v in a["state_dict"].items():
        assert torch.equal(b["state_dict"][k], v), f"{k} differs {note}"
    for i, st in a["optimizer_states"][0]["state"].items():
        assert all(torch.equal(b["optimizer_states"][0]["state"][i][n], t) for n, t in st.items()), note
    assert metric_rows(run) == metric_rows(ref), note  # every train and val row, to the last digit
    assert not any(ckpts.glob(".*.tmp"))


def test_resume_writes_into_the_resumed_folder(tmp_path, monkeypatch):
    """resume= points paths.run_dir (hence the checkpoint callbacks' dirpath) at the resumed run, not at the new
    folder Hydra makes for the command: else a second crash resumes from a stale last.ckpt."""
    from hydra import compose, initialize_config_dir

    from gptlab.training.compose import compose_run
    (tmp_path / "old" / "checkpoints").mkdir(parents=True)
    (tmp_path / "old" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"resume={tmp_path / 'old'}", "paths.run_dir=/new/folder/hydra/made"])
    run = compose_run(cfg)[0]
    assert run.callbacks["last"]["dirpath"] == run.callbacks["best"]["dirpath"] == f"{tmp_path / 'old'}/checkpoints"


# --- checkpoint writes: atomic, and a failure leaves the previous file --------------------------------------------


def test_checkpoint_is_replaced_whole(tmp_path):
    io_ = AtomicCheckpointIO()
    path = tmp_path / "ck" / "last.ckpt"
    for step in (1, 2):
        io_.save_checkpoint({"global_step": step, "w": torch.full((1000,), float(step))}, path)
        assert ckpt(path)["global_step"] == step
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temp file left


class FullDisk(io.RawIOBase):
    """A file that takes `room` bytes, then fails every write with ENOSPC as a full disk does."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def flush(self):
        self.f.flush()

    def fileno(self):
        return self.f.fileno()

    def close(self):
        self.f.close()


def failing(error):
    """A stand-in for an os function that fails with `error`."""
    def fail(*args):
        raise error
    return fail


@pytest.mark.parametrize("where", ["write", "fsync", "rename"])
def test_full_disk_fails_the_write_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, where):
    io_ = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io_.save_checkpoint({"global_step": 5, "w": torch.ones(100_000)}, path)
    before = sha(path)
    if where == "write":  # the disk fills after 64 KiB of the new file
        real_open = open
        monkeypatch.setattr(fs, "open", lambda p, mode: FullDisk(real_open(p, mode), 1 << 16), raising=False)
    elif where == "fsync":  # delayed allocation: the error comes when the data is flushed to disk
        monkeypatch.setattr(fs.os, "fsync", failing(OSError(errno.ENOSPC, "No space left on device")))
    else:
        monkeypatch.setattr(fs.os, "replace", failing(OSError(errno.EIO, "Input/output error")))
    with pytest.raises(CheckpointWriteError) as e:
        io_.save_checkpoint({"global_step": 10, "w": torch.zeros(100_000)}, path)
    msg = str(e.value)
    assert f"writing checkpoint {path} failed" in msg and "the previous last.ckpt is untouched" in msg
    assert ("No space left on device" in msg) if where != "rename" else ("Input/output error" in msg)
    assert sha(path) == before and ckpt(path)["global_step"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


@pytest.fixture
def tiny_fs(tmp_path):
    """A real 32 MiB tmpfs (root only; skipped where mount is not allowed): room for one tiny checkpoint, not two."""
    mnt = tmp_path / "tiny_fs"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def tiny_trainer(ckpt_dir, max_steps, callbacks=(), log_every=1, **kw):
    """The Trainer gptlab.train builds, reduced: 'last' saved after each validation (every 5 steps), the guards,
    the atomic checkpoint writer; CPU, no logger."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    last = ModelCheckpoint(dirpath=str(ckpt_dir), filename="last", save_on_train_epoch_end=False,
                           enable_version_counter=False)
    return L.Trainer(accelerator="cpu", max_steps=max_steps, val_check_interval=5, check_val_every_n_epoch=None,
                     log_every_n_steps=log_every, logger=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, use_distributed_sampler=False, plugins=[AtomicCheckpointIO()],
                     callbacks=[last, *callbacks, FiniteLossGuard(ckpt_dir), RNGState()], **kw)


def tiny_module_and_data(data_root, max_steps):
    from gptlab.data.datamodule import TokenDataModule
    from gptlab.training.module import GPTModule
    torch.manual_seed(0)
    module = GPTModule(dict(n_layer=1, n_head=2, n_embd=32, block_size=32), optim=dict(lr=3e-3),
                       sched=dict(warmup_steps=2), max_steps=max_steps, tokens_per_step=128)
    return module, TokenDataModule(str(data_root / "tiny"), 32, 4, val_tokens=256, seed=1337)


def test_a_real_full_disk_keeps_the_last_good_checkpoint(tiny_data, tiny_fs):
    """The kernel's own ENOSPC: the step-10 checkpoint's temp file does not fit beside the step-5 one."""
    module, dm = tiny_module_and_data(tiny_data, 12)
    with pytest.raises(CheckpointWriteError, match=r"No space left on device \(errno 28\); the previous last.ckpt "
                                                   r"is untouched"):
        tiny_trainer(tiny_fs, 12).fit(module, datamodule=dm)
    assert ckpt(tiny_fs / "last.ckpt")["global_step"] == 5 and os.listdir(tiny_fs) == ["last.ckpt"]


# --- NaN / Inf losses --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_nonfinite_loss_stops_before_any_checkpoint_takes_it(tiny_data, tmp_path, value):
    """Weights broken at step 7 (between the checkpoints of steps 5 and 10), losses logged every 10 steps: the
    guard stops at the validation of step 10, before its checkpoint, naming step 7; last.ckpt stays at step 5."""
    module, dm = tiny_module_and_data(tiny_data, 20)
    trainer = tiny_trainer(tmp_path, 20, [InjectNonFinite(7, value)], log_every=10)
    with pytest.raises(NonFiniteLoss, match=r"non-finite training loss \(nan\) at step 7; .*"
                                            r"The last good checkpoint is .*last\.ckpt \(step 5\)"):
        trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 10  # it ran on to the next check: no host sync on the steps between
    assert ckpt(tmp_path / "last.ckpt")["global_step"] == 5
    assert torch.isfinite(ckpt(tmp_path / "last.ckpt")["state_dict"]["model.transformer.ln_f.weight"]).all()


def test_guard_reads_the_device_flag_only_on_log_steps_and_before_saves(monkeypatch):
    """Inf counts as non-finite; between checks nothing is read back to the host (no .item(), bool(), float(): on a
    GPU each would be a sync), and checks come on logging steps only (and before validations and checkpoints)."""
    from types import SimpleNamespace
    guard, checks, reads = FiniteLossGuard(), [], []
    real_check = guard.check
    guard.check = lambda t: checks.append(t.global_step)
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _n=name, _r=real: reads.append(_n) or _r(self, *a))
    trainer = SimpleNamespace(global_step=0, log_every_n_steps=10, strategy=SimpleNamespace(all_gather=lambda t: t))
    for step in range(25):
        guard.on_train_batch_start(trainer, None, None, step)
        trainer.global_step = step + 1
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(float("inf") if step == 21 else 2.0)}, None, step)
    assert checks == [10, 20] and reads == []  # 25 steps: two checks, and nothing read between them
    with pytest.raises(NonFiniteLoss, match=r"\(inf\) at step 21; .*No checkpoint had been written yet"):
        real_check(trainer)
    assert reads  # the check itself reads the flag: one sync


@pytest.mark.slow
def test_nonfinite_loss_cli(tiny_data, tmp_path):
    """From the command line: a real divergence (lr 1e6, no clipping, no warmup) before the first checkpoint, and a
    drill after it; both exit 1 with one line naming the step, and the drill's run resumes from its good checkpoint."""
    run = tmp_path / "diverged"
    p = run_train(["trainer.max_steps=20", "optim.lr=1e6", "trainer.grad_clip=0", "sched.warmup_steps=0",
                   "trainer.log_every_n_steps=1", f"hydra.run.dir={run}"], tiny_data, tmp_path, check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert "error: non-finite training loss (nan) at step 2;" in p.stderr
    assert "No checkpoint had been written" in p.stderr
    assert not (run / "checkpoints" / "last.ckpt").exists()

    run = tmp_path / "drill"
    p = run_train(["trainer.max_steps=12", "+callbacks.nan._target_=gptlab.training.drills.InjectNonFinite",
                   "+callbacks.nan.step=7", f"hydra.run.dir={run}"], tiny_data, tmp_path, check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert f"non-finite training loss (nan) at step 7; training stopped before any checkpoint took it in. The last " \
           f"good checkpoint is {run}/checkpoints/last.ckpt (step 5)." in p.stderr
    assert ckpt(run / "checkpoints" / "last.ckpt")["global_step"] == 5
    p = run_train([f"resume={run}"], tiny_data, tmp_path, check=False, extra=False)  # the same run: the drill again
    assert p.returncode == 1 and "non-finite training loss (nan) at step 7" in p.stderr
    p = run_train([f"resume={run}", "+callbacks.nan.step=100"], tiny_data, tmp_path, extra=False)  # disarmed
    assert "changed: callbacks.nan.step: 7 -> 100" in p.stdout
    assert ckpt(run / "checkpoints" / "last.ckpt")["global_step"] == 12


# --- metrics.csv across a kill -----------------------------------------------------------------------------------


def test_resume_drops_a_metrics_row_cut_by_the_kill(tmp_path):
    from gptlab.run.records import AppendingCSVLogger
    header = "epoch,lr,step,tokens,train/loss,val/loss\r\n"
    rows = "0,0.001,0,128.0,10.7,\r\n0,0.002,1,256.0,10.5,\r\n0,,1,256.0,,10.4\r\n0,0.003,2,384.0,10.3,\r\n"
    (tmp_path / "metrics.csv").write_bytes((header + rows + "0,0.003,3,51").encode())  # killed mid-row
    AppendingCSVLogger(tmp_path, resume_tokens=256).experiment  # resumed from the step-2 checkpoint
    assert (tmp_path / "metrics.csv").read_bytes().decode() == header + rows[:rows.index("0,0.003,2")]


# --- prepare killed half way ---------------------------------------------------------------------------------------


def test_sigkilled_prepare_leaves_nothing_a_run_reads(tmp_path):
    """SIGKILL once the first shard is on disk: no manifest, so the dataset is refused; the rerun cleans up."""
    from gptlab.data.datamodule import TokenDataModule
    from gptlab.data.shards import ShardError
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    words = np.array("the cat sat on a mat and then it ran far away to see what was there".split())
    for i in range(20):
        (src / f"{i:02d}.txt").write_text(" ".join(rng.choice(words, 20_000)))
    out = tmp_path / "data" / "big"
    cmd = [sys.executable, "-m", "gptlab.prepare", "data=text", "data.name=big", "workers=1", "data.shard_tokens=5000",
           f"data.source_args.paths=[{src}]", f"paths.data_dir={tmp_path / 'data'}"]
    log = tmp_path / "prepare.log"
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    wait_for(lambda: out.is_dir() and any(out.glob("train_*.bin")), p, "the first shard", log, timeout=120)
    sigkill(p)
    assert any(out.glob("train_*.bin")) and not (out / "manifest.json").exists()
    with pytest.raises(ShardError, match=r"manifest\.json is missing \(not prepared, or preparation was interrupted\)"):
        TokenDataModule(str(out), 32, 4).check()
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True).returncode == 0
    TokenDataModule(str(out), 32, 4).check()
    assert not list(out.glob(".*.tmp"))


# --- one writer per run folder -------------------------------------------------------------------------------------

HOLD = "import sys; from gptlab.run.lock import RunLock; RunLock(sys.argv[1]).acquire(); " \
       "print('locked', flush=True); import time; time.sleep(120)"


def test_released_lock_leaves_no_file_and_a_stale_open_file_is_not_a_lock(tmp_path):
    lock = RunLock(tmp_path).acquire()
    assert (tmp_path / ".lock").read_text().startswith(f"pid {os.getpid()} on ")
    stale = os.open(tmp_path / ".lock", os.O_RDWR)  # what a second process may have opened just before the release
    lock.release()
    assert not (tmp_path / ".lock").exists()
    again = RunLock(tmp_path).acquire()  # the new file is the lock, whatever happens to the unlinked one
    import fcntl
    fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the old inode is free, but no longer at the path
    with pytest.raises(RunFolderError, match="is in use by a running gptlab.train"):
        RunLock(tmp_path).acquire()
    os.close(stale)
    again.release()


def hold_lock(run_dir) -> subprocess.Popen:
    """Another process holding the run folder's lock (gptlab.run.lock imports no torch: this starts in
    ~0.1 s)."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_a_live_run_locks_its_folder_and_a_killed_one_does_not(tmp_path):
    holder = hold_lock(tmp_path)
    with pytest.raises(RunFolderError, match=rf"run folder {tmp_path} is in use by a running gptlab.train "
                                             rf"\(pid {holder.pid} on .*\); wait for it"):
        RunLock(tmp_path).acquire()
    sigkill(holder)  # the kernel drops a dead process's flock: nothing stale to clean up
    RunLock(tmp_path).acquire().release()


def test_a_fresh_run_is_refused_where_a_run_exists(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    claim(tmp_path, resuming=False).release()  # an empty folder (Hydra's .hydra/ only) is fine
    (tmp_path / "metrics.csv").write_text("step\n")
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (tmp_path / "checkpoints" / ".last.ckpt.123.abcd.tmp").write_bytes(b"half")
    with pytest.raises(RunFolderError, match=r"already holds a run \(metrics.csv, checkpoints/last.ckpt\); .*"
                                             rf"Continue it with resume={tmp_path}"):
        claim(tmp_path, resuming=False)
    lock = claim(tmp_path, resuming=True)  # resuming it is what the folder is for; the killed write's temp goes
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))
    lock.release()


@pytest.mark.parametrize("how", ["resume", "run_dir"])
def test_cli_refuses_a_second_writer_before_importing_torch(tmp_path, how):
    run = tmp_path / "live"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not read: refused before")
    holder = hold_lock(run)
    target = [f"resume={run}", f"hydra.run.dir={tmp_path / 'call'}"] if how == "resume" else [f"hydra.run.dir={run}"]
    env = {**os.environ, "GPTLAB_DATA": str(tmp_path), "GPTLAB_JEMALLOC": "0"}
    t0 = time.time()
    p = subprocess.run(train_cmd(target), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    sigkill(holder)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert f"error: run folder {run} is in use by a running gptlab.train (pid {holder.pid}" in p.stderr
    assert time.time() - t0 < 60
