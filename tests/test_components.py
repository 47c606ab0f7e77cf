"""One source for every setting, and components that drop in: a preset file only overrides its schema (so the YAML
and the code cannot disagree about a default), and a new optimizer or logger is one YAML file, no Python.

    .venv/bin/python -m pytest tests/test_components.py -q
"""
import dataclasses
import inspect
import shutil

import pytest
import torch
import yaml
from helpers import ROOT, run_train

from gptlab.config.commands import DataConfig, PathsConfig
from gptlab.config.schema import GPTConfig, SampleConfig, TrainerConfig
from gptlab.config.store import comments, field_comments, schemas
from gptlab.data.sources import SOURCES
from gptlab.optim.schedule import Schedule

CONF = ROOT / "conf"
SCHEMA_GROUPS = {"model": GPTConfig, "data": DataConfig, "trainer": TrainerConfig, "sched": Schedule}


def defaults(schema) -> dict:
    out = {}
    for f in dataclasses.fields(schema):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def overridden(path, schema) -> list[str]:
    """The keys of a preset file that repeat their schema's default (or are no key of it)."""
    data = {k: v for k, v in (yaml.safe_load(path.read_text()) or {}).items() if not k.startswith("_")
            and k != "defaults"}
    known = defaults(schema)
    return [k for k, v in data.items() if k not in known or (known[k] == v and type(known[k]) is type(v))]


@pytest.mark.parametrize("path", sorted(p for g in SCHEMA_GROUPS for p in (CONF / g).glob("*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_preset_only_overrides_its_schema(path):
    """No default written twice: a preset's every key is its schema's and differs from the schema's default."""
    assert overridden(path, SCHEMA_GROUPS[path.parent.name]) == []


@pytest.mark.parametrize("path", sorted((CONF / "data").glob("*.yaml")), ids=lambda p: p.name)
def test_a_data_preset_sets_only_source_arguments_that_differ_from_the_sources(path):
    data = yaml.safe_load(path.read_text())
    params = inspect.signature(SOURCES[data["source"]]).parameters
    for key, value in (data.get("source_args") or {}).items():
        assert key in params and value != params[key].default, f"{path.name}: source_args.{key}"


@pytest.mark.parametrize("name", sorted(schemas()))
def test_each_entry_points_yaml_holds_no_key_its_schema_defaults(name):
    """conf/<entry>.yaml names its schema first and holds only presets over it: nothing a schema already says."""
    text = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    assert text["defaults"][0] == f"{name}_schema"
    schema = schemas()[name]
    for key, value in text.items():
        if key in ("defaults", "hydra"):
            continue
        sub = dict(defaults(schema).get(key) and dataclasses.asdict(defaults(schema)[key]))
        assert all(sub.get(k) != v for k, v in value.items()), f"{name}.yaml repeats a default under {key}"


@pytest.mark.parametrize("schema", [GPTConfig, DataConfig, TrainerConfig, SampleConfig, PathsConfig, Schedule,
                                    *schemas().values()], ids=lambda s: s.__name__)
def test_every_schema_key_has_a_comment(schema):
    """--help shows each key's one comment, read from the dataclass's source."""
    described = {k for cls in schema.__mro__ if dataclasses.is_dataclass(cls) for k in field_comments(cls)}
    missing = [f.name for f in dataclasses.fields(schema) if f.name not in described]
    assert missing == [], f"{schema.__name__}: no comment on {missing}"
    assert comments()["trainer.grad_clip"].startswith("max global gradient norm")


@pytest.mark.slow
def test_a_new_optimizer_and_a_new_logger_are_one_yaml_file_each(tiny_data, tmp_path):
    """A copy of conf/ plus optim/sgd.yaml (torch.optim.SGD) and logger/csv.yaml (Lightning's CSVLogger): a run
    trains with both, with no Python change, found through Hydra's search path."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "optim" / "sgd.yaml").write_text("_target_: torch.optim.SGD\n_partial_: true\nlr: 0.05\nmomentum: 0.9\n"
                                             "weight_decay: 0.0\n")
    (conf / "logger" / "csv.yaml").write_text("csv:\n  _target_: lightning.pytorch.loggers.CSVLogger\n"
                                              "  save_dir: ${paths.run_dir}\n  name: lightning_csv\n")
    run = tmp_path / "run"
    p = run_train([f"hydra.searchpath=[file://{conf}]", "optim=sgd", "logger=csv", "trainer.max_steps=6",
                   f"hydra.run.dir={run}"], tiny_data, tmp_path)
    assert "recipe: shakespeare_tiny's recipe (tuned on data=shakespeare) on data=text data.name=tiny, model=tiny: " \
        "SGD lr 0.003" in p.stdout  # helpers.TINY sets the rate
    groups = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["optimizer_states"][0]["param_groups"]
    assert all(g["momentum"] == 0.9 and "betas" not in g for g in groups)
    assert (run / "lightning_csv").is_dir() and list((run / "lightning_csv").rglob("metrics.csv"))


def test_a_torch_class_gets_its_typed_config_from_its_signature():
    """torch.optim.AdamW has no config class of its own: its config is derived from its signature, less the
    parameter groups the lab passes, with torch's own defaults (read here from the signature independently)."""
    from gptlab.config.components import config_class
    cfg = config_class(torch.optim.AdamW, supplied=1)()
    want = {n: p.default for n, p in list(inspect.signature(torch.optim.AdamW).parameters.items())[1:]}
    assert dataclasses.asdict(cfg) == want and "params" not in want
    assert {f.name: f.type for f in dataclasses.fields(cfg)}["amsgrad"] is bool


@pytest.mark.parametrize("args, message", [
    ({"lr": "abc"}, "optim.lr must be a number (torch.optim.AdamW's lr), got 'abc'"),
    ({"betas": [0.9]}, "optim.betas must be a list of 2 numbers (torch.optim.AdamW's betas), got [0.9]"),
    ({"fused": "yes"}, "optim.fused must be true or false or null (torch.optim.AdamW's fused), got 'yes'"),
    ({"lr": 1e-3, "momentum": 0.9}, "optim.momentum is not an argument of torch.optim.AdamW; it takes lr, betas,"),
])
def test_an_argument_is_checked_against_the_signature(args, message):
    from gptlab.config import ConfigError
    from gptlab.config.components import check_arguments
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        check_arguments("optim", torch.optim.AdamW, args, supplied=1, name="torch.optim.AdamW")
    check_arguments("optim", torch.optim.AdamW, {"lr": 1, "betas": [0.9, 0.95], "fused": None}, 1, "torch.optim.AdamW")


def test_every_preset_component_fits_its_signature_and_a_wrong_one_is_refused_naming_the_key():
    """What the presets build passes the signature check; a missing argument of a gptlab class, an unknown one of a
    function with keyword arguments only, and a Lightning callback's wrong type are refused in one line."""
    from helpers import composed, typed

    from gptlab.config import ConfigError
    from gptlab.training.components import check_components
    for args in (["optim=muon"], ["logger=wandb_tensorboard"], ["optim=adamw", "sched=wsd"]):
        check_components(typed(composed(*args)))
    bad = [(["optim=muon", "~optim.gain_lr"], "optim.gain_lr must be set: gptlab.optim.muon.MuonAdamW takes it"),
           (["logger=wandb", "+logger.wandb.colour=red"], "logger.wandb.colour is not an argument of "
                                                          "gptlab.training.loggers.wandb_logger"),
           (["+callbacks.x._target_=lightning.pytorch.callbacks.ModelCheckpoint", "+callbacks.x.save_top_k=x"],
            "callbacks.x.save_top_k must be an integer (lightning.pytorch.callbacks.ModelCheckpoint's save_top_k)")]
    for args, message in bad:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_components(typed(composed(*args)))
