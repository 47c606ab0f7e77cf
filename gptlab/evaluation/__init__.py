"""Scoring a model: perplexity (fixed or strided windows, bits per byte) and tasks (lm-evaluation-harness
definitions of LAMBADA, WikiText and HellaSwag).
"""
