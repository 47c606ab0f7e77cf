"""The typed config tree and its validation (no torch): schema.py the dataclasses, checks.py the checks they are
built from, batch.py the batch arithmetic, validate.py validate() and run_config(), sampling.py the sampling options.

    python -c "from gptlab.config import GPTConfig; print(GPTConfig())"
"""
from gptlab.config.batch import MICRO_BATCH, accumulation, block_size, resolve_micro_batch, world_size
from gptlab.config.checks import ConfigError
from gptlab.config.schema import (
           PRECISIONS,
           SCHEDULES,
           GPTConfig,
           LoggerConfig,
           OptimConfig,
           RunConfig,
           SampleConfig,
           SchedConfig,
)
from gptlab.config.study import register
from gptlab.config.validate import run_config, validate, validate_model

register()  # ${seeds:n} in a study's sweep (gptlab/config/study.py)

__all__ = ["MICRO_BATCH", "PRECISIONS", "SCHEDULES", "ConfigError", "GPTConfig", "LoggerConfig", "OptimConfig",
           "RunConfig", "SampleConfig", "SchedConfig", "accumulation", "block_size", "resolve_micro_batch",
           "run_config", "validate", "validate_model", "world_size"]
