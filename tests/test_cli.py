"""One command-line layer for every entry point: exit codes, one-line errors, no tracebacks, refusals before torch.

    .venv/bin/python -m pytest tests/test_cli.py -q

Each case runs the entry point as `python -m gptlab.<name>` would (runpy in a fresh interpreter) and checks its exit
code, its one line on stderr, that no traceback was printed and, for refusals of bad input, that torch was never
imported. CUDA_VISIBLE_DEVICES="" makes the device cases hold on a machine with a GPU too.
"""
import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT

PROBE = ("import runpy, sys\nsys.argv = [sys.argv[1], *sys.argv[2:]]\n"
         "try:\n    runpy.run_module(sys.argv[0], run_name='__main__')\n    code = 0\n"
         "except SystemExit as e:\n    code = e.code if isinstance(e.code, int) else 1\n"
         "print(f'exit={code} torch={\"torch\" in sys.modules}')\n")


def entry(name: str, *args, env=None, cwd=ROOT, timeout=60):
    """(exit code, torch imported?, stderr) of `python -m gptlab.<name> args` without a GPU."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "GPTLAB_JEMALLOC": "0", **(env or {})}
    p = subprocess.run([sys.executable, "-c", PROBE, f"gptlab.{name}", *args], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=timeout)
    last = p.stdout.strip().splitlines()[-1]
    code, torch = last.split()
    return int(code.split("=")[1]), torch == "torch=True", p.stderr


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder as far as the torch-free checks read it: config.yaml (block 64) and a checkpoint file."""
    run = tmp_path_factory.mktemp("run") / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not read by the checks")
    (run / "config.yaml").write_text("model: {n_layer: 2, n_head: 2, n_embd: 32, block_size: 64, vocab_size: 50304, "
                                     "bias: false, dropout: 0.0, gelu: tanh}\n")
    return run


REFUSED = [  # (entry point, arguments, the start of its one line)
    ("eval", [], "error: model= is required: a run folder"),
    ("sample", [], "error: model= is required: a run folder"),
    ("eval", ["model=hf:gpt2", "device=cuda"], "error: device=cuda: no CUDA GPU is visible on this machine; use "
                                               "device=cpu"),
    ("sample", ["model=hf:gpt2", "device=cuda"], "error: device=cuda: no CUDA GPU is visible"),
    ("train", ["trainer.accelerator=gpu"], "error: trainer.accelerator=gpu: no CUDA GPU is visible on this machine; "
                                           "use trainer.accelerator=cpu"),
    ("train", ["device=cuda"], "error: device=cuda: no CUDA GPU is visible"),
    ("bench", ["device=cuda"], "error: device=cuda: no CUDA GPU is visible"),
    ("eval", ["model=hf:gpt2", "batch_size=0"], "error: batch_size must be an integer >= 1, got 0"),
    ("eval", ["model=hf:gpt2", "ctx=abc"], "error: ctx must be an integer, got 'abc'"),
    ("eval", ["model=hf:gpt2", "stride=0"], "error: stride must be an integer >= 1 or null (tokens scored per "
                                            "window; null = ctx), got 0"),
    ("eval", ["model=hf:gpt2", "ctx=64", "stride=65"], "error: stride=65 must be <= ctx=64"),
    ("eval", ["model=hf:gpt2", "max_tokens=-1"],
     "error: max_tokens must be an integer >= 0 (0 = no perplexity), got -1"),
    ("eval", ["model=hf:gpt2", "tasks=lambada,nope"], "error: tasks: unknown task(s) ['nope']"),
    ("eval", ["model=runs/no/such"], "error: cannot load 'runs/no/such': no such run folder or file"),
    ("eval", ["model=hf:gpt2", "nope=1"], "error: nope is not a key (python -m gptlab.eval --help lists the keys)"),
    ("eval", ["model=hf:gpt2", "ctxx=1"], "error: ctxx is not a key; did you mean ctx? (python -m gptlab.eval --help"),
    ("train", ["trainer.max_step=10"], "error: trainer.max_step is not a key; did you mean trainer.max_steps? "
                                       "(python -m gptlab.train --help lists the keys)"),
    ("train", ["modle=30m"], "error: modle is not a key; did you mean model?"),
    ("train", ["--model", "30m"], "error: --model 30m: gptlab takes key=value arguments: write model=30m "
                                  "(python -m gptlab.train --help lists the keys)"),
    ("sample", ["--model=runs/x"], "error: --model=runs/x: gptlab takes key=value arguments: write model=runs/x"),
    ("train", ["optim.lr=abc"], "error: optim.lr must be a number, got 'abc'"),
    ("train", ["model.bias=maybe"], "error: model.bias must be true or false, got 'maybe'"),
    ("train", ["resume=runs/nope"], "error: resume=runs/nope: no such run folder or .ckpt file"),
    ("sample", ["model=hf:gpt2", "temperature=0"], "error: temperature must be > 0, got 0.0; for greedy"),
    ("train", ["model=huge"],
     "error: In 'train': Could not find 'model/huge' (options in 'model': 30m, 30m_modern, gpt2"),
    ("train", ["optim.lr=0"], "error: optim.lr must be > 0, got 0"),
    ("train", ["experiment=finetune"], "error: init must be set: experiment=finetune needs the weights"),
    ("prepare", ["data=text"], "error: data.source_args.paths must be set: python -m gptlab.prepare data=text "
                               "data.source_args.paths=..."),
    ("prepare", ["workers=0"], "error: workers must be an integer >= 1 or null, got 0"),
    ("report", [], "error: no runs given"),
    ("report", ["runs/no/such"], "error: runs/no/such: no such file or folder"),
    ("report", ["runs", "--log-x"], "error: --log-x: gptlab takes key=value arguments: write log_x=true"),
    ("report", ["runs", "predict=lots"], "error: predict=lots: 'lots' is not a count"),
    ("hf", [], "error: the action must be one of export, import"),
    ("hf", ["export"], "error: model= is required"),
    ("hf", ["export", "hf:gpt2"], "error: out= is required: the folder to write"),
    ("hf", ["import", "runs/x", "out.ckpt"], "error: cannot load 'runs/x'"),
    ("bench", ["steps=0"], "error: steps must be an integer >= 1, got 0"),
    ("train", ["resume=README.md"], "error: resume=README.md: README.md is not a run folder or a checkpoint; resume= "
                                    "takes a run folder"),
    ("sample", ["model=README.md"], "error: cannot load 'README.md': not a run folder or a checkpoint; model= takes"),
    ("train", ["model=tiny.yaml"], "error: model=tiny.yaml: a preset is named without its folder or .yaml; did you "
                                   "mean model=tiny? (presets in conf/model: 30m, 30m_modern, gpt2,"),
    ("train", ["model=30M"], "error: model=30M: no such preset; did you mean model=30m?"),
    ("train", ["sched=conf/sched/wsd.yaml"], "error: sched=conf/sched/wsd.yaml: a preset is named without its folder "
                                             "or .yaml; did you mean sched=wsd?"),
    ("train", ["optim=AdamW"], "error: optim=AdamW: no such preset; did you mean optim=adamw?"),
    ("eval", ["model=hf:gpt2", "data=Shakespeare.yaml"], "error: data=Shakespeare.yaml: a preset is named without its "
                                                         "folder or .yaml; did you mean data=shakespeare?"),
    ("train", ["trainer.max_steps=2.5"], "error: trainer.max_steps must be an integer, got '2.5'"),
    ("train", ["trainer.max_steps=1e-3"], "error: trainer.max_steps must be an integer, got '1e-3'"),
    # a sweep is refused before its first job when any value it sweeps would be
    ("train", ["-m", "model=30M,tiny"], "error: model=30M: no such preset; did you mean model=30m?"),
    ("train", ["-m", "model=tiny,tiny.yaml"], "error: model=tiny.yaml: a preset is named without its folder or .yaml; "
                                              "did you mean model=tiny?"),
    ("train", ["-m", "model.n_layer=2,x"], "error: model.n_layer must be an integer, got 'x'"),
]


@pytest.mark.parametrize("name,args,message", REFUSED, ids=[f"{n} {' '.join(a)}" for n, a, _ in REFUSED])
def test_bad_input_is_refused_in_one_line_with_exit_2_before_torch(name, args, message, tmp_path):
    code, torch, err = entry(name, *args, env={"GPTLAB_RUNS": str(tmp_path), "GPTLAB_DATA": str(tmp_path)})
    line = one_line(err)
    assert code == 2 and line.startswith(message), line
    assert not torch, f"torch was imported before {name} refused its input"


def test_report_with_a_folder_holding_no_runs(tmp_path):
    code, _, err = entry("report", str(tmp_path))
    assert code == 2 and one_line(err) == f"error: {tmp_path}: no runs found (no folder under it holds summary.json " \
                                          "or metrics.csv)"


def test_export_into_a_full_folder_asks_for_overwrite_true(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    (tmp_path / "m.ckpt").write_bytes(b"x")
    code, torch, err = entry("hf", "export", str(tmp_path / "m.ckpt"), str(tmp_path / "out"))
    assert code == 2 and not torch
    assert one_line(err) == f"error: {tmp_path / 'out'} exists and is not an empty folder; " \
                            "pass overwrite=true to replace it"
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


PREPARE = [  # (entry point, its data arguments, the prepare command the refusal gives)
    ("eval", ["model=hf:gpt2", "data=text", "data.name=nothere"], "python -m gptlab.prepare data=text "
     "data.name=nothere data.source_args.paths=[FILES] (your .txt or .jsonl files or folders)"),
    ("train", ["data=text", "data.name=nothere"], "python -m gptlab.prepare data=text data.name=nothere "
     "data.source_args.paths=[FILES] (your .txt or .jsonl files or folders)"),
    ("train", ["data=text", "data.name=nothere", "data.source_args.paths=[a.txt,b]", "data.source_args.seed=3"],
     "python -m gptlab.prepare data=text data.name=nothere data.source_args.paths=[a.txt,b] data.source_args.seed=3"),
    ("train", ["data=openwebtext"], "python -m gptlab.prepare data=openwebtext"),
    ("bench", ["data=openwebtext"], "python -m gptlab.prepare data=openwebtext, or bench on random tokens with "
     "synthetic=true"),
]


@pytest.mark.parametrize("name,args,command", PREPARE, ids=[f"{n} {' '.join(a)}" for n, a, _ in PREPARE])
def test_a_missing_dataset_is_refused_at_once_with_the_command_that_prepares_it(name, args, command, tmp_path):
    """Before torch is imported, exit 2, the full prepare command (which itself composes: the command is valid)."""
    code, torch, err = entry(name, *args, env={"GPTLAB_DATA": str(tmp_path), "GPTLAB_RUNS": str(tmp_path / "runs")})
    name = [a.split("=")[1] for a in args if a.startswith(("data.name=", "data="))][-1]
    assert code == 2 and not torch
    assert one_line(err) == f"error: {tmp_path / name} holds no prepared dataset; prepare it first: {command}"
    assert not (tmp_path / "runs").exists()  # a refused train leaves no run folder behind
    from gptlab import cli
    words = command.split(" (")[0].split(", or ")[0].split()[3:]
    cli.compose("prepare", [w.replace("[FILES]", "[x.txt]") for w in words])  # the command it gives is accepted


@pytest.mark.parametrize("args", [["data=openwebtext"], ["data=hf", "data.source_args.path=someone/corpus"]])
def test_hub_datasets_without_network_fail_at_once_saying_what_to_do(args, tmp_path):
    """No network (an endpoint that refuses at once) and an empty cache: refused within seconds, not after retries."""
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "GPTLAB_DATA": str(tmp_path)}
    code, _, err = entry(*["prepare", *args], env=env)
    line = one_line(err)
    assert code == 2 and "is not in the local cache and 127.0.0.1 cannot be reached" in line, line
    assert "data.source_args.path=parquet" in line and "data_files" in line


def test_a_hub_model_without_network_fails_at_once_saying_what_to_download(tmp_path):
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "GPTLAB_DATA": str(tmp_path)}
    code, _, err = entry("sample", "model=hf:gpt2", env=env)
    line = one_line(err)
    assert code == 2 and "hf:gpt2: the weights are not in the Hugging Face cache" in line, line
    assert "`hf download gpt2`" in line and "hf:<local folder>" in line


def test_finetune_takes_the_context_of_its_init_and_refuses_a_longer_block(run_folder, tmp_path):
    """init=<run with block 64> model=30m: the architecture (block 64) comes from the weights before the batch
    arithmetic, so an explicit data.block_size=512 is refused at once instead of failing in the first step."""
    code, torch, err = entry("train", "experiment=finetune", f"init={run_folder}", "model=30m", "data.block_size=512",
                             env={"GPTLAB_RUNS": str(tmp_path)})
    assert code == 2 and not torch
    assert one_line(err) == "error: data.block_size=512 must be between 1 and model.block_size=64"


def test_finetune_derives_its_block_from_the_weights(run_folder, tiny_data, tmp_path, capsys):
    from helpers import composed

    from gptlab.train import check
    cfg = composed("experiment=finetune", f"init={run_folder}", "model=30m", "data=text", "data.name=tiny",
                   f"paths.data_dir={tiny_data}")
    cfg.paths.run_dir = str(tmp_path / "ft")
    with check(cfg) as run:  # the run, its folder's lock released at the end of the block
        assert run.paths.run_dir == str(tmp_path / "ft")
    assert (run.model.n_layer, run.model.n_embd, run.model.block_size) == (2, 32, 64)
    assert run.derived.block_size == 64 and run.derived.tokens_per_step == 64 * run.derived.micro_batch
    assert "model architecture taken from the weights" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["train", "eval", "sample", "prepare", "report", "bench", "hf", "generations"])
def test_help_lists_the_entry_points_own_keys(name):
    p = subprocess.run([sys.executable, "-m", f"gptlab.{name}", "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env={**os.environ, "GPTLAB_JEMALLOC": "0"})
    assert p.returncode == 0 and p.stderr == "", p.stderr
    out = p.stdout
    assert out.startswith(__import__(f"gptlab.{name}", fromlist=["x"]).__doc__.strip().splitlines()[0])
    assert f"usage: python -m gptlab.{name}" in out and "spec" not in out
    if name in ("eval", "sample"):  # their own keys, not train's groups
        assert "  model: ???  # the model: run folder" in out and "model=30m" not in out and "optim=" not in out
    if name == "train":
        assert "  model=tiny  (30m|30m_modern|gpt2|gpt2-large|gpt2-medium|gpt2-xl|tiny)" in out
        assert "    model.n_layer: 4  # transformer blocks" in out and "  seed: 1337  #" in out


PLAIN_RUN = {"trainer.max_steps": 1200, "optim.lr": 0.002, "sched.warmup_steps": 30, "data.batch_size": 4,
             "data.val_tokens": 16384, "trainer.eval_interval": 200}  # what a plain run uses (the default experiment)


def help_values(*args) -> dict:
    p = subprocess.run([sys.executable, "-m", "gptlab.train", *args, "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, env={**os.environ, "GPTLAB_JEMALLOC": "0"})
    assert p.returncode == 0, p.stderr
    pairs = [line.strip().split("  #")[0].split(": ", 1) for line in p.stdout.splitlines() if ": " in line]
    return {k: v for k, v in (p for p in pairs if len(p) == 2)}


def test_help_shows_the_values_a_plain_run_uses_and_those_of_the_line_it_ends():
    import yaml
    plain = help_values()
    assert {k: yaml.safe_load(plain[k]) for k in PLAIN_RUN} == PLAIN_RUN  # not the group files' 1500, 1e-3
    assert plain["model.n_embd"] == "64" and plain["sample.prompt"] == "null"
    line = help_values("model=30m", "optim.lr=1e-4", "sched=wsd")
    assert (line["model.n_embd"], line["optim.lr"], line["sched.decay"]) == ("384", "0.0001", "linear")


def test_help_refuses_a_bad_argument_beside_it_as_a_run_would():
    code, _, err = entry("train", "trainer.max_step=3", "--help")
    assert code == 2 and one_line(err).startswith("error: trainer.max_step is not a key; did you mean "
                                                  "trainer.max_steps")


def test_eval_and_train_refusals_share_exit_codes_with_every_entry_point():
    """The table the README gives: 2 refused before work, 1 failed during it (a damaged checkpoint)."""
    names = ("train", "eval", "sample", "prepare", "report", "bench", "hf", "generations")
    codes = {n: entry(n, "nope=1")[0] for n in names}
    assert codes == dict.fromkeys(codes, 2)


@pytest.mark.parametrize("name", ["sample", "eval", "generations"])
def test_a_damaged_checkpoint_is_refused_with_exit_2_in_every_entry_point(tmp_path, tiny_data, name):
    """As resume= refuses a damaged last.ckpt (tests/test_bad_input.py): an input, refused before any work."""
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    data = ["data=text", "data.name=tiny", f"paths.data_dir={tiny_data}"] if name == "eval" else []  # eval's val set
    code, _, err = entry(name, f"models=[{bad}]" if name == "generations" else f"model={bad}", *data)
    assert code == 2 and one_line(err) == f"error: {bad}: damaged or truncated (14 bytes), or not a torch " \
        "checkpoint; use another checkpoint (a run keeps last.ckpt and best.ckpt) or train again"


def test_hf_export_accepts_overwrite_true_as_its_message_says(tmp_path):
    from gptlab import GPT, GPTConfig
    from gptlab.model.checkpoint import save_checkpoint
    ckpt = save_checkpoint(GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=50304)),
                           tmp_path / "m.ckpt")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    code, _, err = entry("hf", "export", str(ckpt), str(tmp_path / "out"), "overwrite=true", "tokenizer=false")
    assert code == 0, err
    assert not (tmp_path / "out" / "old.txt").exists()
    assert json.loads((tmp_path / "out" / "config.json").read_text())["n_embd"] == 16


@pytest.mark.parametrize("name", ["train", "eval", "sample", "prepare", "report", "bench", "hf", "generations"])
def test_a_python_without_the_dependencies_says_how_to_activate_the_venv(name):
    """python3 -m gptlab.<name> outside the virtualenv: -S leaves site-packages out, as a bare system Python has
    none of gptlab's dependencies. One line that says what to do, exit 2, not an import traceback."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-S", "-m", f"gptlab.{name}"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    line = one_line(p.stderr)
    assert p.returncode == 2 and line.startswith(f"error: this Python ({sys.executable}) cannot import "), line
    assert "source .venv/bin/activate" in line and "make setup" in line


@pytest.fixture
def sweep(tmp_path):
    """A sweep's folder as Hydra's -m leaves it, named through its runs/multirun/last link: five job folders."""
    for job in range(5):
        (tmp_path / "sweep" / str(job)).mkdir(parents=True)
        (tmp_path / "sweep" / str(job) / "config.yaml").write_text("model: {n_layer: 2}\n")
    (tmp_path / "last").symlink_to(tmp_path / "sweep")
    return tmp_path / "last"


@pytest.mark.parametrize("name,arg", [("eval", "model"), ("sample", "model"), ("generations", "models"),
                                      ("train", "resume")])
def test_a_sweep_given_as_one_model_is_named_as_a_sweep_with_its_runs(sweep, name, arg, tmp_path):
    value = f"[{sweep}]" if arg == "models" else str(sweep)
    code, torch, err = entry(name, f"{arg}={value}", env={"GPTLAB_RUNS": str(tmp_path / "runs")})
    example = f"{arg}=[{sweep}/0]" if arg == "models" else f"{arg}={sweep}/0"
    prefix = f"resume={sweep}: " if arg == "resume" else ""
    assert code == 2 and not torch
    assert one_line(err) == f"error: {prefix}{sweep} is a sweep of 5 runs, not a run folder: name one of them " \
        f"({sweep}/0, {sweep}/1, {sweep}/2 and 2 more), e.g. {example}; python -m gptlab.report {sweep} compares them"


def test_an_integer_key_takes_a_whole_number_in_scientific_notation():
    from gptlab import cli
    cfg = cli.compose("train", ["trainer.max_steps=1e3", "data.block_size=6.4e1", "trainer.stop_after=1.5e3"])
    assert (cfg.trainer.max_steps, cfg.data.block_size, cfg.trainer.stop_after) == (1000, 64, 1500)
    assert cli.compose("eval", ["spec=hf:gpt2", "ctx=1e2"]).ctx == 100
    assert cli.compose("train", ["optim.lr=1e3"]).optim.lr == 1000.0  # a float key keeps its float


def test_a_key_that_takes_a_count_or_a_word_takes_a_whole_number_in_scientific_notation():
    """data.batch_size (8 or auto) and trainer.devices (2, -1 or auto): 1e1 is 10, 2.5 is refused naming the key."""
    from helpers import composed, typed

    from gptlab.config import ConfigError
    run = typed(composed("data.batch_size=1e1", "trainer.devices=1e0"))
    assert (run.data.batch_size, run.trainer.devices, run.derived.micro_batch) == (10, 1, 10)
    with pytest.raises(ConfigError, match="data.batch_size must be an integer >= 1 or auto"):
        typed(composed("data.batch_size=2.5"))


@pytest.mark.parametrize("code", [
    "import runpy, sys; sys.argv = ['train', '--help']; runpy.run_module('gptlab.train', run_name='__main__')",
    "from gptlab import cli; cli.run(cli.Entry('report', lambda cfg: cfg, lambda c: print('line\\n' * 100_000)), [])",
], ids=["train --help", "work printing"])
def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(code):
    """`python -m gptlab.sample ... | head -1`: the reader goes away; exit 141 (as SIGPIPE ends other tools), and
    nothing on stderr (no BrokenPipeError traceback, no 'Exception ignored' at exit)."""
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, "GPTLAB_JEMALLOC": "0"})
    p.stdout.close()  # before the command writes anything: every write finds the pipe closed
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141 and err == "", err


def test_the_header_names_the_recipe_only_on_the_data_it_was_tuned_on():
    from helpers import composed, typed

    from gptlab.training.compose import recipe
    assert recipe(typed(composed())) == "experiment=shakespeare_tiny, model=tiny"
    mine = typed(composed("data=text", "data.name=mine", "data.source_args.paths=[mine.txt]"))
    assert recipe(mine) == "shakespeare_tiny's recipe (tuned on data=shakespeare) on data=text data.name=mine, " \
                           "model=tiny"
    assert recipe(typed(composed("experiment=study_30m_owt", "data=shakespeare"))).startswith(
        "study_30m_owt's recipe (tuned on data=openwebtext) on data=shakespeare, model=30m")


def test_a_report_of_one_seed_an_arm_says_seed_and_claims_no_holm_adjustment():
    """Four arms of one seed each: no test can run, so no p-value is Holm-adjusted, and one seed is one seed."""
    from gptlab.analysis.stats import difference, holm, summarize
    from gptlab.analysis.verdicts import arms_section
    arms = [{"label": f"arm{i}", "summary": summarize([3.0 + i]), "by_lr": {1e-3: 3.0 + i}, "runs": [],
             "values": {0: 3.0 + i}} for i in range(4)]
    tests = [{"arm": a["label"], "baseline": "arm0", "difference": difference([a["values"][0]], [3.0])}
             for a in arms[1:]]
    for t, p in zip(tests, holm([t["difference"].p for t in tests])):
        t["p_holm"] = p
    text = arms_section({"arms": arms, "metric": "final_val_loss", "baseline": "arm0", "comparisons": tests})
    assert "from 1 seed each: no interval or test is possible" in text and "1 seeds" not in text
    assert "Holm" not in text and "p-values" not in text


def test_the_coordinate_check_writes_into_its_out_folder_not_the_checkout(tmp_path, monkeypatch):
    """docs/mup.md's command leaves the committed figures alone: runs/coord_check/ unless --out says otherwise (the
    computation itself is faked here: tests/test_mup.py checks it)."""
    import importlib.util
    committed = ROOT / "experiments" / "mup_transfer"
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no __pycache__ beside the committed files
    spec = importlib.util.spec_from_file_location("coord_check_script", committed / "coord_check.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(script, "coord_check", lambda **kw: {"slopes": {"transformer.h.0.attn": 0.0}})
    monkeypatch.setattr(script, "coord_check_png", lambda results: b"png")
    monkeypatch.setenv("GPTLAB_RUNS", str(tmp_path / "runs"))
    before = {p.name: p.stat().st_mtime_ns for p in committed.iterdir()}
    written = ["coord_check.json", "coord_check.md", "coord_depth.png", "coord_width.png"]
    script.main([])
    assert sorted(os.listdir(tmp_path / "runs" / "coord_check")) == written
    script.main(["--out", str(tmp_path / "mine")])
    assert sorted(os.listdir(tmp_path / "mine")) == written
    assert {p.name: p.stat().st_mtime_ns for p in committed.iterdir()} == before
