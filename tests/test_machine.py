"""Machine facts (gptlab/machine.py): what a run's numbers depend on, recorded by every run, compared on a resume
and an eval, and the condition for a bit-for-bit test.

    .venv/bin/python -m pytest tests/test_machine.py -q
"""
import json
import logging

import pytest
import torch

from gptlab.machine import COMPARED, differences, facts, note, same


def test_facts_name_the_cpu_threads_libraries_and_flags_in_plain_types():
    f = facts()
    assert set(COMPARED) <= set(f) and {"python", "cores", "cpu_vendor"} <= set(f)
    assert json.loads(json.dumps(f)) == f  # plain: JSON, summary.json and weights_only loading take it
    assert f["threads"] == torch.get_num_threads() and f["torch"] == torch.__version__
    assert f["isa"] == torch.backends.cpu.get_cpu_capability()
    with open("/proc/cpuinfo") as cpuinfo:
        assert f["cpu"] in cpuinfo.read()
    assert f["gpu"] is None if not torch.cuda.is_available() else f["gpu"] == torch.cuda.get_device_name(0)


def test_a_difference_is_named_and_a_bit_for_bit_comparison_needs_every_fact():
    now = facts()
    other = {**now, "threads": now["threads"] + 1, "cpu": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"}
    assert differences(other, now) == [f"cpu {other['cpu']} -> {now['cpu']}",
                                       f"threads {other['threads']} -> {now['threads']}"]
    assert same(now, now) and not same(other, now)
    assert not same({k: v for k, v in now.items() if k != "blas"}, now)  # a record lacking a fact proves nothing
    line = note(other, "the machine this run started on", now)
    assert line.startswith("this machine differs from the machine this run started on (cpu ") and "\n" not in line
    assert note(now, "x", now) is None and note(None, "x", now) is None


def test_a_resume_on_another_machine_says_so_in_one_line_and_the_first_record_stays(tmp_path, caplog):
    from gptlab.training.trainer import record_machine
    now = facts()
    record_machine(tmp_path, now, resumed=False)
    assert json.loads((tmp_path / "machine.json").read_text()) == now
    first = {**now, "threads": now["threads"] + 1}
    (tmp_path / "machine.json").write_text(json.dumps(first))
    with caplog.at_level(logging.WARNING, logger="gptlab"):
        record_machine(tmp_path, now, resumed=True)
    assert [r.message for r in caplog.records] == [note(first, "the machine this run started on", now)]
    assert json.loads((tmp_path / "machine.json").read_text()) == first  # the run's first machine is kept


def test_eval_beside_a_run_from_another_machine_adds_the_line(tmp_path):
    from gptlab.eval import beside_summary
    other = {**facts(), "isa": "AVX2" if facts()["isa"] != "AVX2" else "AVX512"}
    (tmp_path / "summary.json").write_text(json.dumps({"best_val_loss": 5.0, "machine": other}))
    text = beside_summary({"perplexity": {"loss": 5.0, "tokens": 64}, "ctx": 32, "path": "best.ckpt"}, tmp_path)
    first, second = text.splitlines()
    assert "difference +0.00e+00" in first
    assert second.startswith("this machine differs from the machine the run measured on (isa ")


@pytest.mark.slow
def test_a_run_records_its_machine_in_machine_json_and_its_summary(tiny_data, tmp_path):
    from helpers import train_here
    train_here(["trainer.max_steps=2", "trainer.threads=1"], tiny_data, tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / "machine.json").read_text())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert recorded == summary["machine"] and recorded["threads"] == 1  # trainer.threads, as the run computed
