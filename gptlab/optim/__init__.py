"""The optimizer and its learning-rate schedule, built from config: optimizer (the model's parameter roles as groups,
any torch.optim class from conf/optim/), muon (MuonAdamW: Muon on the hidden matrices, AdamW on the rest) and
schedule (warmup, then a constant, cosine, linear or wsd decay: the runtime rate math).
"""
