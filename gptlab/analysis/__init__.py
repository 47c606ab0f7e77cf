"""Reading run folders and comparing them: runs (find, load, label), fits (power laws), plots (PNGs), published
(GPT-2 figures with sources), report (report.md), speed (the bench's table).
"""
