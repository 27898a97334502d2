"""An oracle the repository did not ship: written by a fresh helper session before it saw any model output,
for the unseen-oracle run of 2026-11-30 (bench/RESULTS.md). Prefers replies that end by handing the
conversation back with a question."""

"""Fresh oracle: the annotator likes replies that hand the conversation back to the user,
i.e. that close with a follow-up question (e.g. "Would you like more detail on X?").

Rationale: an engaging assistant ends by checking in with the user; chat models already do this
sometimes ("Is there anything else...?"), so it's a style a small chat model can move towards.
"""


def score(prompt: str, completion: str) -> float:
    text = (completion or "").rstrip()
    if not text:
        return 0.0
    n = len(text)
    last_q = text.rfind("?")
    s = 0.0
    if text.endswith("?"):
        s += 1.0  # the reply ends on a question
    if last_q >= 0:
        s += (last_q + 1) / n  # the later its last question, the better (0..1]
        s += 0.1 * min(text.count("?"), 3)  # small bonus for asking at all, capped
    return round(s, 4)
