"""muP and depth-muP (model.mup_base_width / mup_base_depth): the standard parametrisation unchanged bit for bit
against a checkpoint made before muP existed, the multipliers by hand, the coordinate checks (flat under muP, growing
without it), the HF export that folds the multipliers, and a muP run through resume, eval, sample and fine-tuning."""
import csv
import json
import math
import sys

import pytest
import torch
import yaml
from helpers import ROOT, run_entry, run_train

from gptlab.config import GPTConfig
from gptlab.errors import Refused
from gptlab.machine import facts, same
from gptlab.model.gpt import GPT
from gptlab.model.load import load_model
from gptlab.model.mup import Multipliers
from gptlab.optim.optimizer import param_groups
from gptlab.training.coord_check import coord_check

FIXTURES = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(FIXTURES))
import sp_reference  # noqa: E402  (the fixture's own training loop: the same code made the record)

REFERENCE = json.loads((FIXTURES / "sp_reference.json").read_text())
# Exact only on a machine whose every fact matches the recording's (gptlab/machine.py: CPU model and family, the
# kernels' instruction set, threads, torch, BLAS, ...); elsewhere within TOL. Why 1e-5: on a 2-core Intel Xeon
# (AVX512, the same torch) step 5's loss read 4.581127643585205 against the recorded 4.581128120422363, 4.8e-7 apart,
# a few fp32 ulps of the summed reductions; 10 steps of AdamW grow that by at most an order of magnitude, while a
# real change to the standard parametrisation (a muP multiplier left on) moves these losses by more than 1e-3.
TOL = 1e-5


def same_machine(threads: int) -> bool:
    return same({**REFERENCE["machine"], "threads": threads}, {**facts(), "threads": threads}) and \
        torch.get_num_threads() == threads


def close(a, b, exact: bool):
    return a == b if exact else a == pytest.approx(b, abs=TOL)


@pytest.fixture
def recorded_threads():
    """The thread count the record was made with: it sets the order of the reductions, so the rounding."""
    before = torch.get_num_threads()
    torch.set_num_threads(REFERENCE["threads"])
    yield
    torch.set_num_threads(before)


def test_standard_parametrisation_reproduces_the_checkpoint_made_before_mup(recorded_threads):
    exact = same_machine(REFERENCE["threads"])
    torch.manual_seed(0)
    model = GPT(GPTConfig(**sp_reference.MODEL, mup_base_width=None, mup_base_depth=None))
    losses = sp_reference.train(model)
    assert all(close(a, b, exact) for a, b in zip(losses, REFERENCE["train_losses"])), (losses, exact)
    assert close(sp_reference.val_loss(model), REFERENCE["val_loss"], exact)
    old, info = load_model(FIXTURES / "sp_reference.ckpt")  # its hyper-parameters have no mup keys: standard
    assert info["config"]["mup_base_width"] is None and old.mult.standard
    assert close(sp_reference.val_loss(old), REFERENCE["val_loss"], exact)
    for (k, a), b in zip(model.state_dict().items(), old.state_dict().values()):
        assert (torch.equal(a, b) if exact else torch.allclose(a, b, atol=TOL)), k


@pytest.mark.slow
def test_a_standard_training_run_reproduces_the_losses_recorded_before_mup(tiny_data, tmp_path):
    rec = REFERENCE["train_run"]
    run = tmp_path / "sp"
    run_train([*rec["args"], f"hydra.run.dir={run}"], tiny_data, tmp_path)
    ran_on = json.loads((run / "summary.json").read_text())["machine"]  # the run's own record of its machine
    exact = same({**REFERENCE["machine"], "threads": 1}, ran_on)  # helpers.TINY trains with trainer.threads=1
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    for key, col in (("train_loss", "train/loss"), ("val_loss", "val/loss")):
        got = {r["step"]: float(r[col]) for r in rows if r.get(col)}
        assert got.keys() == rec[key].keys() and all(close(got[s], rec[key][s], exact) for s in got), (key, got)


def test_multipliers_and_optimizer_groups_by_hand():
    c = GPTConfig(n_layer=8, n_head=4, n_embd=256, block_size=16, vocab_size=96, bias=True, mup_base_width=64,
                  mup_base_depth=2)
    m = Multipliers.of(c)
    assert (m.width, m.depth, m.output, m.branch) == (4.0, 4.0, 0.25, 0.5)
    assert m.hidden_lr == pytest.approx(1 / 8) and m.hidden_std == 0.5 and m.attn_scale(64) == 1 / 64
    model = GPT(c)
    groups = param_groups(model, 1e-2, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    embed, hidden, vectors = ({names[id(p)] for p in g["params"]} for g in groups)
    assert embed == {"transformer.wte.weight", "transformer.wpe.weight"}  # lm_head is the same tensor as wte
    assert hidden == {n for n, p in model.named_parameters() if p.dim() == 2} - embed and len(hidden) == 8 * 4
    assert all(p.dim() == 1 for g in groups[2:] for p in g["params"]) and groups[2]["weight_decay"] == 0.0
    assert groups[1]["lr"] == pytest.approx(1e-2 / 8) and groups[1]["weight_decay"] == pytest.approx(0.8)
    assert groups[0]["lr"] == 1e-2 and groups[0]["weight_decay"] == 0.1  # the configured rate: what is logged
    assert [g["role"] for g in groups] == ["embedding", "hidden", "gain"]  # a tied head has no group of its own
    # the standard parametrisation: every group at the configured rate, in parameter order (as one matrices group
    # and one vectors group were: AdamW's update is per element, so the split changes no number)
    sp = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=96))
    sp_groups = param_groups(sp, 1e-2, 0.1)
    assert [len(g["params"]) for g in sp_groups] == [2, 2 * 4, 2 * (4 + 4) + 2]  # wte wpe; hidden; ln, bias
    assert [g["lr"] for g in sp_groups] == [1e-2] * 3 and [g["weight_decay"] for g in sp_groups] == [0.1, 0.1, 0.0]
    order = [p for g in sp_groups for p in g["params"]]
    assert order == [p for p in sp.parameters() if p.dim() >= 2] + [p for p in sp.parameters() if p.dim() < 2]


def test_mup_init_and_forward_by_hand():
    torch.manual_seed(0)
    c = GPTConfig(n_layer=4, n_head=4, n_embd=512, block_size=16, vocab_size=96, bias=False, mup_base_width=32,
                  mup_base_depth=1)
    model = GPT(c).eval()
    sd = model.state_dict()
    std = lambda k: sd[k].std().item()  # noqa: E731
    assert std("transformer.wte.weight") == pytest.approx(0.02, rel=0.05)  # embeddings: unchanged
    assert std("transformer.h.0.mlp.c_fc.weight") == pytest.approx(0.02 / 4, rel=0.02)  # 0.02 * sqrt(32 / 512)
    assert std("transformer.h.0.attn.c_proj.weight") == pytest.approx(0.02 / math.sqrt(2) / 4, rel=0.02)  # base depth 1
    x = torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the same model written out by hand: branches x 1/2, attention / d_head, logits x 1/16
        h = model.transformer.wte(x) + model.transformer.wpe(torch.arange(16))
        for b in model.transformer.h:
            q, k, v = (t.view(2, 16, 4, 128).transpose(1, 2) for t in b.attn.c_attn(b.ln_1(h)).split(512, dim=2))
            att = (q @ k.transpose(-1, -2) / 128).masked_fill(~torch.ones(16, 16, dtype=torch.bool).tril(), -math.inf)
            y = (att.softmax(-1) @ v).transpose(1, 2).reshape(2, 16, 512)
            h = h + 0.5 * b.attn.c_proj(y)
            h = h + 0.5 * b.mlp(b.ln_2(h))
        logits = model.transformer.ln_f(h) @ model.lm_head.weight.T / 16
        assert (model(x)[0] - logits).abs().max() < 1e-5


def test_width_coordinate_check_is_flat_under_mup_and_grows_under_sp():
    """Widths 64..512, 4 Adam steps at lr 3e-3: under muP every layer's size and change, and the first gradient's
    norm, stay within a factor 8^0.4 = 2.3 over the 8x widths; under SP the blocks' outputs grow faster than the
    width, the logits about in proportion (so one rate cannot suit every width)."""
    mup = coord_check(mup=True, lr=3e-3)["slopes"]
    sp = coord_check(mup=False, lr=3e-3)["slopes"]
    assert all(abs(s) < 0.4 for s in mup.values()), mup
    blocks = [k for k in sp if k.startswith(("attn.", "mlp.", "residual"))]
    assert len(blocks) == 10 and all(sp[k] > 1.0 for k in blocks), sp
    assert sp["logits change"] > 0.6 and sp["grad_norm"] > 0.6, sp
    assert abs(sp["embedding change"]) < 0.2  # the embedding's rate does not depend on width in either


def test_depth_coordinate_check_is_flat_under_depth_mup_and_grows_without():
    """Depths 2..16 at width 64 (muP on): with depth-muP the residual stream and the logits keep their size and
    change; without it the residual stream's change grows about in proportion to the depth."""
    on = coord_check(depths=(2, 4, 8, 16), depth_mup=True, lr=3e-3)["slopes"]
    off = coord_check(depths=(2, 4, 8, 16), depth_mup=False, lr=3e-3)["slopes"]
    for k in ("residual stream", "residual stream change", "logits change", "grad_norm"):
        assert abs(on[k]) < 0.15, (k, on)
    assert off["residual stream change"] > 0.7 and off["grad_norm"] > 0.2, off


@pytest.mark.parametrize("kw", [dict(mup_base_width=16), dict(mup_base_width=8, mup_base_depth=1),
                                dict(mup_base_depth=1, bias=False)])
def test_hf_export_folds_the_multipliers_into_the_weights(tmp_path, kw):
    from test_hf import gpt, tokens
    from transformers import GPT2LMHeadModel

    from gptlab.model.convert import to_hf
    m = gpt(**kw)
    assert not m.mult.standard
    out = to_hf(m, tmp_path / "export", tokenizer=False)
    hf = GPT2LMHeadModel.from_pretrained(out, local_files_only=True).eval()
    x = tokens()
    with torch.no_grad():
        ours, theirs = m(x)[0][..., :50257], hf(x).logits
    assert (ours - theirs).abs().max() < 1e-5 * max(1.0, ours.abs().max().item())
    assert json.loads((out / "gptlab.json").read_text())["config"]["mup_base_width"] == kw.get("mup_base_width")


@pytest.mark.parametrize("override,message", [
    ("model.mup_base_width=0", "model.mup_base_width must be null (off) or a positive integer, got 0"),
    ("model.mup_base_depth=-2", "model.mup_base_depth must be null (off) or a positive integer, got -2"),
    ("model.mup_base_depth=1.5", "model.mup_base_depth must be an integer, got '1.5'")])
def test_bad_mup_settings_are_refused(override, message):
    from helpers import composed, validated
    with pytest.raises(Refused, match=message.replace("(", r"\(").replace(")", r"\)")):
        validated(composed(override))


MUP = ["model.mup_base_width=16", "model.mup_base_depth=1", "trainer.max_steps=10"]


@pytest.mark.slow
def test_a_mup_run_through_resume_eval_sample_and_finetuning(tiny_data, tmp_path, capsys):
    from gptlab.eval import ENTRY as EVAL
    from gptlab.sample import ENTRY as SAMPLE
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run_train([*MUP, f"hydra.run.dir={whole}"], tiny_data, tmp_path)
    run_train([*MUP, "trainer.stop_after=5", f"hydra.run.dir={cut}"], tiny_data, tmp_path)
    run_train([f"resume={cut}"], tiny_data, tmp_path, extra=False)  # alone: the run's own config, muP included
    final = [json.loads((r / "summary.json").read_text())["final_val_loss"] for r in (whole, cut)]
    assert final[0] == pytest.approx(final[1], abs=1e-6)
    # muP is on: the standard run of the same config ended elsewhere (recorded in the fixture)
    assert REFERENCE["train_run"]["args"] == ["trainer.max_steps=10"]
    assert abs(REFERENCE["train_run"]["val_loss"]["9"] - final[0]) > 1e-3
    model, info = load_model(cut)
    assert info["config"]["mup_base_width"] == 16 and model.mult.output == 0.5 and model.mult.branch == 1 / math.sqrt(2)
    capsys.readouterr()
    assert run_entry(EVAL, [f"model={cut}", f"paths.data_dir={tiny_data}"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "this eval" in x)
    assert abs(float(line.split("difference ")[1].split()[0])) < 1e-5, line
    assert run_entry(SAMPLE, [f"model={cut}", "max_new_tokens=4", "seed=0"]) == 0
    ft = tmp_path / "ft"
    p = run_train([f"init={cut}", "model.mup_base_width=null", "trainer.max_steps=2", f"hydra.run.dir={ft}"],
                  tiny_data, tmp_path)
    assert "'mup_base_width': 16" in p.stdout  # the weights' parametrisation wins over the command line
    assert yaml.safe_load((ft / "config.yaml").read_text())["model"]["mup_base_width"] == 16


def width_study(shift: dict, seeds=(1, 2, 3), grid=(1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)):
    """Runs of two parametrisations x 3 widths x the grid: loss = 5 + 0.1 (log2 lr - log2 best)^2 + seed noise, each
    width's best rate set by `shift` {(param, width): best}."""
    from gptlab.analysis.arms import compare_arms
    runs, i = [], 0
    for (base, width), best in shift.items():
        for lr in grid:
            for seed in seeds:
                loss = 5 + 0.1 * (math.log2(lr) - math.log2(best)) ** 2 + 0.01 * seed
                cfg = {"seed": seed, "optim": {"lr": lr}, "model": {"n_embd": width, "mup_base_width": base}}
                runs.append({"name": str(i), "dir": f"runs/{i}", "kind": "measured", "config": cfg, "seed": seed,
                             "lr": lr, "overrides": [f"model.mup_base_width={base}", f"model.n_embd={width}",
                                                     f"optim.lr={lr}", f"seed={seed}"],
                             "curve": [(0, 10.0), (100, loss)], "final_val_loss": loss,
                             "final_val_loss_a": loss, "final_val_loss_b": loss + 0.002 * seed * (lr == 4e-3)})
                i += 1
    return compare_arms(runs)["arms"]


def test_transfer_verdicts_steps_and_costs_by_hand():
    from gptlab.analysis.transfer import lr_transfer, transfer_section
    shift = {(None, 32): 8e-3, (None, 64): 4e-3, (None, 256): 1e-3,  # SP: the best rate falls with width
             (32, 32): 4e-3, (32, 64): 4e-3, (32, 256): 8e-3}  # muP: it stays (one step at the widest)
    res = lr_transfer(width_study(shift))
    sp, mup = res["families"]
    assert (sp["label"], mup["label"]) == ("standard (SP)", "muP, base width 32") and res["tests"] == 4
    assert [r["chosen"] for r in sp["rows"]] == [8e-3, 4e-3, 1e-3] and [r["steps"] for r in sp["rows"]] == [0, -1, -3]
    assert sp["transfers"] == "no" and mup["transfers"] == "yes" and [r["steps"] for r in mup["rows"]] == [0, 0, 1]
    # the SP 256-wide model at the proxy's 8e-3: 0.1 * 3^2 nats worse, the same for every seed (an exact difference)
    cost = sp["rows"][2]["cost"]
    assert cost.diff == pytest.approx(0.9) and cost.n_a == 3 and cost.test == "paired t"
    # muP's widest at the proxy's 4e-3 (half b adds 0.002 x seed there): 0.1 + 0.004 on average, varying by seed
    cost = mup["rows"][2]["cost"]
    assert cost.diff == pytest.approx(0.1 + 0.004) and cost.low < cost.diff < cost.high
    assert mup["rows"][2]["seed_best"] == {1: 8e-3, 2: 8e-3, 3: 8e-3}
    assert sp["seed_steps"] == {1: -3, 2: -3, 3: -3} and mup["seed_steps"] == {1: 1, 2: 1, 3: 1}
    # the whole curve: at 1e-3 the SP widest sits at its best, the proxy 3 steps off (0.9 nats); muP's at 4e-3 is 0.1
    gaps = {g["lr"]: g["gap"].diff for g in sp["gaps"]}
    assert gaps[1e-3] == pytest.approx(-0.9) and gaps[8e-3] == pytest.approx(0.9)
    assert {g["lr"]: g["gap"].diff for g in mup["gaps"]}[4e-3] == pytest.approx(0.1)
    text = transfer_section(res)
    assert "**standard (SP): does not transfer.** The widest model's (256) best rate 0.001 lies 3 grid steps or " \
           "more from the 32-wide proxy's 0.008" in text and "**muP, base width 32: transfers.**" in text


def test_a_best_rate_on_the_grid_edge_leaves_transfer_undetermined():
    from gptlab.analysis.transfer import lr_transfer
    res = lr_transfer(width_study({(32, 32): 1.6e-2, (32, 128): 1.6e-2}))
    assert res["families"][0]["transfers"] == "undetermined" and res["families"][0]["rows"][1]["steps"] == 0
