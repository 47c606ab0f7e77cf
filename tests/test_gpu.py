"""What only a CUDA GPU can show: the GPU paths agree with the CPU's. Marked gpu: skipped, with the reason, elsewhere.

    .venv/bin/python -m pytest tests/test_gpu.py -q           # on a machine with CUDA (benchmarks/gpu.sh runs it)
"""
import pytest
import torch

from gptlab import GPT, GPTConfig
from gptlab.model.loss import chunked_cross_entropy

pytestmark = pytest.mark.gpu


def test_the_chunked_loss_on_cuda_matches_the_cpu():
    torch.manual_seed(0)
    h, w = torch.randn(300, 64, dtype=torch.float64), torch.randn(1000, 64, dtype=torch.float64)
    t = torch.randint(0, 1000, (300,))
    t[::7] = -1
    cpu = chunked_cross_entropy(h, w, t, chunk=64)
    gpu = chunked_cross_entropy(h.cuda(), w.cuda(), t.cuda(), chunk=64)
    ref = torch.nn.functional.cross_entropy(h @ w.T, t, ignore_index=-1)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(cpu, ref, rtol=1e-10, atol=1e-10)


def test_a_bf16_training_step_on_cuda_clips_fused_adamw():
    """The bug a lent GPU found once: Lightning refused to clip fused AdamW under bf16-mixed at the first step."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from gptlab.training.module import GPTModule
    torch.manual_seed(0)
    x = torch.randint(0, 500, (4, 16))
    m = GPTModule(dict(n_layer=1, n_head=2, n_embd=32, block_size=16, vocab_size=512), max_steps=2)
    t = L.Trainer(accelerator="cuda", devices=1, precision="bf16-mixed", max_steps=2, gradient_clip_val=1.0,
                  logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    t.fit(m, DataLoader(TensorDataset(x, torch.roll(x, -1, 1)), batch_size=4))
    assert t.global_step == 2 and t.optimizers[0].defaults["fused"] is True


def test_kv_cache_generation_on_cuda_matches_the_uncached_loop():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=64, vocab_size=512)).cuda().eval()
    idx = torch.randint(0, 512, (2, 5), device="cuda")
    cached = model.generate(idx, 20, temperature=0, use_cache=True)
    plain = model.generate(idx, 20, temperature=0, use_cache=False)
    assert torch.equal(cached, plain)
