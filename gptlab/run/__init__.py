"""A run's life: where its folder is (folder.py), its lock (lock.py), what one invocation adds to it (launch.py), its
records (records.py, curves.py), resume (resume.py), cooldown branches (branch.py) and SLURM requeue (requeue.py).
Training writes a run through this package; eval, report and sweeps read it back through folder.py.

The states a run folder moves through:

    (none) --train--> made: config.yaml, machine.json, .lock held
    made --first step--> running (locked): metrics.csv rows, checkpoints/last.ckpt at evals and every N minutes
    running --trainer.stop_after / SIGINT / SIGUSR1,2 / SIGTERM--> stopped at step N: last.ckpt, summary.json
                                                                   {"finished": false, "stopped": ...}
    running --SIGKILL, OOM, power cut--> stopped at the last save (the kernel drops the lock; records are atomic)
    running --trainer.max_steps (or target_val_loss)--> finished: summary.json {"finished": true}, best.ckpt
    stopped --resume=<run>, or the same command into the same folder (a requeue)--> running, from last.ckpt
    stopped by SIGUSR1/2 in a SLURM job --scontrol requeue--> the job's own command --> running
    finished --resume=<run> trainer.max_steps=<more>--> running;  finished --resume=<run>--> finished (nothing to do)
    finished, cooldown.branches=true --> branched: <run>/cooldowns/step-N/, each a run folder with this same life
    running --non-finite loss--> stopped before any checkpoint took it in (exit 1, the last good step named)

    python -m gptlab.train trainer.stop_after=50 && python -m gptlab.train resume=runs/last
"""
