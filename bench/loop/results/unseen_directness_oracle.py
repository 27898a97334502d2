"""An oracle the repository did not ship: written by a fresh helper session before it saw any model output,
any shipped oracle or any result, for the unseen-oracle run of 2026-12-01 (bench/RESULTS.md, session 7).

Directness oracle: prefer replies that get to the point and stay concrete.

Intent: a team tired of "assistant-speak" wants replies that answer straight
away instead of warming up ("Sure! Great question, I'd be happy to help..."),
that do not pad the end with pleasantries ("I hope this helps! Let me know
if..."), that hedge little ("it might possibly depend..."), and that give
concrete detail (numbers, examples).  Everything is measured as a presence or
a *rate* (per word / per sentence), so a longer reply is not preferred for
being longer; only near-empty replies (< 5 words) are penalised as a guard.

score = -2.0 * opening_filler       (0/1: "Sure/Certainly/..." as first word, or
                                     a warm-up phrase in the first ~12 words)
        -1.5 * closing_fluff        (0..1: pleasantries in the last sentence(s))
        -8.0 * hedge_rate           (hedge terms per word, capped at 0.25)
        +1.0 * concrete_fraction    (share of sentences with a digit or an example)
        -2.0 * (fewer than 5 words)
Deterministic, pure Python, no model; higher = preferred.
"""

import re

_WORD = re.compile(r"[A-Za-z0-9']+")
_SENT = re.compile(r"(?<=[.!?])\s+|\n+")
_OPENING = re.compile(
    r"^(sure|certainly|of course|absolutely|okay|ok|well)\b|"
    r"\b(great question|good question|"
    r"what a|i'd be (happy|glad|delighted)|i would be (happy|glad)|"
    r"happy to help|as an ai|as a language model|thank you for|thanks for)\b",
    re.I,
)
_CLOSING = re.compile(
    r"\b(hope (this|that|it) helps|let me know|feel free|happy to help|"
    r"don't hesitate|if you have any (other|more|further)? ?questions|"
    r"good luck|i hope|enjoy|in conclusion|in summary|overall,)\b",
    re.I,
)
_HEDGE = re.compile(
    r"\b(might|may|perhaps|possibly|probably|generally|typically|usually|"
    r"somewhat|it depends|can vary|varies|it's important to|it is important to|"
    r"keep in mind|some people|in some cases|could be)\b",
    re.I,
)
_CONCRETE = re.compile(r"\d|\b(for example|for instance|e\.g\.|such as)\b", re.I)


def score(prompt: str, completion: str) -> float:
    text = (completion or "").strip()
    words = _WORD.findall(text)
    n = len(words)
    if n == 0:
        return -4.0
    head = " ".join(words[:12])
    opening = 1.0 if _OPENING.search(head) else 0.0
    sents = [s for s in _SENT.split(text) if s.strip()]
    tail = " ".join(sents[-2:]) if len(sents) > 1 else (sents[-1] if sents else "")
    closing = min(len(_CLOSING.findall(tail)), 2) / 2.0
    hedge_rate = min(len(_HEDGE.findall(text)) / n, 0.25)
    concrete = sum(1 for s in sents if _CONCRETE.search(s)) / max(len(sents), 1)
    short = 1.0 if n < 5 else 0.0
    return -2.0 * opening - 1.5 * closing - 8.0 * hedge_rate + 1.0 * concrete - 2.0 * short
