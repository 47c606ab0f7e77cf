"""Bad input fails fast and says what is wrong: fuzzed config overrides, CLI arguments, damaged datasets and
checkpoints, non-UTF-8 sources.

    .venv/bin/python -m pytest tests/test_bad_input.py -q -m "not slow"

The fuzz composes a few base configs once with Hydra, then applies each example's overrides with Hydra's own
override parser (the grammar the command line goes through): hundreds of examples in seconds. Valid examples are
built from each key's allowed range (and the relations between keys); an invalid one is a valid one with one key
broken, and must fail with a ConfigError naming that key.
"""
import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, TINY, composed, run_train
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from gptlab.config import PRECISIONS, ConfigError, GPTConfig
from gptlab.config.overrides import adds_argument
from gptlab.optim.schedule import DECAYS, Schedule

BASES = {  # a few group selections; the fuzz varies values on top of them
    "default": [],
    "30m-wsd-nologger": ["model=30m", "sched=wsd", "logger=none"],
    "study": ["experiment=study_30m_owt"],
    "chat-ddp": ["data=chat", "trainer=ddp_cpu", "sched=constant", "model=gpt2"],
}


@pytest.fixture(scope="module")
def bases():
    return {name: composed(*ov) for name, ov in BASES.items()}


PARSER = OverridesParser.create()


def apply(base, overrides: list[str]):
    """base with the overrides applied as `python -m gptlab.train <overrides>` would (Hydra's parser and merge); a
    value the schema's types refuse raises ConfigError with the one line the command line prints."""
    import re

    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import OmegaConfBaseException

    from gptlab import cli
    overrides = list(overrides)
    for _ in range(len(overrides) + 1):
        cfg = base.copy()
        try:
            ConfigLoaderImpl._apply_overrides_to_config(PARSER.parse_overrides(overrides), cfg)
            return cfg
        except ConfigCompositionException as e:  # a component's argument its preset does not list: cli adds it
            key = re.match(r"Could not override '([^']+)'", str(e))
            if not (key and adds_argument(overrides, key.group(1))):
                raise ConfigError(f"{key.group(1) if key else e} is not a key") from None
        except OmegaConfBaseException as e:
            raise ConfigError(cli.hydra_message(e)) from None


def validate(cfg):
    """What the train entry point checks before training: the typed run, its components, the optimizer built."""
    from helpers import typed

    from gptlab.training.components import check_offline, check_optimizer
    run = typed(cfg)
    check_offline(run)
    check_optimizer(run)
    return run


def text(v) -> str:
    """A Python value as a command-line override value."""
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    return v if isinstance(v, str) else repr(v)  # (a dict lookup would take 1 for True)


def floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


# --- valid configs ------------------------------------------------------------------------------------------------

INDEPENDENT = {  # keys whose valid range does not depend on other keys
    "model.n_layer": st.integers(1, 48), "model.dropout": floats(0, 0.99), "model.bias": st.booleans(),
    "model.gelu": st.sampled_from(["tanh", "none"]), "model.vocab_size": st.integers(50257, 60000),
    "optim.lr": floats(1e-9, 10), "optim.weight_decay": floats(0, 10), "trainer.grad_clip": floats(0, 100),
    "optim.fused": st.sampled_from([True, False]),
    "sched.decay": st.sampled_from(DECAYS), "sched.warmup_steps": st.integers(0, 10_000),
    "sched.min_lr_ratio": floats(0, 1), "sched.decay_fraction": floats(1e-6, 1),
    "trainer.max_steps": st.integers(1, 10**6), "trainer.eval_interval": st.integers(1, 10**4),
    "trainer.log_every_n_steps": st.integers(1, 1000), "trainer.precision": st.sampled_from(PRECISIONS),
    "trainer.stop_after": st.none() | st.integers(1, 10**6), "trainer.threads": st.none() | st.integers(1, 64),
    "trainer.eval_at_start": st.booleans(), "trainer.compile": st.sampled_from([True, False, "auto"]),
    "seed": st.integers(0, 2**32 - 1), "data.num_workers": st.integers(0, 8),
    "sample.max_new_tokens": st.integers(0, 1000), "sample.temperature": floats(1e-3, 10),
    "sample.top_k": st.none() | st.integers(1, 1000),
}


@st.composite
def valid_overrides(draw, bases_):
    """(base name, overrides) for a valid config: shapes drawn together, then any subset of the other keys."""
    name = draw(st.sampled_from(sorted(BASES)))
    base = bases_[name]
    heads = draw(st.sampled_from([1, 2, 3, 4, 8, 12]))
    block = draw(st.integers(1, 2048))
    data_block = draw(st.none() | st.integers(1, block))
    t = data_block or block
    batch = draw(st.integers(1, 16))
    devices = int(base.trainer.devices)
    per_step = batch * devices
    batching = draw(st.sampled_from(["none", "seqs", "tokens"]))
    m = draw(st.integers(1, 16))
    ov = {"model.n_head": heads, "model.n_embd": heads * draw(st.integers(1, 64)), "model.block_size": block,
          "data.block_size": data_block, "data.batch_size": batch, "data.val_tokens": draw(st.integers(t, 10**7)),
          "data.global_batch": per_step * m if batching == "seqs" else None,
          "data.global_batch_tokens": per_step * m * t if batching == "tokens" else None}
    for key in draw(st.lists(st.sampled_from(sorted(INDEPENDENT)), unique=True, max_size=12)):
        ov[key] = draw(INDEPENDENT[key])
    if base.logger.get("wandb") and draw(st.booleans()):
        ov["logger.wandb.mode"] = draw(st.sampled_from(["auto", "online", "offline"]))
    return name, [f"{k}={text(v)}" for k, v in ov.items()]


FUZZ = settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(data=st.data())
def test_valid_configs_validate_and_build(bases, data):
    """A valid config passes validate, and what a run derives from it before training does not crash: the batch
    arithmetic, the model config, and the learning rate at the first, a middle and the last step."""
    name, overrides = data.draw(valid_overrides(bases))
    run = validate(apply(bases[name], overrides))
    assert run.derived.accumulation >= 1 and run.derived.tokens_per_step >= 1
    GPTConfig(**vars(run.model))
    s, n, lr = Schedule.of(run.sched), run.trainer.max_steps, run.optim["lr"]
    lrs = [lr * s.factor(step, n) for step in (0, n // 2, n - 1)]
    assert lrs[0] > 0 and all(0 <= r <= lr * (1 + 1e-9) for r in lrs), (lrs, overrides)


# --- one key broken -------------------------------------------------------------------------------------------------

NOT_A_NUMBER = st.sampled_from(["abc", "[1,2]", "{a: 1}"])  # ('12' is fine: typed groups convert it, like YAML)
NON_POSITIVE = st.integers(-10**6, 0)
NEGATIVE = st.integers(-10**6, -1)
WORD = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)


def bad_float(lo_ok, hi_ok):
    """Floats outside [lo, hi] (either bound may be open), NaN and Inf."""
    return st.one_of(st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not (lo_ok(v) and hi_ok(v))),
                     st.sampled_from([float("nan"), float("inf"), float("-inf")]))


BROKEN = {  # key: strategy for a value that must be refused (the key named in the message)
    "model.n_layer": NON_POSITIVE | NOT_A_NUMBER | st.just(1.5), "model.n_head": NON_POSITIVE,
    "model.block_size": NON_POSITIVE, "model.vocab_size": st.integers(1, 50256),
    "model.dropout": bad_float(lambda v: v >= 0, lambda v: v < 1),
    "model.gelu": WORD.filter(lambda w: w not in ("tanh", "none")),
    "model.bias": st.sampled_from(["maybe", "[]"]),
    "optim.lr": bad_float(lambda v: v > 0, lambda v: True) | NOT_A_NUMBER,
    "optim.weight_decay": bad_float(lambda v: v >= 0, lambda v: True),
    "trainer.grad_clip": bad_float(lambda v: v >= 0, lambda v: True),
    "sched.decay": WORD.filter(lambda w: w not in DECAYS), "sched.warmup_steps": NEGATIVE,
    "sched.min_lr_ratio": bad_float(lambda v: v >= 0, lambda v: v <= 1),
    "sched.decay_fraction": bad_float(lambda v: v > 0, lambda v: v <= 1),
    "data.batch_size": NON_POSITIVE | NOT_A_NUMBER | st.just(2.5), "data.num_workers": NEGATIVE | NOT_A_NUMBER,
    "trainer.max_steps": NON_POSITIVE | NOT_A_NUMBER, "trainer.eval_interval": NON_POSITIVE,
    "trainer.log_every_n_steps": NON_POSITIVE, "trainer.precision": WORD.filter(lambda w: w not in PRECISIONS),
    "trainer.stop_after": NON_POSITIVE, "trainer.threads": NON_POSITIVE, "trainer.num_nodes": NON_POSITIVE,
    "trainer.devices": st.sampled_from([0, -2, "abc", 1.5, "[]"]), "trainer.compile": st.sampled_from(["yes", "2"]),
    "seed": NEGATIVE | st.integers(2**32, 2**70) | NOT_A_NUMBER,
    "sample.max_new_tokens": NEGATIVE, "sample.temperature": bad_float(lambda v: v > 0, lambda v: True) | WORD,
    "sample.top_k": NON_POSITIVE,
    "resume": st.sampled_from(["''", "[a]"]), "init": st.sampled_from(["''"]),  # typed str: 7 is the path '7'

}


@st.composite
def broken_overrides(draw, bases_):
    """(base, overrides, key): a valid config with one key (or one relation between keys) broken."""
    name, ov = draw(valid_overrides(bases_))
    block = int(OmegaConf.select(apply(bases_[name], ov), "model.block_size"))
    kind = draw(st.sampled_from(sorted(BROKEN) + ["n_embd", "data.block_size", "data.val_tokens", "global_batch",
                                                  "global_batch_tokens", "unknown_key"]))
    if kind == "n_embd":  # not divisible by the heads
        heads = draw(st.integers(2, 16))
        embd = heads * draw(st.integers(1, 64)) + 1
        return name, ov + [f"model.n_head={heads}", f"model.n_embd={embd}"], "model.n_embd"
    if kind == "data.block_size":  # 0, negative or longer than the model's context
        v = draw(st.integers(-5, 0) | st.integers(block + 1, block + 10**4))
        return name, ov + [f"data.block_size={v}"], "data.block_size"
    if kind == "data.val_tokens":  # less than one window
        val = draw(st.integers(-1, block - 1))
        return name, ov + ["data.block_size=null", f"data.val_tokens={val}"], "data.val_tokens"
    if kind == "global_batch":  # not a multiple of the micro batch (x devices)
        seqs = 4 * draw(st.integers(0, 8)) + draw(st.integers(1, 3))
        return name, ov + ["data.batch_size=4", "data.global_batch_tokens=null", f"data.global_batch={seqs}"], \
            "data.global_batch"
    if kind == "global_batch_tokens":  # not a multiple of the block (64 here)
        return name, ov + ["model.block_size=64", "data.block_size=null", "data.val_tokens=65536",
                           "data.global_batch=null", f"data.global_batch_tokens={64 * draw(st.integers(0, 8)) + 32}"], \
            "data.global_batch_tokens"
    if kind == "unknown_key":
        group = draw(st.sampled_from(["model", "sched"]))
        key = draw(WORD.filter(lambda w: w not in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "bias",
                                                   "dropout", "gelu", "lr", "weight_decay", "beta1", "beta2", "eps",
                                                   "grad_clip", "fused", "name", "warmup_steps", "min_lr_ratio",
                                                   "decay_fraction", "decay")))
        return name, ov + [f"+{group}.{key}=1"], f"{group}.{key} is not a key"
    return name, ov + [f"{kind}={text(draw(BROKEN[kind]))}"], kind


@FUZZ
@given(data=st.data())
def test_one_broken_key_fails_naming_it(bases, data):
    name, overrides, key = data.draw(broken_overrides(bases))
    with pytest.raises(ConfigError) as e:
        validate(apply(bases[name], overrides))
    assert key in str(e.value), (overrides[-1], str(e.value))


def test_the_fuzz_path_agrees_with_a_full_compose(bases):
    """The fast path (one compose, then Hydra's override parser) gives the config a full compose gives."""
    ov = ["model.n_head=2", "model.n_embd=64", "optim.lr=1e-05", "data.global_batch=null", "+optim.amsgrad=true"]
    full = composed(*BASES["study"], *ov)
    assert OmegaConf.to_container(apply(bases["study"], ov)) == OmegaConf.to_container(full)


def test_a_preset_requirement_is_not_lost_in_the_merge(bases):
    """experiment=finetune requires init (required: {init: why}); a ??? there would not survive OmegaConf's merge over
    train.yaml's null, and the "fine-tune" would start from random weights."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=finetune", "paths.run_dir=/tmp/unused"])
        given_init = compose("train", overrides=["experiment=finetune", "init=hf:gpt2", "paths.run_dir=/tmp/unused"])
    cfg, given_init = (OmegaConf.masked_copy(c, [k for k in c if k != "hydra"]) for c in (cfg, given_init))
    assert cfg.init is None and list(cfg.required) == ["init"]
    with pytest.raises(ConfigError, match=r"^init must be set: experiment=finetune needs the weights to start from"):
        validate(cfg)
    assert validate(given_init).init == "hf:gpt2"
    validate(bases["default"])  # nothing required by default


# --- the command line -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args,message", [
    (["data.batch_size=abc"], "error: data.batch_size must be an integer >= 1 or auto (micro batch), got 'abc'"),
    (["trainer.log_every_n_steps=0"], "error: trainer.log_every_n_steps must be an integer >= 1, got 0"),
    (["seed=-1"], "error: seed must be an integer >= 0 and <= 4294967295, got -1"),
    (["optim.lr=inf"], "error: optim.lr must be a finite number, got inf"),
    (["data.block_size=0"], "error: data.block_size must be an integer >= 1 or null, got 0"),
    (["data.block_size=64"], "error: data.block_size=64 must be between 1 and model.block_size=32"),
    (["optim.lr=abc"], "error: optim.lr must be a number, got 'abc'"),
    (["resume=/no/such/run"], "error: resume=/no/such/run: no such run folder or .ckpt file"),
    (["experiment=finetune"], "error: init must be set: experiment=finetune needs the weights to start from: "
                              "init=<run folder, .ckpt or hf:gpt2 ... hf:gpt2-xl>"),
    (["experiment=finetune", "init=/no/such.ckpt"], "error: init=/no/such.ckpt: no such run folder or .ckpt"),
])
def test_cli_fails_fast_naming_the_key(tmp_path, args, message):
    """Exit 2, one line naming the key, no traceback, before torch is imported (a second or two)."""
    code = ("import sys, runpy; sys.argv = ['gptlab.train', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('gptlab.train', run_name='__main__')\n"
            "except SystemExit as e:\n    print('exit', e.code, 'torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code, *TINY, *args, f"hydra.run.dir={tmp_path}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env={**os.environ, "GPTLAB_JEMALLOC": "0"})
    assert message in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert p.stdout.strip() == "exit 2 False"


@pytest.mark.slow
def test_edge_valid_configs_train(tiny_data, tmp_path):
    """Valid corners run end to end: one step, no eval in range, greedy zero-token sample, a short data block, the
    largest seed, a token-count global batch, stop_after past max_steps."""
    run = tmp_path / "edge"
    run_train(["trainer.max_steps=2", "trainer.eval_interval=50", "trainer.stop_after=9", "sample.max_new_tokens=0",
               "sample.greedy=true", "sample.temperature=0", "data.block_size=8", "data.global_batch_tokens=64",
               f"seed={2**32 - 1}",
               "sched=wsd", "sched.decay_fraction=1e-06", "trainer.eval_at_start=false", f"hydra.run.dir={run}"],
              tiny_data, tmp_path)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2


# --- damaged inputs ---------------------------------------------------------------------------------------------------


def test_wrong_tokenizer_in_the_manifest_is_refused_before_training(tiny_data, tmp_path):
    """A dataset prepared with another tokenizer (the manifest says so): the datamodule's check names both."""
    import shutil

    from gptlab.data.datamodule import TokenDataModule
    from gptlab.data.shards import ShardError
    d = tmp_path / "other"
    shutil.copytree(tiny_data / "tiny", d)
    m = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps({**m, "tokenizer": "cl100k_base", "vocab_size": 100277}))
    with pytest.raises(ShardError, match=r"other/manifest\.json: prepared with tokenizer 'cl100k_base' "
                                         r"\(vocab 100277\), but 'gpt2' \(vocab 50257\) is expected"):
        TokenDataModule(str(d), 32, 4).check()


@pytest.mark.parametrize("manifest,message", [
    ("[]", "no 'splits' table"),
    ('{"format_version": 1}', "no 'splits' table"),
    ('{"format_version": 9, "splits": {}}', "format_version 9, expected 1"),
    (b"\xff\xfe{", "not valid JSON"),
])
def test_damaged_manifest_is_refused(tmp_path, manifest, message):
    from gptlab.data.shards import ShardError, load_manifest
    (tmp_path / "ds").mkdir()
    path = tmp_path / "ds" / "manifest.json"
    path.write_bytes(manifest if isinstance(manifest, bytes) else manifest.encode())
    with pytest.raises(ShardError, match=rf"manifest\.json: {message}.*gptlab\.prepare data.name=ds force=true"):
        load_manifest(tmp_path / "ds")


@pytest.mark.parametrize("cut", ["empty", "half", "last_byte"])
def test_truncated_checkpoint_is_refused_clearly(tmp_path, cut):
    from gptlab.model.checkpoint import LoadError, checkpoint_step
    from gptlab.model.load import load_model
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"global_step": 3, "optimizer_states": [], "state_dict": {"w": torch.zeros(10_000)}}, path)
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "half": data[:len(data) // 2], "last_byte": data[:-1]}[cut])
    for load in (checkpoint_step, load_model):
        size = len(path.read_bytes())
        with pytest.raises(LoadError, match=rf"^{path}: damaged or truncated \({size:,} bytes\), or not "
                                            r"a torch checkpoint; use another checkpoint \(a run keeps last\.ckpt "
                                            r"and best\.ckpt\) or train again$"):
            load(path)


@pytest.mark.slow
def test_truncated_last_checkpoint_on_resume(tiny_data, tmp_path):
    """What a pre-atomic writer could leave: resume= says which file is damaged, exits 2 (refused before any work:
    it is read before the run folder is claimed), writes nothing."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    p = run_train([f"resume={run}", f"hydra.run.dir={tmp_path / 'call'}"], tiny_data, tmp_path, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.stderr.strip() == f"error: {run}/checkpoints/last.ckpt: damaged or truncated (14 bytes), or not a torch " \
                               "checkpoint; use another checkpoint (a run keeps last.ckpt and best.ckpt) or train again"
    assert sorted(os.listdir(run)) == ["checkpoints"]


@pytest.mark.parametrize("source", ["text", "chat"])
def test_non_utf8_jsonl_names_file_line_and_byte(tmp_path, source):
    from gptlab.data import sources
    from gptlab.data.sources import SourceError
    good = {"text": '{"text": "fine"}', "chat": '{"messages": [{"role": "user", "content": "hi"}]}'}[source]
    bad = good.replace("fine" if source == "text" else "hi", "caf\xe9").encode("latin-1")
    (tmp_path / "rows.jsonl").write_bytes(good.encode() + b"\n" + bad + b"\n" + good.encode() + b"\n")
    offset = bad.index(b"\xe9")
    with pytest.raises(SourceError, match=rf"rows\.jsonl:2: not valid UTF-8 \(invalid continuation byte at byte "
                                          rf"{offset} of the line\); re-encode"):
        splits = sources.open_source(source, {"paths": [str(tmp_path / "rows.jsonl")], "val_fraction": 0})
        list(splits["train"])


def test_corrupted_shard_bytes_fail_before_training(tiny_data, tmp_path):
    """One flipped bit in a shard: the datamodule's check (run before any model is built) names the file."""
    import shutil

    from gptlab.data.datamodule import TokenDataModule
    from gptlab.data.shards import ShardError
    d = tmp_path / "tiny"
    shutil.copytree(tiny_data / "tiny", d)
    (d / ".verified.json").unlink(missing_ok=True)
    shard = d / "train_000000.bin"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"train_000000\.bin: sha256 .* does not match the manifest"):
        TokenDataModule(str(d), 32, 4).check()
