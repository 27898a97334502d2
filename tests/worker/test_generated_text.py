"""Model-written candidates follow the text rule imported ones do (app.text): NUL, control characters and
lone surrogates are taken out before they are stored, and a reply with nothing visible left is dropped
and counted, like a blank imported candidate is refused."""

from __future__ import annotations

from app.text import COMPLETION_CHARS, clean_generated, text_problem
from worker.generation import Candidate, SamplingParams
from worker.stages.generate import keep_candidates
from worker.versions import VersionRef

VERSION = VersionRef(id=7, name="policy-7", base_model="tiny", adapter_path=None, status="active")


def reply(text: str, seed: int = 1) -> tuple[VersionRef, Candidate]:
    return VERSION, Candidate(0, text, seed, SamplingParams(), 3, 4, "stop")


def test_generated_text_is_cleaned_under_the_import_rule():
    assert (
        clean_generated("fine\x00 reply\ud83d with\x07 noise\r\n\tand tabs")
        == "fine reply with noise\r\n\tand tabs"
    )
    assert clean_generated("\x00 \u200b\n") is None
    assert clean_generated("") is None
    long = clean_generated("x" * (COMPLETION_CHARS + 5))
    assert long is not None and len(long) == COMPLETION_CHARS


def test_kept_candidates_pass_the_rule_and_blank_ones_are_counted():
    generated = [
        reply("The answer is 4.\x00", 1),
        reply("\x00\x01  ", 2),  # nothing visible once cleaned
        reply("The answer is 4.", 3),  # the same as the first once that one is cleaned
        reply("Lone \udc00surrogate", 4),
    ]
    kept, near, blank = keep_candidates(12, generated, dedupe_threshold=0.95)
    assert [c.text for c in kept] == ["The answer is 4.", "Lone surrogate"]
    assert (near, blank) == (1, 1)
    assert all(text_problem(c.text, blank_ok=False, max_chars=COMPLETION_CHARS) == "" for c in kept)
    assert [c.seed for c in kept] == [1, 4]
    assert all(c.params["round_id"] == 12 and c.model_version_id == 7 for c in kept)
