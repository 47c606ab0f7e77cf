"""The two kinds of user-facing failure, and the exit code each gets in every entry point (gptlab/cli.py).

    python -m gptlab.eval ctx=abc model=runs/x       # Refused: exit 2, one line, before any work
    python -m gptlab.train resume=runs/x             # a damaged checkpoint given as input: Refused, exit 2

Library code raises these (or subclasses) with a message that says what was wrong and how to fix it. Imports nothing.
"""
from __future__ import annotations


class UserError(Exception):
    """A failure whose message says what to fix; printed as one line without a traceback. Exit 1: it happened
    during the work (damaged data or checkpoint, a non-finite loss, a failed write)."""

    exit_code = 1


class Refused(UserError):
    """Refused before any work: a bad argument or config, a missing model, dataset or network. Exit 2."""

    exit_code = 2


class Failed(UserError):
    """The work started and could not finish; the message says why. Exit 1."""
