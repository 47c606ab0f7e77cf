"""Every `python -m gptlab.<entry>` command in the README and docs/ is one the entry point accepts: each key exists,
each group option exists, each value has the right type (composed as the command line would compose it).

    .venv/bin/python -m pytest tests/test_readme.py -q

A sweep (`-m a=1,2`) is composed at the first value of each swept key. Running the commands is left to the slow
tests and to the closing notes; this catches a README that names a key or preset the code no longer has.
"""
import importlib
import re
import shlex

import pytest
from helpers import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"python -m gptlab\.(\w+)(.*)")


def commands() -> list[tuple[str, str, str]]:
    """(page, entry point, argument text) of each command in a page's ```bash blocks, continuation lines joined."""
    out = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                m = COMMAND.search(line.split("  #")[0].split(" # ")[0].split(" | ")[0])  # a pipe's reader is not ours
                if m:
                    out.append((page.name, m.group(1), m.group(2).strip()))
    return out


def first_values(args: list[str]) -> list[str]:
    """A sweep's overrides at their first value: key=a,b -> key=a (lists in brackets and quotes stay)."""
    out = []
    for a in args:
        key, eq, value = a.partition("=")
        if eq and "," in value and value[:1] not in "['\"" and not key.startswith("hydra"):
            value = value.split(",")[0]
        out.append(f"{key}{eq}{value}")
    return out


def test_the_pages_have_commands():
    names = {name for _, name, _ in commands()}
    assert {"train", "eval", "sample", "prepare", "report"} <= names


@pytest.mark.parametrize("page,name,args", commands(), ids=[f"{p}: {n} {a}"[:100] for p, n, a in commands()])
def test_every_documented_command_composes(page, name, args):
    from gptlab import cli
    entry = importlib.import_module(f"gptlab.{name}").ENTRY
    words = [w for w in shlex.split(args) if w not in ("-m", "--multirun", "--help")]
    cli.compose(name, cli.rewrite(first_values(words), entry))  # raises Refused (one line) on an unknown key


def test_the_readme_is_the_first_hour():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert text.index("make train") < text.index("make test") < text.index("source .venv/bin/activate") < 1200
    for link in re.findall(r"\]\((docs/[\w.]+)\)", text):
        assert (ROOT / link).is_file(), link
    for section in ("## Train", "## Evaluate and sample", "## Your own data", "## Resume", "## Sweeps",
                    "## Loggers", "## Files"):
        assert section in text
