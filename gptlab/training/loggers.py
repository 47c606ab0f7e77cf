"""The loggers a run writes to besides metrics.csv: Weights & Biases (never blocking) and TensorBoard.

    python -m gptlab.train logger.mode=offline        # W&B files under <run>/wandb; the run ends with the `wandb sync`
    python -m gptlab.train logger=tensorboard         # a local dashboard: tensorboard --logdir runs
    python -m gptlab.train logger=wandb_tensorboard   # both
    python -m gptlab.train logger=none                # neither; metrics.csv is always written

W&B goes online when logged in (an API key in the environment or ~/.netrc) and its server answers within
logger.init_timeout seconds; otherwise the run is written offline, with one line saying so, and ends by printing the
`wandb sync` command. Curves use tokens trained as their x-axis, so runs with other batches line up.
"""
from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urlparse

from gptlab.config import LoggerConfig
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


def wandb_mode(logger: LoggerConfig) -> str:
    """online or offline: auto is online when logged in and the server accepts a connection in time."""
    mode = logger.mode
    if mode == "auto":
        mode = os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")
    if mode == "online" and not answers(logger.init_timeout):
        log.info(f"W&B: {wandb_host()[0]} cannot be reached: the run is written offline (wandb sync uploads it later)")
        mode = "offline"
    return mode


def wandb_logger(logger: LoggerConfig, run_dir: Path, sweep: str | None = None, name: str | None = None,
                 config: dict | None = None):
    """A started W&B logger, or None when logger.project is unset. An online start-up that fails or outlasts
    logger.init_timeout falls back to offline; never `offline=True`, which sets WANDB_MODE process-wide."""
    if not logger.project:
        return None
    os.environ.setdefault("WANDB_SILENT", "true")  # read at import: no 'Loaded credentials' lines on every start
    id_file = run_dir / "wandb_id.txt"  # the same W&B run continues after a resume
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
    atomic_write_text(id_file, run_id)
    mode = wandb_mode(logger)
    try:
        wb = _start(logger, run_dir, run_id, mode, sweep, name)
    except Exception as e:  # a server that accepted the connection but not the run: offline, as if unreachable
        if mode != "online":
            raise
        log.info(f"W&B: online start-up failed ({type(e).__name__}: {str(e).splitlines()[0][:160]}): the run is "
                 "written offline")
        import wandb
        wandb.finish()
        wandb.teardown()  # the service still holds the failed online run's id
        wb = _start(logger, run_dir, run_id, "offline", sweep, name)
    if config:
        wb.experiment.config.update(config, allow_val_change=True)  # the whole resolved config, not only hparams
    return wb


def bounded_settings(seconds: float):
    """W&B settings under which an online start-up gives up within about `seconds` (login, the resume query and the
    run's creation each get a share; wandb's default retries would take minutes)."""
    import wandb
    return wandb.Settings(init_timeout=seconds, login_timeout=seconds / 3, x_graphql_timeout_seconds=seconds / 3,
                          x_graphql_retry_max=1, silent=True)


def _start(logger: LoggerConfig, run_dir: Path, run_id: str, mode: str, sweep: str | None, name: str | None):
    from lightning.pytorch.loggers import WandbLogger
    wb = WandbLogger(project=logger.project, group=logger.group or sweep, name=logger.name or name or run_dir.name,
                     save_dir=str(run_dir), id=run_id, resume="allow", mode=mode, tags=list(logger.tags),
                     job_type=logger.job_type, settings=bounded_settings(logger.init_timeout))
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
        run.summary.update(flat(summary.get("plateau_extrapolated"), "plateau"))
        if summary.get("cooldown"):
            run.summary.update(flat(summary["cooldown"], "cooldown"))
    offline, folder = run.settings.mode == "offline" or run.offline, Path(run.dir).parent
    wandb.finish()
    if offline:
        log.info(f"W&B: written offline; upload it with: wandb sync {folder}")


def tensorboard_logger(enabled: bool, run_dir: Path):
    """TensorBoard event files under <run>/tensorboard (tensorboard --logdir runs shows every run)."""
    if not enabled:
        return None
    from lightning.pytorch.loggers import TensorBoardLogger
    return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False)


def flat(value, prefix: str) -> dict:
    """A summary entry as W&B summary keys: {'plateau/L_inf': ...}, or {'plateau': 'refused: ...'} for a string."""
    if isinstance(value, dict):
        return {f"{prefix}/{k}": v for k, v in value.items()}
    return {} if value is None else {prefix: value}


def wandb_update_summary(logger: LoggerConfig, run_dir: Path, values: dict) -> None:
    """Add `values` to a finished run's W&B summary: its run (wandb_id.txt) reopened and closed, offline when W&B
    cannot be reached, as the run itself was."""
    id_file = Path(run_dir) / "wandb_id.txt"
    if not logger.project or not id_file.is_file() or not values:
        return
    import wandb
    run = wandb.init(project=logger.project, id=id_file.read_text().strip(), resume="allow", dir=str(run_dir),
                     mode=wandb_mode(logger), group=logger.group, job_type=logger.job_type,
                     settings=bounded_settings(logger.init_timeout))
    run.summary.update(values)
    wandb.finish()
