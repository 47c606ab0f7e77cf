"""FLOP counting, peak tables, the hot path's host syncs, and `python -m gptlab.bench` on a tiny model (seconds)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gptlab.config.schema import GPTConfig
from gptlab.model.gpt import GPT

ROOT = Path(__file__).resolve().parents[1]
SMALL = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50304, bias=False)


def test_flops_per_token_matches_hand_count():
    # Weights (no biases), L=2, C=32, T=16, V=50304:
    #   lm_head (tied with wte)          50304 x 32           = 1,609,728
    #   per block: c_attn 32 x 96        = 3,072
    #              attn.c_proj 32 x 32   = 1,024
    #              mlp.c_fc 32 x 128     = 4,096
    #              mlp.c_proj 128 x 32   = 4,096   -> 12,288 x 2 blocks = 24,576
    #   LayerNorm gains: 2 x 32 per block + 32 (ln_f)                    =    160
    #   N (position embeddings excluded)  = 1,609,728 + 24,576 + 160      = 1,634,464
    # Training FLOPs per token: 6N (2 forward + 4 backward per weight)   = 9,806,784
    #   + attention 12 x L x C x T = 12 x 2 x 32 x 16 (QK^T and AV, 2 x 2TC forward, 2x that backward) = 12,288
    #                                                                    = 9,819,072
    model = GPT(SMALL)
    assert model.num_params() == 1_634_464
    assert model.flops_per_token(16) == 9_819_072
    assert model.flops_per_token() == 9_819_072  # seq_len defaults to block_size
    assert model.flops_per_token(8) == 6 * 1_634_464 + 12 * 2 * 32 * 8


def test_flops_per_token_matches_counted_matmuls():
    """torch's FlopCounterMode over one training step counts matmuls only: the hand count without the LayerNorm
    gains (6 x 160 per token), attention included (math SDPA is plain matmuls)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    torch.manual_seed(0)
    model = GPT(SMALL)
    x, y = torch.randint(0, 50257, (2, 16)), torch.randint(0, 50257, (2, 16))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _, loss = model(x, y)  # full logits: every matmul is an aten op the counter knows
        loss.backward()
    per_token = counter.get_total_flops() / x.numel()
    assert per_token == 9_819_072 - 6 * 160 == 9_818_112


def test_dense_bf16_peaks(monkeypatch):
    from gptlab.training.hardware import gpu_bf16_peak, peak_flops
    assert gpu_bf16_peak("NVIDIA H100 80GB HBM3") == 989e12  # SXM
    assert gpu_bf16_peak("NVIDIA H200") == 989e12
    assert gpu_bf16_peak("NVIDIA H100 PCIe") == 756e12
    assert gpu_bf16_peak("NVIDIA H200 NVL") == 835e12
    assert gpu_bf16_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_bf16_peak("NVIDIA L40S") == 362e12 and gpu_bf16_peak("NVIDIA L4") == 121e12
    assert gpu_bf16_peak("Some Future GPU") is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert peak_flops(torch.device("cuda"), "bf16-mixed") == 989e12
    assert peak_flops(torch.device("cpu"), "32-true") > 0


def test_jemalloc_setting(monkeypatch, tmp_path):
    from gptlab.training.hardware import allocator, jemalloc
    monkeypatch.setenv("GPTLAB_JEMALLOC", "0")
    assert jemalloc() is None
    monkeypatch.setenv("GPTLAB_JEMALLOC", str(tmp_path / "missing.so"))
    assert jemalloc() is None  # absent: nothing is preloaded, nothing fails
    (tmp_path / "lib.so").write_bytes(b"")
    monkeypatch.setenv("GPTLAB_JEMALLOC", str(tmp_path / "lib.so"))
    assert jemalloc() == str(tmp_path / "lib.so")
    assert allocator() in ("jemalloc", "default")


def test_reexec_preloads_jemalloc_once_keeping_a_users_malloc_conf(monkeypatch, tmp_path):
    from gptlab.training import hardware as perf
    calls = []
    monkeypatch.setattr(perf, "jemalloc", lambda: "/lib/libjemalloc.so.2")
    monkeypatch.setattr(perf, "allocator", lambda: "default")
    monkeypatch.setattr(perf.os, "execve", lambda exe, argv, env: calls.append(env))
    monkeypatch.delenv("_GPTLAB_REEXEC", raising=False)
    monkeypatch.delenv("MALLOC_CONF", raising=False)
    monkeypatch.setenv("LD_PRELOAD", "/other.so")
    perf.reexec_with_jemalloc()
    assert calls[-1]["LD_PRELOAD"] == "/lib/libjemalloc.so.2:/other.so"
    assert calls[-1]["MALLOC_CONF"] == perf.JEMALLOC_CONF and calls[-1]["_GPTLAB_REEXEC"] == "1"
    monkeypatch.setenv("MALLOC_CONF", "narenas:1")
    perf.reexec_with_jemalloc()
    assert calls[-1]["MALLOC_CONF"] == "narenas:1"
    monkeypatch.setenv("_GPTLAB_REEXEC", "1")  # the re-executed process does not go round again
    perf.reexec_with_jemalloc()
    assert len(calls) == 2


def test_training_step_has_no_host_sync_between_log_rows(tmp_path, monkeypatch):
    """Between logging intervals, nothing in a Lightning training step reads a tensor back to the host
    (.item(), float(), int(), bool(), .tolist()): on a GPU each would wait for the queue to drain. AdamW's step
    counters are exempt: without the fused kernel they stay on the CPU whatever the device, so reading them syncs
    nothing."""
    import lightning as L

    from gptlab.data.datamodule import TokenDataModule
    from gptlab.speed.timing import synthetic_dataset
    from gptlab.training.callbacks import Progress, Throughput
    from gptlab.training.module import GPTModule

    data = synthetic_dataset(tmp_path, 20_000, 2_000, 0)
    module = GPTModule(dict(n_layer=1, n_head=2, n_embd=32, block_size=32), max_steps=100, tokens_per_step=64)
    reads, counting, host_side = [], [False], set()
    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        orig = getattr(torch.Tensor, name)

        def spy(self, *a, _orig=orig, _name=name, **k):
            if counting[0] and id(self) not in host_side:
                reads.append(_name)
            return _orig(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, spy)

    class Window(L.Callback):  # count from the end of step 2 to the end of step 7: five whole steps
        def on_train_batch_end(self, trainer, *args):
            host_side.update(id(state["step"]) for state in trainer.optimizers[0].state.values())
            counting[0] = 2 <= trainer.global_step < 7

    trainer = L.Trainer(accelerator="cpu", max_steps=8, gradient_clip_val=1.0, logger=False,
                        callbacks=[Throughput(64, module.model.flops_per_token()), Progress(), Window()],
                        log_every_n_steps=1000, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=TokenDataModule(str(data), 32, 2, 1024, seed=0))
    assert trainer.global_step == 8
    assert reads == []


def bench(tmp_path, *args, timeout=300):
    env = {**os.environ, "GPTLAB_RUNS": str(tmp_path / "runs"), "WANDB_SILENT": "true"}
    return subprocess.run([sys.executable, "-m", "gptlab.bench", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_bench_writes_table_and_json(tmp_path):
    from helpers import in_process
    out = tmp_path / "bench.json"
    p = in_process("bench", ["model=tiny", "model.n_layer=1", "model.n_embd=32", "model.n_head=2",
                             "model.block_size=32", "synthetic=true", "warmup=1", "steps=1", "rounds=2",
                             "eval_batches=1",
                             "generate.new_tokens=4", "generate.repeats=1", "trainer.threads=1",
                             "trainer.peak_flops=1e11", f"out={out}"],
                   {"GPTLAB_RUNS": str(tmp_path / "runs"), "WANDB_SILENT": "true"})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    r = json.loads(out.read_text())
    assert r["model"] == "tiny" and r["micro_batch"] == 4  # data.batch_size=auto: the tiny preset's CPU default
    assert r["block_size"] == 32 and r["tokens_per_step"] == 128 and r["device"] == "cpu"
    assert r["precision"] == "32-true" and r["compile"] is False  # compile=auto is off on a CPU
    assert r["flops_per_token"] == GPT(GPTConfig(1, 2, 32, 32, bias=False)).flops_per_token(32)
    assert r["peak_flops"] == 1e11 and r["peak_flops_source"] == "trainer.peak_flops"
    assert list(r["train"]) == ["lightning", "bare", "nanogpt"]
    for t in r["train"].values():
        assert len(t["rounds_tokens_per_s"]) == 2 and t["tokens_per_s"] > 0 and t["tokens_per_s_best"] > 0
        assert t["mfu"] == pytest.approx(t["tokens_per_s"] * r["flops_per_token"] / 1e11)
        assert t["achieved_flops"] == pytest.approx(t["tokens_per_s"] * r["flops_per_token"])
        assert 0 <= t["loader_share"] < 1 and t["step_s"] > 0 and t["cpu_s_per_step"] > 0
    for key in ("lightning_vs_bare", "lightning_vs_nanogpt", "bare_vs_nanogpt"):
        assert set(r[key]) == {"median", "best", "of_medians", "rounds", "by_cpu_time"}
        assert len(r[key]["rounds"]) == len(r[key]["by_cpu_time"]["rounds"]) == 2
    e = r["eval"]  # the same val tokens through the validation path and through gptlab.eval's perplexity
    assert e["validation_tokens_per_s"] > 0 and e["eval_tokens_per_s"] > 0 and len(e["rounds"]["eval"]) == 3
    assert e["eval_vs_validation"] == pytest.approx(e["eval_tokens_per_s"] / e["validation_tokens_per_s"])
    g = r["generate"]
    assert g["new_tokens"] == 4
    assert g["kv_cache_speedup"] == pytest.approx(g["cached_tokens_per_s"] / g["uncached_tokens_per_s"])
    assert r["projection"]["tokens"] == 20_000 * 64 * 512
    assert r["projection"]["hours"] == pytest.approx(655_360_000 / r["train"]["lightning"]["tokens_per_s"] / 3600)
    assert r["max_rss_gb"] > 0 and len(r["load_avg"]["end"]) == 3
    assert r["data"] == "synthetic" and r["config"]["model"]["n_layer"] == 1
    from gptlab.training.hardware import jemalloc
    assert r["allocator"] == ("jemalloc" if jemalloc() else "default")
    assert "| lightning |" in p.stdout and "lightning / bare tokens/s" in p.stdout and "speedup" in p.stdout


@pytest.mark.parametrize("arg, key", [("measure=[lightning,fast]", "measure must be"), ("steps=0", "steps must be"),
                                      ("trainer.devices=2", "trainer.devices=2"),
                                      ("trainer.precision=16-mixed", "trainer.precision=")])
def test_bench_bad_config_fails_fast_naming_the_key(tmp_path, arg, key):
    p = bench(tmp_path, arg, timeout=60)
    assert p.returncode == 2 and "error: " in p.stderr and key in p.stderr, p.stderr[-2000:]
