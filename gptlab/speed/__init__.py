"""The bench in one place: timing.py times training (Lightning, a bare loop, a nanoGPT-style loop), eval and
generation on the same machine in one process; figures.py turns the rounds into ratios, MFU and the table.

    python -m gptlab.bench model=30m        # the command line over this package (gptlab/bench.py)
"""
