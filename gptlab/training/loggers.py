"""The loggers a run writes to besides metrics.csv: Weights & Biases, online when logged in, offline otherwise.

    python -m gptlab.train logger.mode=offline        # W&B files under <run>/wandb; `wandb sync` uploads them later
    python -m gptlab.train logger=none                # no W&B; metrics.csv is always written
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

from gptlab.config import LoggerConfig
from gptlab.fs import atomic_write_text


def wandb_logged_in() -> bool:
    """An API key in the environment or in ~/.netrc (where `wandb login` puts it); no network, no prompt."""
    import netrc
    from urllib.parse import urlparse
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_logger(logger: LoggerConfig, run_dir: Path, sweep: str | None = None):
    """W&B online when logged in, offline otherwise; never `offline=True`, which sets WANDB_MODE process-wide.
    None when logger=none (no project)."""
    if not logger.project:
        return None
    import wandb
    from lightning.pytorch.loggers import WandbLogger
    mode = logger.mode
    if mode == "auto":
        mode = os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")
    id_file = run_dir / "wandb_id.txt"  # the same W&B run continues after a resume
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
    atomic_write_text(id_file, run_id)
    return WandbLogger(project=logger.project, group=logger.group or sweep, name=logger.name or run_dir.name,
                       save_dir=str(run_dir), id=run_id, resume="allow", mode=mode, tags=list(logger.tags),
                       settings=wandb.Settings(init_timeout=60, silent=True))
