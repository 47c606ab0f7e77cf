"""Sample several models alike on one prompt set and measure their samples: length, distinct-n, rep-4, self-BLEU and
the continuation's perplexity under a reference model, each with a 95% interval over prompts.

    python -m gptlab.generations models=[runs/a,runs/b] prompts=builtin             # "The future of AI is", ...
    python -m gptlab.generations models=[runs/a,runs/b] prompts=val:data/shakespeare ref=runs/b   # + human baseline
    python -m gptlab.generations models=[runs/a,hf:gpt2] ref=hf:gpt2-large prompts=file:prompts.txt n_samples=8
    python -m gptlab.report runs/multirun/<sweep> generations=generations           # the report's Generation section
    python -m gptlab.generations --help

Writes <out>/generations.md (figures, then the samples side by side: one row per prompt, one column per model),
generations.json and generations.png. Options are checked before torch is imported and any model loaded.
"""
from __future__ import annotations

from pathlib import Path

from gptlab import cli
from gptlab.config.checks import require
from gptlab.devices import resolve_device
from gptlab.model.spec import check_spec


def check(cfg):
    """Every option refused before torch is imported: models, prompts, numbers, sampling, device."""
    from omegaconf import OmegaConf
    raw = cli.given(cfg, "models")
    raw = OmegaConf.to_object(raw) if OmegaConf.is_config(raw) else raw
    models = [str(m) for m in (raw if isinstance(raw, list) else [] if raw is None else [raw])]
    require(models, "models= is required: one or more run folders, .ckpt files or hf:<name>, e.g. "
            "models=[runs/a,hf:gpt2]")
    for spec in models + ([str(cfg.ref)] if cfg.ref else []):
        msg = check_spec(spec, "models" if spec in models else "ref")
        require(msg is None, msg or "")
    p = str(cfg.prompts)
    require(p == "builtin" or p.startswith(("file:", "val:")),
            f"prompts={p!r}: use builtin, file:<path> (one prompt a line) or val:<prepared data folder>")
    require(not p.startswith("file:") or Path(p[5:]).is_file(), f"prompts={p}: no such file; give one prompt a line")
    require(not p.startswith("val:") or Path(p[4:]).is_dir(), f"prompts={p}: no such data folder; prepare it with "
            "python -m gptlab.prepare, or give its path")
    cli.typed(cfg, "generations")  # every key's type and range (gptlab/config/commands.py GenerationsCommand)
    if cfg.greedy:
        cfg.temperature = 0  # argmax decoding: gptlab.model.sampling.sample_next
    resolve_device(cfg.device)
    return cfg, models


def work(checked) -> None:
    cfg, models = checked
    from gptlab.analysis.sample_tables import write_generations
    from gptlab.data.tokenizer import get_tokenizer
    from gptlab.devices import torch_device
    from gptlab.evaluation.prompts import read_prompts
    from gptlab.evaluation.samples import run_generations
    enc = get_tokenizer()
    prompts = read_prompts(str(cfg.prompts), enc, cfg.n_prompts, cfg.prompt_tokens, cfg.max_new_tokens)
    result = run_generations(models, prompts, cfg, enc, torch_device(cfg.device))
    out = write_generations(result, Path(cfg.out))
    print(f"wrote {out / 'generations.md'}, generations.json and generations.png")


ENTRY = cli.Entry("generations", check, work, lists=("models",))

if __name__ == "__main__":
    cli.run(ENTRY)
