"""Security: checkpoints load with weights_only=True only (a pickled payload is refused unrun), config _target_s
are limited to classes from gptlab, torch and lightning, and the W&B key never lands in a run folder.

    .venv/bin/python -m pytest tests/test_security.py -q -m "not slow"
"""
import ast
import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import ROOT, run_train
from omegaconf import OmegaConf

from gptlab.config import ConfigError
from gptlab.model.checkpoint import LoadError, read_checkpoint
from gptlab.model.load import load_model

# --- a checkpoint that runs code when unpickled ---------------------------------------------------------------------


class Payload:
    """Unpickles as os.mkdir(marker): harmless, and visible if it ever runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def crafted_checkpoint(path: Path, marker: Path, legacy: bool = False) -> Path:
    """A gptlab-looking checkpoint (real weights, hyper-parameters, step) with the payload among its loop states."""
    from gptlab.training.module import GPTModule
    module = GPTModule(dict(n_layer=1, n_head=2, n_embd=32, block_size=32))
    ckpt = {"loops": {"fit_loop": Payload(marker)}, "global_step": 5, "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams), "optimizer_states": []}  # the payload first: it runs first
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return path


def unpickle_plainly(path: Path) -> None:
    """What a plain pickle load (torch.load without weights_only) does with the file's object pickle."""

    class Plain(pickle.Unpickler):
        def persistent_load(self, pid):  # tensor storages: not needed to reach the payload
            return None

    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    try:
        Plain(io.BytesIO(data)).load()
    except Exception:  # the tensors after the payload do not rebuild without storages; the payload already ran
        pass


@pytest.fixture
def payload(tmp_path):
    """(run folder whose checkpoints are crafted, the .ckpt, the marker the payload would create)."""
    marker = tmp_path / "payload-ran"
    run = tmp_path / "run"
    path = crafted_checkpoint(run / "checkpoints" / "last.ckpt", marker)
    crafted_checkpoint(run / "checkpoints" / "best.ckpt", marker)
    return run, path, marker


def test_the_crafted_payload_is_live(payload):
    """The control: unpickled without weights_only, the file runs its payload."""
    _, path, marker = payload
    unpickle_plainly(path)
    assert marker.is_dir()


def lightning_load(path):
    from gptlab.training.guards import AtomicCheckpointIO
    return AtomicCheckpointIO().load_checkpoint(path, weights_only=True)  # what trainer.fit(ckpt_path=...) calls


def resume_step(path):
    from gptlab.model.checkpoint import checkpoint_step
    return checkpoint_step(path)  # what resume= reads first


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("loader", [read_checkpoint, load_model, resume_step, lightning_load,
                                    lambda p: load_model(p.parent.parent)], ids=["read", "load_model", "resume",
                                                                                 "lightning", "run_folder"])
def test_every_loader_refuses_the_payload_without_running_it(tmp_path, loader, legacy):
    marker = tmp_path / "payload-ran"
    path = crafted_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt", marker, legacy)
    with pytest.raises((LoadError, pickle.UnpicklingError)) as e:
        loader(path)
    assert "posix.mkdir" in str(e.value) and "eights" in str(e.value)  # names the global (and weights_only)
    if isinstance(e.value, LoadError):
        assert f"{path}: refused: it pickles posix.mkdir, which could run code when loaded" in str(e.value)
    assert not marker.exists()


def calls(tree, name):
    """Every call of `<something>.name(...)` or `name(...)` in an AST."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == name) or (isinstance(f, ast.Name) and f.id == name):
                yield node


def test_no_load_without_weights_only_true():
    """Static: every torch.load and every Trainer.fit(ckpt_path=...) in gptlab passes weights_only=True; nothing in
    the repository asks torch.load for the unsafe opposite."""
    unsafe = "weights_only=" + "False"  # spelled apart so this file does not match itself
    for f in sorted(f for d in ("gptlab", "tests", "benchmarks", "experiments") for f in (ROOT / d).glob("**/*.py")):
        text = f.read_text()
        assert unsafe not in text.replace(" ", ""), f
        if f.parent.name != "gptlab":
            continue
        tree = ast.parse(text)
        for call in [*calls(tree, "load"), *calls(tree, "fit")]:
            src = ast.unparse(call)
            is_torch_load = src.startswith("torch.load(")
            if is_torch_load or any(k.arg == "ckpt_path" for k in call.keywords):
                kw = {k.arg: k.value for k in call.keywords}
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, \
                    f"{f.name}:{call.lineno}: {src}"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["resume", "init"])
def test_cli_refuses_the_payload(tiny_data, payload, tmp_path, how):
    run, path, marker = payload
    args = [f"resume={run}"] if how == "resume" else ["experiment=finetune", f"init={path}"]
    p = run_train([*args, f"hydra.run.dir={tmp_path / 'call'}", "trainer.max_steps=2"], tiny_data, tmp_path,
                  check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]  # refused before any work
    assert f"error: {path}: refused: it pickles posix.mkdir, which could run code when loaded" in p.stderr
    assert not marker.exists()
    assert sorted(os.listdir(run / "checkpoints")) == ["best.ckpt", "last.ckpt"] and not (run / "metrics.csv").exists()


# --- Hydra _target_ --------------------------------------------------------------------------------------------------


def with_marker(v, marker):
    """spec with {marker} replaced by the marker file's path, at any depth."""
    if isinstance(v, dict):
        return {k: with_marker(x, marker) for k, x in v.items()}
    if isinstance(v, list):
        return [with_marker(x, marker) for x in v]
    return v.replace("{marker}", str(marker)) if isinstance(v, str) else v


@pytest.mark.parametrize("spec,message", [
    ({"_target_": "os.system", "_args_": ["touch {marker}"]}, "only classes from gptlab.*, torch.*, lightning.*"),
    ({"_target_": "torch.os.system", "_args_": ["touch {marker}"]}, "is not a class"),  # re-exported by torch
    ({"_target_": "torch.save", "_args_": [1, "{marker}"]}, "is not a class"),  # a file write from a config
    ({"_target_": "gptlab.training.compose.os.system", "_args_": ["touch {marker}"]}, "is not a class"),
    ({"_target_": "gptlab.training.callbacks.Progress",
      "refresh_every": {"_target_": "torch.save", "_args_": [1, "{marker}"]}},
     "callbacks.x.refresh_every._target_='torch.save' is not a class"),  # nested targets are checked too
    ({"_target_": "torch.nn.Linear", "in_features": 1, "out_features": 1}, "is not a Lightning Callback"),
    ({"_target_": "lightning.pytorch.callbacks.model_checkpoint.os.PathLike"}, "is a class from os"),
    ({"_target_": "gptlab.no_such_module.Callback"}, "cannot be found"),
])
def test_targets_outside_gptlab_torch_lightning_classes_are_refused(tmp_path, spec, message):
    from gptlab.training.components import safe_instantiate
    marker = tmp_path / "target-ran"
    node = OmegaConf.create({"x": with_marker(spec, marker)})
    with pytest.raises(ConfigError) as e:
        safe_instantiate(node)
    assert message in str(e.value) and str(e.value).startswith("callbacks.x")
    assert not marker.exists()


def test_callback_classes_from_the_allowed_packages_are_instantiated(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from gptlab.training.callbacks import Progress
    from gptlab.training.components import safe_instantiate
    got = safe_instantiate(OmegaConf.create({
        "stop": {"_target_": "gptlab.training.callbacks.Progress", "refresh_every": 3},
        "ck": {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint", "dirpath": str(tmp_path)},
        "off": None}))  # a default entry switched off with callbacks.off=null
    assert [type(c) for c in got] == [Progress, ModelCheckpoint]


# --- secrets -------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_wandb_key_never_reaches_the_run_folder(tiny_data, tmp_path):
    """A unique fake key in WANDB_API_KEY, W&B offline: no file of the run (config, summary, metrics, wandb/ logs
    and run files, Hydra's .hydra/), none under HOME, and no console line holds it."""
    key = "gptlabfake" + os.urandom(15).hex()  # 40 characters, as W&B keys are
    run = tmp_path / "run"
    env = {"HOME": str(tmp_path), "WANDB_API_KEY": key, "WANDB_MODE": None, "WANDB_DIR": None, "NETRC": None}
    p = run_train(["logger=wandb", "logger.wandb.mode=offline", "trainer.max_steps=3", f"hydra.run.dir={run}"],
                  tiny_data, tmp_path, env=env)
    files = [f for f in tmp_path.rglob("*") if f.is_file()]  # the run folder, and the HOME W&B may write to
    assert len(files) > 10 and any("wandb" in f.parts for f in files)  # the offline run was written
    leaks = [str(f) for f in files if key.encode() in f.read_bytes()]
    assert not leaks and key not in p.stdout + p.stderr, leaks
