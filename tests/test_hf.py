"""Hugging Face import/export and load_model, offline: every HF model here is a tiny random one saved locally."""
import os

import pytest
import torch
from helpers import run_entry
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from gptlab.config.schema import GPTConfig
from gptlab.errors import Refused
from gptlab.hf import ENTRY as HF
from gptlab.model.checkpoint import LoadError, check_compatible
from gptlab.model.convert import HFError, from_hf, to_hf
from gptlab.model.gpt import GPT
from gptlab.model.load import load_model

TINY = dict(n_layer=2, n_head=2, n_embd=32)


def tokens(vocab=50257, seed=0):
    return torch.randint(0, vocab, (2, 12), generator=torch.Generator().manual_seed(seed))


def gpt(**kw):
    torch.manual_seed(0)
    m = GPT(GPTConfig(**{**TINY, "block_size": 64, "vocab_size": 50257, **kw})).eval()
    with torch.no_grad():  # nonzero biases and gains, so a dropped or misplaced one shows in the logits
        for name, p in m.named_parameters():
            if p.dim() == 1:
                p.normal_(0.0 if name.endswith("bias") else 1.0, 0.1)
    return m


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(**TINY, n_positions=64, vocab_size=50257)).eval()
    path = tmp_path_factory.mktemp("hf") / "tiny-gpt2"
    hf.save_pretrained(path)
    return path, hf


def test_from_hf_folder_gives_transformers_logits(hf_dir):
    path, hf = hf_dir
    m = from_hf(path)
    assert (m.config.n_layer, m.config.n_head, m.config.n_embd, m.config.block_size, m.config.vocab_size) == \
           (2, 2, 32, 64, 50257) and m.config.bias and m.config.gelu == "tanh"
    assert m.lm_head.weight is m.transformer.wte.weight
    x = tokens()
    with torch.no_grad():
        assert (m(x)[0] - hf(x).logits).abs().max() < 1e-4
    same, info = load_model(f"hf:{path}")
    assert info["source"] == "hf" and torch.equal(same.transformer.h[1].mlp.c_fc.weight,
                                                  m.transformer.h[1].mlp.c_fc.weight)


def test_from_hf_refuses_other_activations(tmp_path):
    GPT2LMHeadModel(GPT2Config(**TINY, n_positions=16, vocab_size=64,
                               activation_function="relu")).save_pretrained(tmp_path)
    with pytest.raises(HFError, match="activation_function 'relu' is not supported"):
        from_hf(tmp_path)


@pytest.mark.parametrize("bias,vocab", [(True, 50257), (False, 50257), (False, 50304)])
def test_to_hf_loads_in_transformers_with_equal_logits(tmp_path, bias, vocab):
    m = gpt(bias=bias, vocab_size=vocab)
    out = to_hf(m, tmp_path / "export", tokenizer=False)
    hf = GPT2LMHeadModel.from_pretrained(out, local_files_only=True).eval()
    assert hf.config.vocab_size == 50257 and hf.config.n_positions == 64  # padding rows past GPT-2's ids dropped
    if not bias:
        assert all((p == 0).all() for n, p in hf.named_parameters() if n.endswith(".bias"))
    x = tokens()
    with torch.no_grad():
        assert (m(x)[0][..., :50257] - hf(x).logits).abs().max() < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temp folder left behind


def test_to_hf_writes_a_gpt2_tokenizer_that_matches_tiktoken(tmp_path, gpt2):
    out = to_hf(gpt(), tmp_path / "export")
    lines = (out / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert lines[:3] == ["#version: 0.2", "Ġ t", "Ġ a"] and len(lines) == 50001  # GPT-2's 50000 merges
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    text = "Hello world, the future of AI is  bright!\n\n\tÜnïcödé 你好 🤖 don't 12345<|endoftext|>"
    assert tok.encode(text) == gpt2.encode(text, allowed_special="all")
    assert tok.decode(gpt2.encode_ordinary(text)) == text and tok.eos_token_id == 50256


def test_to_hf_refuses_a_full_folder_and_replaces_it_whole(tmp_path, monkeypatch):
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(HFError, match="overwrite=true"):
        to_hf(gpt(), out, tokenizer=False)
    assert (out / "keep.txt").read_text() == "mine"
    import gptlab.model.convert
    monkeypatch.setattr(gptlab.model.convert, "write_tokenizer", lambda *a: 1 / 0)  # a failure mid-write
    with pytest.raises(ZeroDivisionError):
        to_hf(gpt(), out, overwrite=True)
    assert sorted(os.listdir(out)) == ["keep.txt"] and sorted(os.listdir(tmp_path)) == ["export"]
    monkeypatch.undo()
    to_hf(gpt(), out, tokenizer=False, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "config.json").exists()
    assert sorted(os.listdir(tmp_path)) == ["export"]


def test_load_model_reads_a_lightning_run_folder_and_checkpoint(tmp_path):
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from gptlab.training.module import GPTModule
    torch.manual_seed(0)
    module = GPTModule(dict(**TINY, block_size=16, vocab_size=50304, bias=False), max_steps=1)
    x = torch.randint(0, 50257, (4, 17))
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, DataLoader(TensorDataset(x[:, :-1], x[:, 1:]), batch_size=2))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    model, info = load_model(tmp_path / "run")
    assert info["source"] == "run" and info["global_step"] == 1 and info["path"] == str(ckpt)
    assert model.config == module.model.config and not model.training
    want = module.model.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items()) and set(model.state_dict()) == set(want)
    assert model.lm_head.weight is model.transformer.wte.weight
    best = gpt(**{**dict(module.model.config.__dict__), "bias": False})  # same shape, other weights
    torch.save({"hyper_parameters": {"model": dict(best.config.__dict__)},
                "state_dict": {f"model._orig_mod.{k}": v for k, v in best.state_dict().items()}},
               ckpt.with_name("best.ckpt"))
    model, info = load_model(tmp_path / "run")  # best.ckpt preferred; torch.compile's _orig_mod. stripped
    assert info["path"].endswith("best.ckpt") and torch.equal(model.transformer.wpe.weight, best.transformer.wpe.weight)


class Payload:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def test_load_model_refuses_a_pickle_payload_without_running_it(tmp_path):
    m, marker, path = gpt(), tmp_path / "marker", tmp_path / "evil.ckpt"
    torch.save({"hyper_parameters": {"model": dict(m.config.__dict__)}, "extra": Payload(marker),
                "state_dict": {f"model.{k}": v for k, v in m.state_dict().items()}}, path)
    with pytest.raises(LoadError, match="refused"):
        load_model(path)
    assert not marker.exists()
    # the payload is live (an unrestricted unpickler would call builtins.exec), read without executing anything
    import pickletools
    import zipfile
    with zipfile.ZipFile(path) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(pkl)]
    assert ("GLOBAL", "__builtin__ exec") in ops and ("REDUCE", None) in ops  # protocol 2 spelling of builtins.exec


def test_missing_hf_model_offline_explains_the_one_time_download(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    # huggingface_hub reads the environment at import: set what it derived from it too
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(HFError) as e:
        load_model("hf:gpt2")
    msg = str(e.value)
    assert "not in the Hugging Face cache" in msg and "`hf download gpt2`" in msg and "hf:<local folder>" in msg
    assert "\n" not in msg and isinstance(e.value, Refused)  # one line; exit 2 from every entry point
    with pytest.raises(HFError, match="valid names: hf:gpt2, hf:gpt2-medium, hf:gpt2-large, hf:gpt2-xl"):
        from_hf("hf:gpt-3")


def test_unknown_spec_and_incompatible_models_are_refused_clearly(tmp_path):
    with pytest.raises(LoadError, match="no such run folder or file; model= takes a run folder.*ckpt.*hf:gpt2"):
        load_model(tmp_path / "nothing-here")
    m = gpt(block_size=32, vocab_size=50304)
    check_compatible(m, vocab_size=50257, block_size=32)
    with pytest.raises(LoadError, match="vocab_size 50304 < the tokenizer's 100277"):
        check_compatible(m, vocab_size=100277)
    with pytest.raises(LoadError, match="block_size\\) 32 < the asked 64"):
        check_compatible(m, block_size=64)


def test_cli_imports_and_exports(hf_dir, tmp_path):
    path, hf = hf_dir
    assert run_entry(HF, ["import", str(path), str(tmp_path / "gpt2.ckpt")]) == 0
    assert run_entry(HF, ["export", str(tmp_path / "gpt2.ckpt"), str(tmp_path / "back"), "tokenizer=false"]) == 0
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "back", local_files_only=True).eval()
    x = tokens(seed=1)
    with torch.no_grad():
        assert (back(x).logits - hf(x).logits).abs().max() < 1e-4
    assert run_entry(HF, ["export", str(tmp_path / "gpt2.ckpt"), str(tmp_path / "back")]) == 2  # exists: refused
