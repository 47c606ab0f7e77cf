"""optim=muon: Muon (torch.optim.Muon) on the hidden matrices, AdamW on the rest, as one optimizer that Lightning,
the schedule, clipping, bf16, accumulation, checkpoints and resume treat like any other.

    .venv/bin/python -m pytest tests/test_muon.py -q
"""
import io
import json

import pytest
import torch
from helpers import composed, run_train, validated

from gptlab import GPT, GPTConfig
from gptlab.config.presets import preset
from gptlab.optim.muon import MuonAdamW
from gptlab.optim.optimizer import build_optimizer, lr_scheduler, param_groups
from gptlab.optim.schedule import Schedule

CFG = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=96, bias=True)
ARGS = dict(lr=0.02, weight_decay=0.01, momentum=0.95, nesterov=True, ns_steps=5, adjust_lr_fn="original",
            embedding_lr=0.008, head_lr=0.008, gain_lr=0.04, betas=(0.8, 0.95), eps=1e-10, adam_weight_decay=0.0)


def loss_of(model, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 96, (4, 17), generator=g)
    return model(x[:, :-1], x[:, 1:], return_logits=False)[1]


def step(model, opt, seed):
    opt.zero_grad(set_to_none=True)
    loss_of(model, seed).backward()
    opt.step()


def test_hidden_matrices_take_muon_and_the_rest_adamw_each_at_its_rate():
    """One MuonAdamW step equals torch.optim.Muon on the hidden matrices plus torch.optim.AdamW on the embedding
    (its own rate) and the gains (theirs), stepped apart on a copy of the same model: an independent computation."""
    torch.manual_seed(0)
    a, b = GPT(CFG), GPT(CFG)
    b.load_state_dict(a.state_dict())
    opt = MuonAdamW(param_groups(a, 0.02, 0.01), **ARGS)
    assert [g["role"] for g in opt.param_groups] == ["hidden", "embedding", "gain"]
    roles = b.param_roles()
    muon = torch.optim.Muon([p for _, p in roles["hidden"]], lr=0.02, weight_decay=0.01, momentum=0.95,
                            nesterov=True, ns_steps=5, adjust_lr_fn="original")
    adamw = torch.optim.AdamW([{"params": [p for _, p in roles["embedding"]], "lr": 0.008, "weight_decay": 0.0},
                               {"params": [p for _, p in roles["gain"]], "lr": 0.04, "weight_decay": 0.0}],
                              betas=(0.8, 0.95), eps=1e-10)
    for seed in (1, 2):
        step(a, opt, seed)
        muon.zero_grad(set_to_none=True)
        adamw.zero_grad(set_to_none=True)
        loss_of(b, seed).backward()
        muon.step()
        adamw.step()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    assert all(p.dim() == 2 for _, p in roles["hidden"]) and len(roles["hidden"]) == 2 * 4


def test_a_saved_and_reloaded_state_continues_exactly():
    """A checkpoint's optimizer state (Muon's momentum buffers, AdamW's moments and step, every group's rate) loads
    into a fresh MuonAdamW and the next steps equal the uninterrupted ones, bit for bit."""
    torch.manual_seed(0)
    a = GPT(CFG)
    b = GPT(CFG)
    b.load_state_dict(a.state_dict())
    spec = {**preset("optim", "muon"), "lr": 0.02}
    opt_a = build_optimizer(spec, a)
    sched_a = lr_scheduler(opt_a, Schedule(warmup_steps=2), 10)
    for seed in range(3):
        step(a, opt_a, seed)
        sched_a.step()
    buf = io.BytesIO()  # through a file, as a checkpoint goes, read back as training reads it
    torch.save({"opt": opt_a.state_dict(), "sched": sched_a.state_dict(), "model": a.state_dict()}, buf)
    saved = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    b.load_state_dict(saved["model"])
    opt_b = build_optimizer(spec, b)
    sched_b = lr_scheduler(opt_b, Schedule(warmup_steps=2), 10)
    opt_b.load_state_dict(saved["opt"])
    sched_b.load_state_dict(saved["sched"])
    assert opt_b.muon.state is opt_b.state and opt_b.adamw.param_groups[0] is opt_b.param_groups[1]
    for seed in range(3, 6):
        step(a, opt_a, seed)
        sched_a.step()
        step(b, opt_b, seed)
        sched_b.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert [g["lr"] for g in opt_a.param_groups] == [g["lr"] for g in opt_b.param_groups]


def test_the_schedule_scales_every_groups_own_rate():
    torch.manual_seed(0)
    model = GPT(CFG)
    opt = build_optimizer({**preset("optim", "muon"), "lr": 0.02}, model)
    lr_scheduler(opt, Schedule(warmup_steps=4), 100)  # sets every group to its rate x the factor at step 0
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.02 / 4, 0.008 / 4, 0.04 / 4])


def test_muon_with_mup_is_refused_in_one_line():
    from gptlab.config import ConfigError
    from gptlab.training.components import check_orthogonal
    run = validated(composed("optim=muon", "model.mup_base_width=32"))
    with pytest.raises(ConfigError, match=r"^optim=muon with model.mup_base_width: Muon's orthogonalised update"):
        check_orthogonal(run)
    check_orthogonal(validated(composed("optim=adamw", "model.mup_base_width=32")))  # AdamW takes muP's rates


def test_the_default_jobs_muon_takes_its_own_rate_not_adamws():
    """The default recipe tuned AdamW's rate (recipe.lr.adamw); Muon keeps its own unless the recipe names one."""
    assert validated(composed("optim=muon")).optim["lr"] == 0.02
    assert validated(composed()).optim["lr"] == 0.002
    assert validated(composed("optim=muon", "recipe.lr.muon=0.03")).optim["lr"] == 0.03
    assert validated(composed("optim=muon", "optim.lr=0.05")).optim["lr"] == 0.05


@pytest.mark.slow
def test_a_muon_run_sliced_and_resumed_alone_equals_the_uninterrupted_one(tiny_data, tmp_path):
    """Muon through Lightning, with accumulation 2 and clipping: stop_after, then resume=<run> alone gives the same
    metrics.csv rows and summary.json as one uninterrupted run."""
    from test_runfolder import rows, summary
    common = ["optim=muon", "trainer.max_steps=12", "trainer.eval_interval=5", "data.global_batch=8"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    run_train([*common, f"hydra.run.dir={ref}"], tiny_data, tmp_path)
    run_train([*common, "trainer.stop_after=7", f"hydra.run.dir={cut}"], tiny_data, tmp_path)
    assert json.loads((cut / "summary.json").read_text())["finished"] is False
    run_train([f"resume={cut}"], tiny_data, tmp_path, extra=False)
    assert rows(cut) == rows(ref) and summary(cut) == summary(ref)
    s = summary(ref)
    assert s["finished"] and s["final_val_loss"] < s["val_before_loss"] - 1.0  # it learned
