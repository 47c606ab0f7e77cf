"""The loggers a run writes to besides metrics.csv: Weights & Biases (never blocking) and TensorBoard.

    python -m gptlab.train logger.wandb.mode=offline  # W&B files under <run>/wandb; the run ends with the `wandb sync`
    python -m gptlab.train logger=tensorboard         # a local dashboard: tensorboard --logdir runs
    python -m gptlab.train logger=wandb_tensorboard   # both
    python -m gptlab.train logger=none                # neither; metrics.csv is always written

Each logger is a component: conf/logger/<name>.yaml names its _target_ (wandb_logger below, or any Lightning logger
class) and arguments, and fit builds every one under `logger.*` (gptlab/training/components.py). W&B goes online
when logged in (an API key in the environment or ~/.netrc) and its server answers within logger.wandb.init_timeout
seconds; otherwise the run is written offline, with one line saying so, and ends by printing the `wandb sync`
command. Curves use tokens trained as their x-axis, so runs with other batches line up.
"""
from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urlparse

from gptlab.fs import atomic_write_text

log = logging.getLogger("gptlab")
CURVES = ("train/loss", "val/loss", "val/ppl", "val/tokens", "lr", "mfu", "tokens_per_s")  # drawn against tokens


def wandb_host() -> tuple[str, int]:
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    return url.hostname or "api.wandb.ai", url.port or (443 if url.scheme != "http" else 80)


def wandb_logged_in() -> bool:
    """An API key in the environment or in ~/.netrc (where `wandb login` puts it); no network, no prompt."""
    import netrc
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(wandb_host()[0]) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def answers(timeout: float) -> bool:
    """Whether the W&B server answers an HTTP request within `timeout` seconds (any status: 401 is an answer)."""
    import urllib.error
    import urllib.request
    host, port = wandb_host()
    try:
        socket.create_connection((host, port), timeout=min(timeout, 10.0)).close()
    except OSError:
        return False
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").rstrip("/")
    request = urllib.request.Request(base + "/graphql", data=b'{"query": "{ viewer { id } }"}',
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):  # refused, timed out, no route, a bad URL
        return False
    return True


def wandb_mode(mode: str, init_timeout: float) -> str:
    """online or offline: auto is online when logged in and the server accepts a connection in time."""
    if mode == "auto":
        mode = os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")
    if mode == "online" and not answers(init_timeout):
        log.info(f"W&B: {wandb_host()[0]} cannot be reached: the run is written offline (wandb sync uploads it later)")
        mode = "offline"
    return mode


def wandb_logger(*, save_dir: str, project: str, group: str | None, name: str | None, job_type: str | None,
                 mode: str, tags: list, init_timeout: float):
    """A started Lightning WandbLogger (conf/logger/wandb.yaml gives every argument). An online start-up that fails
    or outlasts init_timeout falls back to offline; never `offline=True`, which sets WANDB_MODE process-wide."""
    from gptlab.config.checks import ConfigError
    if mode not in ("auto", "online", "offline"):
        raise ConfigError(f"logger.wandb.mode={mode!r} is not one of auto, online, offline")
    if not (isinstance(init_timeout, int | float) and init_timeout > 0):
        raise ConfigError(f"logger.wandb.init_timeout must be a number of seconds > 0, got {init_timeout!r}")
    os.environ.setdefault("WANDB_SILENT", "true")  # read at import: no 'Loaded credentials' lines on every start
    run_dir = Path(save_dir)
    id_file = run_dir / "wandb_id.txt"  # the same W&B run continues after a resume
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
    from gptlab.run.lock import launcher_rank
    if launcher_rank() == 0:  # Lightning starts W&B on rank 0 only; the other ranks write nothing
        atomic_write_text(id_file, run_id)
    args = dict(project=project, group=group, name=name or run_dir.name, save_dir=str(run_dir), id=run_id,
                tags=list(tags), job_type=job_type, settings=bounded_settings(init_timeout))
    mode = wandb_mode(mode, init_timeout)
    try:
        return _start(args, mode)
    except Exception as e:  # a server that accepted the connection but not the run: offline, as if unreachable
        if mode != "online":
            raise
        log.info(f"W&B: online start-up failed ({type(e).__name__}: {str(e).splitlines()[0][:160]}): the run is "
                 "written offline")
        import wandb
        wandb.finish()
        wandb.teardown()  # the service still holds the failed online run's id
        return _start(args, "offline")


def bounded_settings(seconds: float):
    """W&B settings under which an online start-up gives up within about `seconds` (login, the resume query and the
    run's creation each get a share; wandb's default retries would take minutes)."""
    import wandb
    return wandb.Settings(init_timeout=seconds, login_timeout=seconds / 3, x_graphql_timeout_seconds=seconds / 3,
                          x_graphql_retry_max=1, silent=True)


def _start(args: dict, mode: str):
    from lightning.pytorch.loggers import WandbLogger
    wb = WandbLogger(resume="allow", mode=mode, **args)
    wb._wandb_init.pop("anonymous", None)  # Lightning always passes it; wandb warns that it has no effect
    experiment = wb.experiment  # start now, inside the fallback, not at the first logged step
    experiment.define_metric("tokens")
    for key in CURVES:
        experiment.define_metric(key, step_metric="tokens")
    return wb


def wandb_finish(summary: dict | None) -> None:
    """Close the W&B run with the summary's headline numbers; an offline run says how to upload it."""
    import wandb
    run = wandb.run
    if run is None:
        return
    if summary:
        run.summary.update({k: summary.get(k) for k in ("best_val_loss", "best_val_step", "final_val_loss",
                                                         "final_val_step", "final_val_ppl", "final_val_loss_a",
                                                         "final_val_loss_b", "tokens", "params", "finished")
                            if k in summary})
        run.summary.update(summary_keys(summary.get("plateau_extrapolated"), "plateau"))
        if summary.get("cooldown"):
            run.summary.update(summary_keys(summary["cooldown"], "cooldown"))
    offline, folder = run.settings.mode == "offline" or run.offline, Path(run.dir).parent
    wandb.finish()
    if offline:
        log.info(f"W&B: written offline; upload it with: wandb sync {folder}")


def summary_keys(value, prefix: str) -> dict:
    """A summary entry as W&B summary keys: {'plateau/L_inf': ...}, or {'plateau': 'refused: ...'} for a string."""
    if isinstance(value, dict):
        return {f"{prefix}/{k}": v for k, v in value.items()}
    return {} if value is None else {prefix: value}


def wandb_update_summary(spec: dict | None, run_dir: Path, values: dict) -> None:
    """Add `values` to a finished run's W&B summary: its run (wandb_id.txt) reopened and closed, offline when W&B
    cannot be reached, as the run itself was. `spec` is the run's logger.wandb (None: the run had no W&B)."""
    id_file = Path(run_dir) / "wandb_id.txt"
    if not spec or not id_file.is_file() or not values:
        return
    import wandb
    run = wandb.init(project=spec["project"], id=id_file.read_text().strip(), resume="allow", dir=str(run_dir),
                     mode=wandb_mode(spec["mode"], spec["init_timeout"]), group=spec.get("group"),
                     job_type=spec.get("job_type"), settings=bounded_settings(spec["init_timeout"]))
    run.summary.update(values)
    wandb.finish()
