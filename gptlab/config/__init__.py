"""The typed config (no torch): schema.py (training) and commands.py (the other entry points) hold every key's
default, type, comment and check; store.py registers them with Hydra and builds them; derive.py works out the
derived values once; presets.py reads conf/; folders.py names a run's folder; help.py writes --help; overrides.py
reads and writes Hydra overrides; components.py checks a component's _target_ and argument types.

    python -c "from gptlab.config import GPTConfig; print(GPTConfig())"
"""
from gptlab.config.checks import ConfigError
from gptlab.config.derive import MICRO_BATCH, run_config
from gptlab.config.folders import register as register_folders
from gptlab.config.schema import PRECISIONS, DataConfig, Derived, GPTConfig, RunConfig, SampleConfig, TrainerConfig
from gptlab.config.store import register
from gptlab.config.study import register as register_seeds

register()  # the schemas, as conf/<entry>.yaml's first default (gptlab/config/store.py)
register_seeds()  # ${seeds:n} in a study's sweep (gptlab/config/study.py)
register_folders()  # ${run_folder:} in hydra.run.dir (gptlab/config/folders.py)

__all__ = ["MICRO_BATCH", "PRECISIONS", "ConfigError", "DataConfig", "Derived", "GPTConfig", "RunConfig",
           "SampleConfig", "TrainerConfig", "run_config"]
