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
