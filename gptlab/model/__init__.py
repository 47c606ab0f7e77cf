"""The GPT and what touches its weights: gpt (GPT-2 names), loss (fused, chunked), sampling (top-k/p, text
out), checkpoint (weights_only reads, atomic writes), spec (what model= may name), load (one loader), hf (GPT-2
import/export through transformers). Import the modules themselves; nothing loads here.
"""
