"""chat source: template, assistant-only loss masks, prepare, malformed lines, masked windows, training, val metric.

    .venv/bin/python -m pytest tests/test_chat.py -q
"""
import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import in_process, run_train

from gptlab.data.datamodule import TokenDataModule, TrainWindows
from gptlab.data.pipeline import encode_doc, prepare
from gptlab.data.shards import ShardError, load_manifest, open_mask, open_shard, verify
from gptlab.data.sources import SourceError, chat_segments, render_chat
from gptlab.training.module import GPTModule

EOT = 50256
CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"}]


def conversations(n=30):
    """Regular little dialogues, some with a system prompt, some ending on a user turn."""
    out = []
    for i in range(n):
        msgs = [{"role": "system", "content": "You count."}] if i % 3 == 0 else []
        msgs += [{"role": "user", "content": f"What comes after {i}?"},
                 {"role": "assistant", "content": f"After {i} comes {i + 1}."}]
        if i % 4 == 0:
            msgs += [{"role": "user", "content": "Thanks."}]
        out.append(msgs)
    return out


def expected_targets(enc, msgs):
    """Assistant tokens tokenized independently: content, "\\n\\n", and EOT when the conversation ends on one."""
    ids = []
    for m in msgs:
        if m["role"] == "assistant":
            ids += enc.encode_ordinary(m["content"]) + enc.encode_ordinary("\n\n")
    return ids + ([EOT] if msgs[-1]["role"] == "assistant" else [])


def write_chats(folder, convs, per_file=12):
    folder.mkdir(parents=True)
    for k in range(0, len(convs), per_file):
        lines = [json.dumps({"messages": m}) for m in convs[k:k + per_file]]
        (folder / f"part{k // per_file}.jsonl").write_text("\n".join(lines) + "\n\n")  # a blank line is skipped


def prepare_chat(root, convs, name="chat", shard_tokens=100_000, val_fraction=0.2):
    write_chats(root / f"{name}_src", convs)
    return prepare({"name": name, "source": "chat", "shard_tokens": shard_tokens,
                    "source_args": {"paths": [str(root / f"{name}_src")], "val_fraction": val_fraction, "seed": 0}},
                   root, workers=1)


def test_render_follows_the_template():
    assert render_chat(CONV) == "System: Be brief.\n\nUser: Hi there\n\nAssistant: Hello! How can I help?\n\n"


def test_mask_marks_exactly_the_assistant_tokens(gpt2):
    for msgs in [CONV, CONV + [{"role": "user", "content": "ok"}]]:
        toks, mask = encode_doc(gpt2, chat_segments(msgs))
        assert len(toks) == len(mask) and toks[-1] == EOT
        assert gpt2.decode(list(toks[:-1])) == render_chat(msgs)
        assert list(toks[mask == 1]) == expected_targets(gpt2, msgs)
        assert mask[-1] == (msgs[-1]["role"] == "assistant")  # EOT is a target only after an assistant turn


def test_prepare_writes_verified_masks_with_matching_counts(tmp_path, gpt2):
    convs = conversations()
    manifest = prepare_chat(tmp_path, convs, shard_tokens=100)  # several shards: masks cut alongside
    out = tmp_path / "chat"
    n_targets, n_tokens = 0, 0
    for split, info in manifest["splits"].items():
        assert len(info["shards"]) > 1
        split_targets = 0
        for e in info["shards"]:
            assert e["mask"]["file"] == e["file"].replace(".bin", ".mask.bin") and e["mask"]["tokens"] == e["tokens"]
            m = np.asarray(open_mask(out / e["mask"]["file"]))
            assert len(m) == len(open_shard(out / e["file"])) and set(np.unique(m)) <= {0, 1}
            split_targets += int(m.sum())
        assert split_targets == info["target_tokens"]
        n_targets, n_tokens = n_targets + split_targets, n_tokens + info["tokens"]
    assert n_targets == sum(len(expected_targets(gpt2, m)) for m in convs)
    assert n_tokens == sum(len(encode_doc(gpt2, chat_segments(m))[0]) for m in convs)
    assert manifest["splits"]["val"]["docs"] == 6 and manifest["splits"]["train"]["docs"] == 24
    verify(out)
    mask0 = out / manifest["splits"]["train"]["shards"][0]["mask"]["file"]
    raw = bytearray(mask0.read_bytes())
    raw[-1] ^= 1
    mask0.write_bytes(bytes(raw))
    with pytest.raises(ShardError, match="sha256"):
        verify(out)


@pytest.mark.parametrize("line, why", [
    ('{"messages": [', "not valid JSON"),
    ('{"text": "hi"}', 'no "messages" list'),
    ('[1, 2]', 'no "messages" list'),
    ('{"messages": []}', "empty conversation"),
    ('{"messages": [{"role": "bot", "content": "hi"}]}', "role 'bot'"),
    ('{"messages": [{"content": "hi"}]}', "role None"),
    ('{"messages": [{"role": "user", "content": ["hi"]}]}', "content must be a string"),
    ('{"messages": ["hi"]}', "role 'hi'"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, why):
    src = tmp_path / "src"
    src.mkdir()
    good = json.dumps({"messages": CONV})
    (src / "a.jsonl").write_text(f"{good}\n{good}\n")
    (src / "b.jsonl").write_text(f"{good}\n\n{line}\n{good}\n")  # the bad line is line 3 of b.jsonl
    with pytest.raises(SourceError, match=why) as e:
        prepare({"name": "bad", "source": "chat", "shard_tokens": 1000, "source_args": {"paths": [str(src)]}},
                tmp_path / "data", workers=1)
    assert f"{src / 'b.jsonl'}:3:" in str(e.value)
    assert not (tmp_path / "data" / "bad").exists()  # failed before any tokenizing or writing


@pytest.fixture(scope="module")
def chat_root(tmp_path_factory, gpt2):
    root = tmp_path_factory.mktemp("chatdata")
    prepare_chat(root, conversations(), name="chat_tiny")
    return root


def test_masked_windows_ignore_exactly_the_non_assistant_targets(chat_root):
    d, block = chat_root / "chat_tiny", 16
    dm, plain = (TokenDataModule(str(d), block, 4, val_tokens=100, seed=3, loss_mask=on) for on in (True, False))
    dm.check()
    shard = load_manifest(d)["splits"]["val"]["shards"][0]
    toks, mask = np.asarray(open_shard(d / shard["file"]), np.int64), np.asarray(open_mask(d / shard["mask"]["file"]))
    for i, ((x, y, _), (x0, y0, _)) in enumerate(zip(dm.val_dataloader().dataset, plain.val_dataloader().dataset)):
        s = i * block
        assert torch.equal(x, x0) and torch.equal(y0, torch.from_numpy(toks[s + 1:s + block + 1]))
        assert torch.equal(y, torch.from_numpy(np.where(mask[s + 1:s + block + 1] == 1, toks[s + 1:s + block + 1], -1)))
    train = dm.train_dataloader().dataset
    assert isinstance(train, TrainWindows) and len(train.files) == 1
    tmask = np.asarray(open_mask(train.mask_files[0]))
    for k in range(3):
        (x, y), (x0, y0) = train.batch_at(k), plain.train_dataloader().dataset.batch_at(k)
        assert torch.equal(x, x0)  # the same windows are drawn: determinism and resume are unaffected
        rng = np.random.default_rng([3, 0, k])
        rng.choice(1, size=4, p=train.weights)
        offs = rng.integers(0, train.windows[0], size=4)
        want = np.stack([tmask[o + 1:o + block + 1] for o in offs]) == 1
        assert torch.equal(y != -1, torch.from_numpy(want)) and torch.equal(y[y != -1], y0[y != -1])
    assert (y == -1).any() and (y != -1).any()


def test_loss_mask_on_a_dataset_without_masks_fails(tiny_data):
    with pytest.raises(ShardError, match="without loss masks"):
        TokenDataModule(str(tiny_data / "tiny"), 32, 4, loss_mask=True).check()


def test_validation_step_counts_only_unmasked_targets():
    torch.manual_seed(0)
    m = GPTModule(dict(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=64)).eval()
    x = torch.randint(0, 64, (3, 8))
    y = torch.randint(0, 64, (3, 8))
    y[0, :5] = -1
    y[2, 3:] = -1
    y_none = torch.full((2, 8), -1)  # a batch with no targets at all adds nothing
    with torch.no_grad():
        m.validation_step((x, y), 0)
        m.validation_step((x[:2], y_none), 1)
        nll = F.cross_entropy(m.model(x)[0].flatten(0, 1), y.flatten(), ignore_index=-1, reduction="sum")
    assert m.val_nll.tokens.item() == int((y != -1).sum()) == 24 - 5 - 5
    loss, count = m.val_nll.compute()
    assert int(count) == 14
    torch.testing.assert_close(loss.float(), nll / 14, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_short_chat_run_trains(chat_root, tmp_path):
    run = tmp_path / "run"
    p = run_train(["data=chat", "data.name=chat_tiny", "trainer.max_steps=10", f"hydra.run.dir={run}"],
                  chat_root, tmp_path)
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    val = [float(r["val/loss"]) for r in rows if r["val/loss"]]
    train = [float(r["train/loss"]) for r in rows if r["train/loss"]]
    assert val and all(math.isfinite(v) for v in val) and len(train) == 10, p.stdout[-2000:]
    assert val[-1] < val[0]
    assert "source: chat" in (run / "config.yaml").read_text()  # data=chat won over conftest's data=text
    assert "loss_mask: true" in (run / "config.yaml").read_text()
    # eval of the run alone scores what training scored: assistant tokens only, the run's val tokens and context
    env = {"GPTLAB_DATA": str(chat_root)}
    e = in_process("eval", [f"model={run}"], env)
    assert e.returncode == 0, e.stderr
    line = next(x for x in e.stdout.splitlines() if "summary.json best_val_loss" in x)
    best = json.loads((run / "summary.json").read_text())["best_val_loss"]
    assert float(line.split("this eval ")[1].split(":")[0]) == pytest.approx(best, abs=1e-6)
    e = in_process("eval", [f"model={run}", "loss_mask=false"], env)
    unmasked = float(next(x for x in e.stdout.splitlines() if "| loss |" in x).split("|")[3])
    assert abs(unmasked - best) > 1e-3  # every token scored: another number, as an explicit override asks
