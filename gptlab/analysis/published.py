"""Published GPT-2 figures, each with its source, copied here so reports work offline; nothing here is measured.

    python -c "from gptlab.analysis.published import published_section; print(published_section())"
"""
from __future__ import annotations

import math

from gptlab.analysis.tables import markdown_table
from gptlab.units import human

NANOGPT = "nanoGPT README, baselines (https://github.com/karpathy/nanoGPT#baselines)"
GPT2_PAPER = ("Radford et al. 2019, Language Models are Unsupervised Multitask Learners, Table 3 "
              "(https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf)")
HARNESS = "EleutherAI lm-evaluation-harness, zero-shot, Hugging Face `gpt2` / `gpt2-xl`"

# Copied here so reports work without the project's reference notes. params: counted as nanoGPT (and gptlab's
# num_params) count them: tied wte once, position embeddings left out,
# e.g. gpt2 = 50257*768 + 12*(12*768^2 + 13*768) + 2*768.
PUBLISHED = {
    "openwebtext": {  # pretrained checkpoints scored on OpenWebText, 1024-token context
        "source": NANOGPT,
        "rows": [  # (model, params, train loss, val loss)
            ("gpt2", 123_653_376, 3.11, 3.12),
            ("gpt2-medium", 353_774_592, 2.85, 2.84),
            ("gpt2-large", 772_719_360, 2.66, 2.67),
            ("gpt2-xl", 1_555_972_800, 2.56, 2.54),
        ],
    },
    "gpt2_paper": {  # zero-shot, with the paper's detokenizers and token-ratio scaling
        "source": GPT2_PAPER,
        "columns": ("LAMBADA ppl", "LAMBADA acc", "WikiText2 ppl", "WikiText103 ppl", "PTB ppl", "enwik8 bpb"),
        "rows": [
            ("117M", 35.13, 45.99, 29.41, 37.50, 65.85, 1.16),
            ("345M", 15.60, 55.48, 22.76, 26.37, 47.33, 1.01),
            ("762M", 10.87, 60.12, 19.93, 22.05, 40.31, 0.97),
            ("1542M", 8.63, 63.24, 18.34, 17.48, 35.76, 0.93),
        ],
    },
    "harness": {
        "source": HARNESS,
        "rows": [  # (model, task, metric, value)
            ("gpt2", "lambada_openai", "acc", 0.3256),
            ("gpt2", "lambada_openai", "perplexity (per word)", 40.06),
            ("gpt2", "wikitext (wikitext-2-raw-v1, document level)", "word_perplexity", 37.37),
            ("gpt2", "wikitext", "byte_perplexity", 1.9682),
            ("gpt2", "wikitext", "bits_per_byte", 0.9769),
            ("gpt2", "hellaswag (validation)", "acc", 0.2892),
            ("gpt2", "hellaswag (validation)", "acc_norm", 0.3114),
            ("gpt2-xl", "hellaswag (validation)", "acc", 0.4004),
            ("gpt2-xl", "hellaswag (validation)", "acc_norm", 0.5089),
            ("gpt2-xl", "lambada_openai", "perplexity (per word)", 10.63),
        ],
    },
}


def published_section() -> str:
    """The GPT-2 figures copied above, each table with its source; nothing here was measured by gptlab."""
    owt, paper, harness = PUBLISHED["openwebtext"], PUBLISHED["gpt2_paper"], PUBLISHED["harness"]
    parts = [
        "## Published (not measured by gptlab)",
        "",
        "Figures copied from their sources for orientation. They were not scored on this report's val tokens: "
        "do not read them as rows of the measured table.",
        "",
        f"### GPT-2 checkpoints on OpenWebText, 1024-token context — {owt['source']}",
        "",
        markdown_table(("model", "parameters", "context", "train loss", "val loss", "exp(val loss)"),
                       [(m, human(p), 1024, f"{tr:.2f}", f"{va:.2f}", f"{math.exp(va):.2f}")
                        for m, p, tr, va in owt["rows"]]),
        "",
        "nanoGPT's val loss is the mean over random 1024-token windows of its OpenWebText val split "
        "(test_size 0.0005, seed 2357), not gptlab's first `val_tokens` tokens: close to, not the same as, "
        "a gptlab run with data=openwebtext at context 1024.",
        "",
        f"### GPT-2 paper, zero-shot — {paper['source']}",
        "",
        markdown_table(("model",) + paper["columns"], paper["rows"]),
        "",
        f"### lm-evaluation-harness — {harness['source']}",
        "",
        markdown_table(("model", "task", "metric", "value"), harness["rows"]),
    ]
    return "\n".join(parts)
