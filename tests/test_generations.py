"""Generation quality, measured: each figure against a hand computation (empty text and text shorter than n
included), samples reproducible under a seed and the same drawn alone or in a batch, the entry point end to end."""
import json
import math

import pytest
import torch
from helpers import run_entry

from gptlab.evaluation.samples import batches, generate, prompt_figures, row_seed
from gptlab.evaluation.textstats import distinct_n, rep_n, self_bleu
from gptlab.model.gpt import GPT, GPTConfig


def test_distinct_n_by_hand():
    assert distinct_n(["the cat the cat"], 1) == 2 / 4  # {the, cat} of 4 words
    assert distinct_n(["the cat the cat"], 2) == 2 / 3  # (the cat), (cat the), (the cat)
    assert distinct_n(["a b", "a c"], 1) == 3 / 4  # pooled over a prompt's samples
    assert distinct_n(["a b", "a b"], 2) == 1 / 2
    assert distinct_n([""], 1) is None and distinct_n(["a b"], 3) is None  # no n-gram: undefined, not 0
    assert distinct_n(["", "a b c"], 3) == 1.0


def test_rep_4_by_hand():
    assert rep_n("a b c d a b c d", 4) == 1 - 4 / 5  # 5 four-grams, (a b c d) twice: 1 repeat
    assert rep_n("a a a a a a", 4) == 1 - 1 / 3
    assert rep_n("a b c d e", 4) == 0.0
    assert rep_n("a b c", 4) is None and rep_n("", 4) is None


def test_self_bleu_by_hand():
    # "a b c d e" against "a b c d f": precisions 4/5, 3/4, 2/3, 1/2, same length (no brevity penalty)
    expected = (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert self_bleu(["a b c d e", "a b c d f"]) == pytest.approx(expected)
    assert self_bleu(["a b c d", "a b c d"]) == pytest.approx(1.0)
    assert self_bleu(["a b c d"]) is None and self_bleu(["a b c d", ""]) is None  # fewer than two texts


def test_prompt_figures_length_cap_and_perplexity_by_hand():
    f = prompt_figures(["a b c d a b c d", ""], [[1] * 8, []], cap=8, nll=[(8 * math.log(4), 8), (0.0, 0)])
    assert f["length"] == 4 and f["at cap"] == 0.5 and f["ref ppl"] == pytest.approx(4.0)
    assert f["rep-4"] == pytest.approx(0.2) and f["distinct-1"] == 0.5 and f["self-BLEU"] is None


def tiny_model():
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=50304, bias=False)).eval()


PROMPTS = [{"ids": [464, 2003, 286, 9552, 318]}, {"ids": [7454, 2402]}, {"ids": [464, 3616, 286, 1204, 318]},
           {"ids": []}]


def test_samples_are_reproducible_and_the_same_alone_or_batched():
    model = tiny_model()
    args = dict(n_samples=3, max_new_tokens=12, temperature=1.0, top_k=50, top_p=0.95, seed=7)
    batched = generate(model, PROMPTS, batch_size=16, **args)
    assert batched == generate(model, PROMPTS, batch_size=16, **args)  # same seed, same samples
    alone = generate(model, PROMPTS, batch_size=1, **args)
    assert alone == batched
    assert generate(model, PROMPTS, batch_size=16, **{**args, "seed": 8}) != batched
    assert len({tuple(s) for s in batched[0]}) == 3  # a prompt's samples are drawn apart
    # the batches group prompts of one length: the two 5-token prompts' 6 samples run together
    assert [len(b) for b in batches(PROMPTS, 3, 16)] == [6, 3, 3]
    assert row_seed(7, 0, 1) != row_seed(7, 1, 0)


def test_a_sample_ends_at_endoftext_and_greedy_matches_generate():
    model = tiny_model()
    out = generate(model, PROMPTS[:1], 1, 10, 0.0, None, None, seed=0)[0][0]
    ref = model.generate(torch.tensor([PROMPTS[0]["ids"]]), 10, temperature=0.0)[0, 5:].tolist()
    assert out == ref[:ref.index(50256)] if 50256 in ref else out == ref
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=50304, bias=True)).eval()
    with torch.no_grad():  # the readout's input is all ones and <|endoftext|>'s row too: it is the likeliest token
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.fill_(1.0)
        model.transformer.wte.weight[50256] = 1.0
    assert generate(model, PROMPTS[:1], 2, 10, 0.0, None, None, seed=0)[0] == [[], []]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    from gptlab.model.checkpoint import save_checkpoint
    root = tmp_path_factory.mktemp("models")
    a = save_checkpoint(tiny_model(), root / "a.ckpt")
    torch.manual_seed(1)
    other = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=50304))
    b = save_checkpoint(other, root / "b.ckpt")
    return a, b


def test_the_entry_point_writes_figures_samples_and_a_report_section(two_models, tmp_path, capsys):
    from gptlab.generations import ENTRY
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The future of AI is\n\nOnce upon a time,\nROMEO:\n")
    out = tmp_path / "gen"
    a, b = two_models
    assert run_entry(ENTRY, [f"models=[{a},{b}]", f"prompts=file:{prompts}", "n_samples=2", "max_new_tokens=8",
                             f"out={out}", "device=cpu"]) == 0
    res = json.loads((out / "generations.json").read_text())
    assert res["models"] == [str(a), str(b)] and res["settings"]["ref"] == str(b)
    assert [p["text"] for p in res["prompts"]] == ["The future of AI is", "Once upon a time,", "ROMEO:"]
    assert len(res["per_prompt"][str(a)]) == 3 and set(res["figures"][str(a)]) >= {"distinct-2", "rep-4", "ref ppl"}
    fig = res["figures"][str(a)]["length"]
    lengths = [r["length"] for r in res["per_prompt"][str(a)]]
    assert fig["n"] == 3 and fig["mean"] == pytest.approx(sum(lengths) / 3)
    md = (out / "generations.md").read_text()
    assert "| prompt | " + str(a) + " | " + str(b) + " |" in md and (out / "generations.png").stat().st_size > 0
    # the comparison report gains a Generation section, its PNG and the figures in report.json
    from test_report import M30, fake_run

    from gptlab.report import ENTRY as REPORT
    sweep = fake_run(tmp_path / "sweep" / "0", M30, "openwebtext", 4096, 29_938_560, 32_768, [10.9, 4.1, 3.6])
    rep = tmp_path / "rep"
    assert run_entry(REPORT, [str(sweep), f"out={rep}", f"generations={out}"]) == 0
    text = (rep / "report.md").read_text()
    assert "## Generation" in text and f"| {a} | 3 |" in text and (rep / "generations.png").is_file()
    assert json.loads((rep / "report.json").read_text())["generation"]["figures"] == res["figures"]
    assert run_entry(REPORT, [str(sweep), f"out={rep}", f"generations={tmp_path / 'none'}"]) == 2
    assert "no generations.json there" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["models=[]"], "models= is required"),
    (["models=hf:gpt2", "prompts=builtins"], "prompts='builtins': use builtin, file:<path>"),
    (["models=hf:gpt2", "prompts=file:/nonexistent.txt"], "no such file"),
    (["models=hf:gpt2", "n_samples=0"], "n_samples must be an integer >= 1"),
    (["models=hf:gpt2", "temperature=0"], "temperature must be > 0")])
def test_bad_options_are_refused_before_any_model_loads(args, message, capsys):
    from gptlab.generations import ENTRY
    assert run_entry(ENTRY, args) == 2
    assert message in capsys.readouterr().err
