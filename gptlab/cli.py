"""The one command-line layer every entry point uses: key=value arguments, --help, exit codes, one-line errors.

    python -m gptlab.eval --help                 # the entry point's own keys, each with its comment
    python -m gptlab.eval ctx=abc model=runs/x   # -> "error: ctx must be an integer >= 1 or null, got 'abc'", exit 2

Exit codes, the same everywhere: 0 done; 2 refused before any work (a bad argument or config, a missing model,
dataset or network); 1 a failure during the work; 130 interrupted; 141 the reader of stdout went away (`| head`).
Errors print one line, always beginning `error:`, that says what was wrong and how to fix it, never a traceback for a
user's mistake. Entry points give a `check(cfg)`, which refuses bad input before torch is imported, and a
`work(checked)`. The Hydra config of entry point NAME is conf/NAME.yaml.
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptlab.config.checks import ConfigError
from gptlab.config.overrides import (
    adds_argument,
    flat_keys,
    hydra_quote,
    integral_value,
    preset_message,
    typed_value,
)
from gptlab.config.presets import CONF
from gptlab.errors import Refused, UserError

HYDRA_FLAGS = ("--cfg", "-c", "--resolve", "--package", "-p", "--info", "-i", "--config-path", "-cp",
               "--config-name", "-cn", "--config-dir", "-cd", "--run", "-r", "--multirun", "-m", "--shell-completion",
               "-sc", "--experimental-rerun")


@dataclass
class Entry:
    """One entry point: its config name, its checks and its work, and how its arguments are spelled."""
    name: str  # conf/<name>.yaml and `python -m gptlab.<name>`
    check: Callable[[Any], Any]  # composed DictConfig -> what work needs; raises Refused; imports no torch
    work: Callable[[Any], Any]  # does the work; raises UserError with a message that says what to fix
    positional: tuple[str, ...] = ()  # keys that bare words (no '=') fill in order; "runs*" takes all the rest
    aliases: dict[str, str] = field(default_factory=dict)  # command-line key -> config key (model -> spec)
    verbatim: tuple[str, ...] = ()  # keys whose value is kept as typed (quotes, commas, brackets are text)
    lists: tuple[str, ...] = ()  # keys where a,b means a list, not a sweep


def fail(e: BaseException, code: int | None = None) -> None:
    """Print `e` as one line, `error: ...` (a refusal and a failure alike: the exit code tells them apart), and exit
    with its code."""
    text = " ".join(str(e).split()) or type(e).__name__
    print(f"error: {text}", file=sys.stderr)
    sys.exit(code if code is not None else getattr(e, "exit_code", 1))


def rewrite(argv: list[str], entry: Entry) -> list[str]:
    """The command line as Hydra overrides: bare words fill the positional keys, aliases renamed, verbatim and list
    values quoted. Hydra's own flags (-m, --cfg job, ...) pass as they are."""
    out, positional, flag_arg, rest = [], list(entry.positional), False, []
    for i, a in enumerate(argv):
        if flag_arg or a.startswith("-"):
            if not (flag_arg or a in HYDRA_FLAGS):
                raise Refused(flag_message(a, argv[i + 1] if i + 1 < len(argv) else None, entry.name))
            out.append(a)
            flag_arg = a in HYDRA_FLAGS and a not in ("-m", "--multirun", "--resolve", "--info", "-i")
            continue
        key, eq, value = a.partition("=")
        if not eq and positional and positional[0].endswith("*"):
            rest.append(a)
            continue
        if not eq:
            if not positional:
                raise Refused(f"unexpected argument {a!r}: write key=value (python -m gptlab.{entry.name} --help "
                              "lists the keys)")
            key, value, eq = positional.pop(0), a, "="
        key = entry.aliases.get(key, key)
        if key in entry.verbatim or (key in entry.lists and "," in value and value[:1] not in "['\""):
            value = hydra_quote(value)
        out.append(f"{key}={value}")
    if rest:
        out.append(f"{positional[0].rstrip('*')}=[{','.join(hydra_quote(r) for r in rest)}]")
    return out


def flag_message(flag: str, after: str | None, name: str) -> str:
    """--model 30m (or --model=30m, --greedy) as the key=value it means."""
    key, eq, value = flag.lstrip("-").replace("-", "_").partition("=")
    if not eq and after is not None and "=" not in after and not after.startswith("-"):
        flag, value = f"{flag} {after}", after
    return (f"{flag}: gptlab takes key=value arguments: write {key}={value or 'true'} (python -m gptlab.{name} "
            "--help lists the keys)")


def typed(cfg, name: str | None = None):
    """The entry point's schema dataclass (gptlab/config/store.py) built from its composed config: every value
    checked, naming its key. Unset (???) values stay '???' for the entry's own checks to name."""
    from gptlab.config.store import build, plain, schemas
    return build(schemas()[name or cfg.hydra.job.config_name], plain(cfg))


def given(cfg, key: str):
    """cfg[key], or None where the config leaves it ??? (required, and not given)."""
    from omegaconf import OmegaConf
    return None if OmegaConf.is_missing(cfg, key) else cfg[key]


def hydra_message(e: BaseException, typed: str | None = None) -> str:
    """Hydra's and OmegaConf's multi-line composition errors as one line; `typed` is the value as the command line
    wrote it, quoted in place of OmegaConf's reading of it."""
    from gptlab.config.checks import value_message
    e = e.__cause__ if getattr(e.__cause__, "full_key", None) else e  # Hydra's "Error merging override" wraps it
    key = getattr(e, "full_key", None)
    if key and hasattr(e, "msg") and "Value '" in e.msg:
        return value_message(key, e.msg, typed)
    if key and type(e).__name__ == "ConfigKeyError":
        return f"{key} is not a key (--help lists the keys)"
    text = str(e).split("Config search path:")[0]  # Hydra's search path says nothing the user can fix
    text, _, options = text.partition("Available options in")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    keep = [line for line in lines if not line.startswith(("full_key:", "object_type", "reference_type"))]
    if options:
        group, *names = [line.strip() for line in options.splitlines() if line.strip()]
        keep.append(f"(options in {group} {', '.join(names)})")
    return " ".join(keep) or type(e).__name__


def compose(name: str, overrides: list[str], keep: bool = False):
    """conf/<name>.yaml with the overrides applied (Hydra's grammar); Refused with Hydra's message as one line. An
    argument of a component its preset does not list gets Hydra's + in `overrides` itself (adds_argument), and so
    does a whole number typed as a float for an integer key (trainer.max_steps=1e3 -> 1000: integral_value). A
    group's preset is checked by its name (model=tiny.yaml, model=30M: preset_message). keep=True leaves Hydra
    initialized on conf/, so run_app can run its job from this very config (run_composed); the caller clears it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    for _ in range(len(overrides) + 1):
        GlobalHydra.instance().clear()
        try:
            init = initialize_config_dir(str(CONF), version_base="1.3", job_name=name)  # initializes Hydra
            try:
                cfg = hydra_compose(name, overrides, return_hydra_config=True)
            finally:
                if not keep:
                    init.__exit__(None, None, None)  # Hydra as it was before
        except Exception as e:  # omegaconf and hydra errors: a bad key, value or group option
            unknown = re.match(r"Could not override '([^']+)'", str(e))
            if unknown and adds_argument(overrides, unknown.group(1)):
                continue  # a component's argument its preset does not list: added, checked when it is built
            if unknown:
                raise Refused(unknown_key_message(name, overrides, unknown.group(1))) from None
            missing = re.search(r"Could not find '([^'/]+)/([^']+)'", str(e))
            if missing and (msg := preset_message(missing.group(1), missing.group(2))):
                raise Refused(msg) from None
            if integral_value(overrides, e):
                continue  # trainer.max_steps=1e3: the integer it is
            raise (ConfigError if getattr(e.__cause__, "full_key", None) else Refused)(
                hydra_message(e, typed_value(overrides, e))) from None
        for group, choice in cfg.hydra.runtime.choices.items():  # what Hydra took as a preset (model=tiny.yaml)
            if isinstance(choice, str) and (msg := preset_message(group, choice)):
                raise Refused(msg)
        return cfg


def unknown_key_message(name: str, overrides: list[str], key: str) -> str:
    """A key or group the config does not have, with the close matches from the config the rest composes."""
    import difflib
    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    try:
        cfg = compose(name, rest)
        keys = flat_keys(cfg) + list(cfg.hydra.runtime.choices)
    except Refused:  # another bad override: no suggestions
        keys = []
    close = difflib.get_close_matches(key, sorted({k for k in keys if not k.startswith("hydra")}), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{key} is not a key{hint} (python -m gptlab.{name} --help lists the keys)"


def one_line_warnings() -> None:
    """Warnings print as `warning: <message>`, one line, without Python's source line."""
    import warnings
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {' '.join(str(message).split())}\n"


PIPE_CLOSED = 141  # the reader of stdout went away (`| head -1`): the shell's code for a process ended by SIGPIPE


@contextmanager
def closed_pipe_is_quiet() -> Iterator[None]:
    """A reader of stdout that went away (`python -m gptlab.sample ... | head -1`) ends the command quietly with exit
    141, as a command killed by SIGPIPE does, instead of a BrokenPipeError traceback. Python's own recipe: stdout
    pointed at devnull, so the flush at exit finds nowhere to fail."""
    try:
        try:
            yield
        finally:
            sys.stdout.flush()  # inside: a print still buffered fails here, not at exit
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(PIPE_CLOSED)


def run(entry: Entry, argv: list[str] | None = None) -> None:
    """The whole life of a non-Hydra-app entry point: --help, compose, check, work, exit codes."""
    argv = sys.argv[1:] if argv is None else argv
    one_line_warnings()
    with closed_pipe_is_quiet():
        try:
            if "--help" in argv or "-h" in argv:
                print(help_text(entry, argv))
                sys.exit(0)
            cfg = compose(entry.name, rewrite(argv, entry))
        except UserError as e:
            fail(e, 2)
        do(entry, cfg)


def do(entry: Entry, cfg, in_sweep: bool = False):
    """check, then work, with the exit codes; in a sweep a failed job raises, so Hydra records it and goes on."""
    from omegaconf.errors import OmegaConfBaseException
    try:
        checked = entry.check(cfg)
    except UserError as e:
        forget_job_folder()
        fail(e, 2)  # nothing has been done yet: every refusal here is exit 2
    except OmegaConfBaseException as e:  # a ??? left unset, a value of the wrong type
        forget_job_folder()
        fail(Refused(hydra_message(e)), 2)
    try:
        with closed_pipe_is_quiet():
            return entry.work(checked)
    except UserError as e:
        if in_sweep:
            print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
            raise
        fail(e)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)


def forget_job_folder() -> None:
    """A refused command leaves nothing behind: the folder Hydra made for the job is removed when it holds only
    Hydra's own files (.hydra/ and an empty log), and so are the folders above it that this leaves empty."""
    import shutil

    from hydra.core.hydra_config import HydraConfig
    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    out, log = Path(hc.runtime.output_dir), Path(hc.runtime.output_dir) / f"{hc.job.name}.log"
    if not out.is_dir() or any(p.name not in (".hydra", log.name) for p in out.iterdir()) or \
            (log.is_file() and log.stat().st_size):
        return
    shutil.rmtree(out / ".hydra", ignore_errors=True)
    log.unlink(missing_ok=True)
    for folder in (out, *out.parents):
        if folder == Path.cwd() or any(folder.iterdir()):
            break
        folder.rmdir()


def run_app(entry: Entry, argv: list[str] | None = None, in_sweep: Callable[[], bool] = lambda: False):
    """An entry point that needs Hydra's app (run folders, -m sweeps, launchers): train and bench. A single run is
    composed once: a bad argument is refused in one line (exit 2), and the job runs from that same config. A sweep
    (its every value checked first) and Hydra's own flags (--cfg job, --info) go through hydra.main."""
    import hydra
    from hydra.core.global_hydra import GlobalHydra
    argv = sys.argv[1:] if argv is None else argv
    one_line_warnings()
    cfg = None
    try:
        if "--help" in argv or "-h" in argv:
            with closed_pipe_is_quiet():
                print(help_text(entry, argv))
            sys.exit(0)
        overrides = rewrite(argv, entry)
        if any(a in ("-m", "--multirun") for a in overrides):
            check_sweep(entry.name, overrides)
        elif not any(a.startswith("-") for a in overrides):
            cfg = compose(entry.name, overrides, keep=True)
    except UserError as e:
        GlobalHydra.instance().clear()
        fail(e, 2)
    if cfg is not None:
        try:
            return run_composed(entry.name, cfg, lambda c: do(entry, c, in_sweep()))
        finally:
            GlobalHydra.instance().clear()
    app = hydra.main(version_base="1.3", config_path=str(CONF), config_name=entry.name)(
        lambda cfg: do(entry, cfg, in_sweep()))
    sys.argv = [sys.argv[0]] + overrides
    app()


def run_composed(name: str, cfg, task):
    """What hydra.main does for a single run (Hydra.run), from a config already composed: the job's folder, its
    .hydra/ record, its logging and HydraConfig, then task(cfg) and Hydra's callbacks. Its result, or its error."""
    from hydra._internal.callbacks import Callbacks
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import run_job
    from hydra.types import HydraContext, RunMode
    from omegaconf import open_dict
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.RUN
    callbacks = Callbacks(cfg)
    callbacks.on_run_start(config=cfg, config_name=name)
    ret = run_job(hydra_context=HydraContext(config_loader=GlobalHydra.instance().config_loader(), callbacks=callbacks),
                  task_function=task, config=cfg, job_dir_key="hydra.run.dir", job_subdir_key=None,
                  configure_logging=True)
    callbacks.on_run_end(config=cfg, config_name=name, job_return=ret)
    return ret.return_value  # raises the job's error, as hydra.main would


def check_sweep(name: str, overrides: list[str]) -> None:
    """A -m command line refused before its first job starts when any value it sweeps would be (model=30M,tiny:
    'did you mean model=30m?'): every swept value is composed once, with the other swept keys at their first value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    words = [o for o in overrides if not o.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(words)
    except Exception as e:
        raise Refused(hydra_message(e)) from None
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    swept = [(o.get_key_element(), swept_values(o)) for o in parsed if o.is_sweep_override()]
    first = [f"{key}={values[0]}" for key, values in swept if values]
    compose(name, fixed + first)
    for i, (key, values) in enumerate(swept):
        for value in values[1:]:
            compose(name, fixed + first[:i] + [f"{key}={value}"] + first[i + 1:])


def swept_values(override) -> list[str]:
    """A sweep's values (a,b / choice / range); none for a sweeper's own search space (interval(...): Optuna's)."""
    try:
        return list(override.sweep_string_iterator())
    except Exception:
        return []


def help_text(entry: Entry, argv: list[str]) -> str:
    """The entry point's commands and keys, with the values the rest of the command line composes
    (gptlab/config/help.py); a bad argument there is refused as it would be without --help."""
    import importlib

    from gptlab.config import help
    argv = [a for a in argv if a not in ("--help", "-h", "-m", "--multirun")]
    cfg = compose(entry.name, rewrite(argv, entry))
    doc = importlib.import_module(f"gptlab.{entry.name}").__doc__ or ""
    return help.text(entry.name, doc, cfg, entry.aliases, entry.positional)
