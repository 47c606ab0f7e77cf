"""Figures that make "short, repetitive, less varied" measurable, on whitespace words (tokenizer-independent):

    python -c "from gptlab.evaluation.textstats import distinct_n, rep_n; \
               print(distinct_n(['a b a b'], 2), rep_n('a b c a b c d', 2))"

- distinct-n (Li et al. 2016, "A Diversity-Promoting Objective Function for Neural Conversation Models"): distinct
  n-grams over all n-grams, pooled over the texts given (one prompt's samples);
- rep-n (Welleck et al. 2019, "Neural Text Generation with Unlikelihood Training", seq-rep-n): within one text, the
  share of its n-grams that repeat an earlier one, 1 - distinct / all;
- self-BLEU (Zhu et al. 2018, Texygen): each text's BLEU-4 against the others as references, averaged; nltk's
  sentence_bleu with uniform weights and smoothing method 1, as Texygen computes it. High = the samples are alike.

A text with fewer words than n has no n-grams: its figure is None (undefined), never 0, and a mean leaves it out.
"""
from __future__ import annotations

# every figure of a prompt's samples, in table order (gptlab.evaluation.samples.prompt_figures computes them)
FIGURES = ("length", "at cap", "distinct-1", "distinct-2", "distinct-3", "rep-4", "self-BLEU", "ref ppl")


def ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: list[str], n: int) -> float | None:
    """Distinct n-grams / all n-grams over the texts together; None when they hold no n-gram."""
    grams = [g for t in texts for g in ngrams(t.split(), n)]
    return len(set(grams)) / len(grams) if grams else None


def rep_n(text: str, n: int = 4) -> float | None:
    """The share of the text's n-grams that repeat an earlier one; None when it has no n-gram."""
    grams = ngrams(text.split(), n)
    return 1 - len(set(grams)) / len(grams) if grams else None


def self_bleu(texts: list[str]) -> float | None:
    """Mean BLEU-4 of each text against the others; None with fewer than two non-empty texts."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    words = [t.split() for t in texts if t.split()]
    if len(words) < 2:
        return None
    smooth = SmoothingFunction().method1
    scores = [sentence_bleu(words[:i] + words[i + 1:], w, smoothing_function=smooth) for i, w in enumerate(words)]
    return sum(scores) / len(scores)


def mean(values) -> float | None:
    """The mean of the defined values; None when none is."""
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None
