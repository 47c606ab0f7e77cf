"""What one invocation adds to the run it runs, apart from the run's own config (which config.yaml records, frozen
once checked): the step its checkpoint holds and what its command line changed. Never recorded in config.yaml.

    python -m gptlab.train resume=runs/last trainer.max_steps=4000
    # Launch(resume_step=1500, changes=('trainer.max_steps: 1500 -> 4000',)): the header's 'resumed at step 1500; ...'

"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Launch:
    resume_step: int | None = None  # the optimizer step a resumed or branched checkpoint holds; None: a fresh run
    changes: tuple[str, ...] = ()  # 'key: saved -> given' for each key a resume (or branch) changed
