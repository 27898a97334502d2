"""The one rule for text that comes in: import files, JSON bodies, forms and query strings alike.

Every string a client sends is checked here, and refused (never repaired: what is stored is what was
sent) when it
- is not valid Unicode: a lone surrogate, which a JSON escape such as "\\ud83d" decodes to and which
  PostgreSQL cannot store;
- holds a control character other than tab, line feed and carriage return (NUL first: PostgreSQL refuses
  it); a one-line field (a name, a tag, a key) refuses those three and the Unicode line and paragraph
  separators too;
- is blank where a text is required (nothing but white space and invisible format characters);
- is longer than its field's limit (the constants below, documented in the README).

A problem is reported as "<field>: <problem>" (and "line N: ..." for files, by the importers), so the
client learns what to fix. Line breaks inside a text are content: files are split into lines on "\\n" only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from app.errors import Invalid

# Characters allowed in no text: C0 controls but tab, LF and CR; DEL and the C1 controls; surrogates.
_BAD_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# ... and in one-line fields also tab, LF, CR and the Unicode line and paragraph separators.
_BAD_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# A character that shows: neither white space nor an invisible format character (ZWSP, ZWJ, BOM, ...).
_VISIBLE = re.compile(r"[^\s\u00ad\u200b-\u200f\u2060-\u2064\ufeff]")

# The documented limits, in characters (README, "Text limits"). The rationale's is a setting
# (RANKLOOP_MAX_RATIONALE_CHARS), checked by the annotation service.
PROMPT_CHARS = 100_000
COMPLETION_CHARS = 100_000
NAME_CHARS = 200  # prompt set and model version names
TAG_CHARS = 100
SKIP_REASON_CHARS = 500
TOKEN_NAME_CHARS = 100
PASSWORD_CHARS = 1024


def _describe(char: str) -> str:
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        return f"a lone surrogate (U+{code:04X}), not valid Unicode"
    if char in "\t\n\r\u2028\u2029":
        return f"a line break or tab (U+{code:04X}); this field is one line"
    if code == 0:
        return "a NUL (U+0000), a control character"
    return f"the control character U+{code:04X}"


def text_problem(value: str, *, one_line: bool = False, blank_ok: bool = True, max_chars: int = 0) -> str:
    """What is wrong with a text under the rule ('' when nothing is)."""
    bad = (_BAD_IN_LINE if one_line else _BAD_IN_TEXT).search(value)
    if bad is not None:
        return f"character {bad.start() + 1} is {_describe(bad.group())}"
    if not blank_ok and _VISIBLE.search(value) is None:
        return "must not be blank"
    if max_chars and len(value) > max_chars:
        return f"is longer than {max_chars:,} characters ({len(value):,})"
    return ""


def check_text(
    value: str, field: str, *, one_line: bool = False, blank_ok: bool = True, max_chars: int = 0
) -> str:
    """The value unchanged, or Invalid (422) naming the field and the problem."""
    problem = text_problem(value, one_line=one_line, blank_ok=blank_ok, max_chars=max_chars)
    if problem:
        raise Invalid(f"{field}: {problem}")
    return value


def clean_generated(value: str, max_chars: int = COMPLETION_CHARS) -> str | None:
    """A model-written text under the rule imported texts follow: the characters no text may hold (NUL and
    other controls, lone surrogates) taken out, cut to `max_chars`; None when nothing visible is left (a
    blank candidate is dropped, as a blank imported one is refused)."""
    cleaned = _BAD_IN_TEXT.sub("", value)[:max_chars]
    return None if is_blank(cleaned) else cleaned


def is_blank(value: str) -> bool:
    """Nothing but white space and invisible format characters."""
    return _VISIBLE.search(value) is None


def check_name(value: str | None, field: str, *, default: str, max_chars: int = NAME_CHARS) -> str:
    """A one-line name (a prompt set's, say), trimmed; the default when empty."""
    name = (value or "").strip() or default
    return check_text(name, field, one_line=True, max_chars=max_chars)


def _validator(*, one_line: bool, blank_ok: bool) -> AfterValidator:
    def validate(value: str) -> str:
        problem = text_problem(value, one_line=one_line, blank_ok=blank_ok)
        if problem:
            # A custom error keeps pydantic's "Value error, " prefix out of the message.
            raise PydanticCustomError("text_rule", problem)
        return value

    return AfterValidator(validate)


# Field types under the rule, for pydantic models (JSON bodies, import lines).
AnyText = Annotated[str, _validator(one_line=False, blank_ok=True)]
PromptText = Annotated[str, Field(max_length=PROMPT_CHARS), _validator(one_line=False, blank_ok=False)]
CompletionText = Annotated[
    str, Field(max_length=COMPLETION_CHARS), _validator(one_line=False, blank_ok=False)
]
# A conversation message another tool wrote (blank allowed: the importer decides what blank means).
MessageText = Annotated[str, Field(max_length=PROMPT_CHARS), _validator(one_line=False, blank_ok=True)]
NameLine = Annotated[str, Field(max_length=NAME_CHARS), _validator(one_line=True, blank_ok=False)]
TagLine = Annotated[str, Field(max_length=TAG_CHARS), _validator(one_line=True, blank_ok=False)]
# An identifier another tool wrote (a message id): one line, no limit worth refusing a file over.
IdLine = Annotated[str, _validator(one_line=True, blank_ok=True)]


def label(name: str) -> str:
    """A field name fit to show in a message: as it is, or escaped when it breaks the rule itself."""
    return name if not text_problem(name, one_line=True) else ascii(name)


def strings(value: object) -> Iterator[tuple[str, str]]:
    """(path, text) for every string in a decoded JSON value, keys included ("a.b.0", "a.b (a key)").

    Iterative: a body nested as deep as the JSON decoder allows must not exhaust the call stack here.
    """
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            yield path or "body", item
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                here = f"{path}.{label(str(key))}" if path else label(str(key))
                yield f"{here} (a key)", str(key)
                children.append((here, child))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(
                (f"{path}.{i}" if path else str(i), child) for i, child in reversed(list(enumerate(item)))
            )


def check_all(items: Iterable[tuple[str, str]]) -> None:
    """Invalid naming the first field whose text breaks the rule (any lines; blank allowed)."""
    for field, value in items:
        problem = text_problem(value)
        if problem:
            raise Invalid(f"{field}: {problem}")
