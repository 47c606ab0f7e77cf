"""What `model=` may name, checked without torch: a run folder, a .ckpt file, or hf:<GPT-2 name or folder>.

    python -c "from gptlab.model.spec import check_spec; print(check_spec('runs/nothere'))"   # the one-line refusal
"""
from __future__ import annotations

from pathlib import Path

HF_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
FORMS = ("a run folder (its checkpoints/best.ckpt, else last.ckpt)", "a .ckpt file written by gptlab.train",
         "hf:gpt2 ... hf:gpt2-xl", "a local Hugging Face GPT-2 folder (hf: optional)")


def canonical(spec) -> str:
    """`spec` as the loaders take it: a local Hugging Face folder (config.json, no checkpoints/) gets its hf: prefix,
    so model=exports/tiny and model=hf:exports/tiny are one thing; anything else is returned as it is."""
    s = str(spec)
    p = Path(s)
    hf_folder = not s.startswith("hf:") and (p / "config.json").is_file() and not (p / "checkpoints").is_dir()
    return f"hf:{s}" if hf_folder else s


def run_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a run folder is loaded from: best.ckpt if present, else last.ckpt; None without either."""
    return next((c for c in (run_dir / "checkpoints" / "best.ckpt", run_dir / "checkpoints" / "last.ckpt")
                 if c.is_file()), None)


CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def may_be_checkpoint(path: Path) -> bool:
    """Whether a file may be a torch checkpoint: named like one, or beginning as torch's zip or a pickle does. One
    that may be is read (and named damaged if it is); any other file (README.md) is not a checkpoint at all."""
    if path.suffix in CHECKPOINT_SUFFIXES:
        return True
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def sweep_runs(folder: Path) -> list[Path]:
    """The run folders directly inside `folder` (each with config.yaml or checkpoints/), in job order: a sweep's
    (runs/multirun/last); [] for any other folder."""
    if not folder.is_dir() or (folder / "checkpoints").is_dir():
        return []
    runs = [c for c in folder.iterdir()
            if c.is_dir() and ((c / "config.yaml").is_file() or (c / "checkpoints").is_dir())]
    return sorted(runs, key=lambda c: (not c.name.isdigit(), int(c.name) if c.name.isdigit() else 0, c.name))


def sweep_message(folder: Path, key: str = "model") -> str:
    """A sweep given where one run is taken: which runs it holds (a few, then how many more), and what to write."""
    runs = sweep_runs(folder)
    shown = ", ".join(str(r) for r in runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
    example = f"{key}=[{runs[0]}]" if key == "models" else f"{key}={runs[0]}"  # generations takes a list
    return (f"{folder} is a sweep of {len(runs)} run{'s' if len(runs) != 1 else ''}, not a run folder: name one of "
            f"them ({shown}), e.g. {example}; python -m gptlab.report {folder} compares them")


def hf_ref(spec: str) -> str | None:
    """'hf:gpt2' -> 'gpt2' (and an existing folder -> itself); None when it is neither."""
    ref = spec[3:] if spec.startswith("hf:") else spec
    return ref if Path(ref).is_dir() or ref.removeprefix("openai-community/") in HF_NAMES else None


def check_spec(spec, key: str = "model") -> str | None:
    """None when `spec` names something loadable, else the one-line message that says what to pass instead (`key`,
    the argument that gave it, in its example)."""
    s = "" if spec is None else canonical(spec)
    if not s.strip():
        return f"model= is required: {'; '.join(FORMS)}"
    if s.startswith("hf:"):
        if hf_ref(s) is None:
            return (f"{s!r} is neither a folder nor a known GPT-2; valid names: "
                    + ", ".join(f"hf:{n}" for n in HF_NAMES) + ", or hf:<local Hugging Face GPT-2 folder>")
        return None
    p = Path(s)
    if p.is_dir() and (p / "checkpoints").is_dir():
        return None if run_checkpoint(p) else f"{p}: run folder without checkpoints/best.ckpt or checkpoints/last.ckpt"
    if sweep_runs(p):
        return sweep_message(p, key)
    if p.is_file() and may_be_checkpoint(p):
        return None
    if p.exists():
        return f"cannot load {s!r}: not a run folder or a checkpoint; model= takes {'; '.join(FORMS)}"
    return f"cannot load {s!r}: no such run folder or file; model= takes {'; '.join(FORMS)}"


def check_reachable(spec) -> None:
    """Refused at once (exit 2) when `spec` names hub weights (hf:gpt2) that are not cached and the hub cannot be
    reached, instead of a download retried for half a minute later on; the hub libraries are set offline then."""
    from gptlab.hub import HubUnreachable, offline_unless_reachable, unreachable_message
    s = canonical(spec)
    ref = hf_ref(s) if s.startswith("hf:") else None
    if ref is None or Path(ref).is_dir() or offline_unless_reachable():
        return
    from huggingface_hub import try_to_load_from_cache  # after the offline switch: it reads it when imported
    repo = ref if "/" in ref else f"openai-community/{ref}"
    if not any(isinstance(try_to_load_from_cache(r, f), str) for r in (repo, ref)
               for f in ("model.safetensors", "pytorch_model.bin")):
        raise HubUnreachable(unreachable_message(
            s, f"download its weights once where the hub is reachable (`hf download {repo}`) and copy "
            "the cache here (HF_HOME), or pass a local Hugging Face folder"))


# GPT-2's released shapes (the Hugging Face configs), so init=hf:<name> is checked without downloading anything
HF_SHAPES = {"gpt2": (12, 12, 768), "gpt2-medium": (24, 16, 1024), "gpt2-large": (36, 20, 1280),
             "gpt2-xl": (48, 25, 1600)}


def architecture(spec, keep=(), into=None) -> dict:
    """The GPTConfig keys (less `keep`) of the model `spec` names, read from its config without building it: a run
    folder's config.yaml, a checkpoint's hyper_parameters, a GPT-2 name or a Hugging Face folder's config.json.
    With `into` (the configured model), a line says which keys the weights change. ConfigError when it is missing."""
    from gptlab.config.checks import ConfigError
    from gptlab.config.schema import GPTConfig
    s = canonical(spec)
    if not s.startswith("hf:") and not Path(s).exists():
        raise ConfigError(f"init={s}: no such run folder or .ckpt file (or write hf:<name> for Hugging Face)")
    if (msg := check_spec(s)) is not None:
        raise ConfigError(f"init={s}: {msg}")
    arch = {**GPTConfig.standard(), **_read_architecture(s)}  # GPT-2 and runs from before muP and the options
    shaping = GPTConfig.architecture_keys()  # every key that shapes the weights or the function: all but dropout
    arch = {k: v for k, v in arch.items() if k in shaping and k not in keep}
    changed = {k: v for k, v in arch.items() if into is not None and into.get(k) != v}
    if changed:
        print(f"init={s}: model architecture taken from the weights: {changed}")
    return arch


def _read_architecture(s: str) -> dict:
    import json
    ref = hf_ref(s) if s.startswith("hf:") else None
    if ref is not None and not Path(ref).is_dir():
        layers, heads, width = HF_SHAPES[ref.removeprefix("openai-community/")]
        return dict(n_layer=layers, n_head=heads, n_embd=width, block_size=1024, vocab_size=50257, bias=True,
                    gelu="tanh")
    if ref is not None:
        c = json.loads((Path(ref) / "config.json").read_text())
        return dict(n_layer=c["n_layer"], n_head=c["n_head"], n_embd=c["n_embd"], block_size=c["n_positions"],
                    vocab_size=c["vocab_size"], bias=True, gelu="tanh" if "tanh" in c.get("activation_function",
                                                                                          "gelu_new") or
                    c.get("activation_function") == "gelu_new" else "none")
    p = Path(s)
    if p.is_dir() and (p / "config.yaml").is_file():
        import yaml
        return dict((yaml.safe_load((p / "config.yaml").read_text()) or {}).get("model") or {})
    from gptlab.model.checkpoint import read_checkpoint  # a .ckpt: its hyper-parameters, read with weights_only
    ckpt = read_checkpoint(run_checkpoint(p) if p.is_dir() else p)
    return dict(((ckpt.get("hyper_parameters") or {}).get("model")) or {})
