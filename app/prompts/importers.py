"""Parse import files into records, checking every line before anything is written.

Pure functions: bytes in, `Record`s out, or `Invalid` naming each bad line. Formats:

- prompts: JSONL `{"prompt": str | [messages], "tags": [str]}`, or CSV with a `prompt` column and an
  optional `tags` column (`;`-separated).
- pairs: TRL preference pairs -> a ranking [[chosen], [rejected]]. Standard `{"prompt", "chosen",
  "rejected"}` texts; conversational `{"prompt": [messages], "chosen": [assistant message], "rejected":
  [assistant message]}`; or implicit-prompt conversational `{"chosen": [messages], "rejected": [messages]}`,
  whose prompt is the turns both share (as TRL's `maybe_extract_prompt` reads them).
- ranked-groups: JSONL `{"prompt": str | [messages], "completions": [str], "ranking": [[int]]}` (tiers of
  indexes, best first; without `ranking` the group waits for annotators), or Open-Assistant trees
  (detected per line: `prompt` is a message object), or lines of rankloop's own rankings export
  (rankings.jsonl: `candidates` with their model versions and `tiers` of their ids; all-bad marks kept).
  In an Open-Assistant tree, every group of two or more ranked sibling assistant replies becomes a record;
  its prompt is the conversation so far, roles intact (prompter -> user), the root text alone for replies
  to the root. Equal ranks are a tie; deleted replies are left out, and so are blank ones (with what
  follows them), counted in `Parsed.left_out`; a blank root is an error.
- gold: ranked groups as above whose ranking is known; every group must have one. Each becomes an open
  gold set (app.annotation.gold) with that ranking, not a ranking by the imported annotator.
- demonstrations: JSONL `{"prompt", "completion"}` (texts, or TRL's conversational prompt-completion form),
  a human-written reply for the supervised (SFT) stage -> a record with that one completion and no ranking.

A prompt given as messages follows app.conversation's rule (known roles, no blank turn, the last one the
user's); a conversation of one user turn is a plain prompt. Every text goes through app.text's rule
(valid Unicode, no control characters, prompts and completions not blank, the documented limits). JSONL
files are split into lines on "\n" only ("\r\n" is fine): a JSON string may hold U+2028 and other
characters that `str.splitlines` would break a line at.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from app.annotation.tiers import MAX_CANDIDATES, MIN_CANDIDATES, validate_tiers
from app.conversation import Conversation, Message, PromptLike, as_prompt, flatten
from app.errors import Invalid
from app.prompts.schemas import (
    DemonstrationLine,
    ExportedRankingLine,
    ImportKind,
    OAMessage,
    OATree,
    PairLine,
    PromptLine,
    RankedGroupLine,
)
from app.text import NAME_CHARS, PROMPT_CHARS, TAG_CHARS, is_blank, text_problem

M = TypeVar("M", bound=BaseModel)

DEFAULT_MODEL = "imported"
OASST_MODEL = "oasst-human"
# The external model version that authors demonstrations (a person, not a model).
DEMONSTRATIONS_MODEL = "demonstrations"
# Enough to fix a file in one go without drowning the reader.
MAX_REPORTED_ERRORS = 20


@dataclass
class Record:
    """One prompt, optionally with candidates and a ranking of them (tiers of indexes, best first)."""

    line: int
    # A text, or a conversation ending with a user turn (app.conversation).
    prompt: PromptLike
    tags: list[str] = field(default_factory=list)
    completions: list[str] = field(default_factory=list)
    tiers: list[list[int]] | None = None
    model: str = DEFAULT_MODEL
    source: str = "import"
    # Per completion, stored as the candidate's generation_params (where an imported text came from).
    completion_meta: list[dict[str, Any]] = field(default_factory=list)
    # Per completion, the model version that wrote it, where they differ (else `model` for all).
    completion_models: list[str] = field(default_factory=list)
    all_bad: bool = False

    def models(self) -> list[str]:
        """The model version name of each completion."""
        return self.completion_models or [self.model] * len(self.completions)


@dataclass
class Parsed:
    records: list[Record]
    # Open-Assistant replies left out because their text is blank (their own replies go with them).
    left_out: int = 0


class LineError(Exception):
    """A problem with one line; collected so that the user sees every bad line at once."""


def parse(data: bytes, kind: ImportKind, filename: str = "") -> list[Record]:
    """All records of a file, or Invalid listing the malformed lines (by line number)."""
    return parse_file(data, kind, filename).records


def parse_file(data: bytes, kind: ImportKind, filename: str = "") -> Parsed:
    """All records of a file and what was left out of it, or Invalid listing the malformed lines."""
    text = _decode(data)
    if not text.strip():
        raise Invalid("the file holds no records to import")
    left_out = [0]
    if kind == ImportKind.prompts and _is_csv(filename, text):
        records, errors = _parse_csv_prompts(text)
    else:
        records, errors = _parse_jsonl(text, kind, left_out)
    if errors:
        shown = "; ".join(errors[:MAX_REPORTED_ERRORS])
        more = len(errors) - MAX_REPORTED_ERRORS
        suffix = f"; and {more} more" if more > 0 else ""
        raise Invalid(
            f"{len(errors)} malformed line(s), nothing imported: {shown}{suffix}", errors=errors[:100]
        )
    if not records:
        raise Invalid("the file holds no records to import")
    return Parsed(records, left_out[0])


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise Invalid(f"line {line}: not UTF-8 text; nothing imported") from exc


def _is_csv(filename: str, text: str) -> bool:
    name = filename.lower()
    if name.endswith(".csv"):
        return True
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return False
    return not text.lstrip().startswith("{")


def _parse_csv_prompts(text: str) -> tuple[list[Record], list[str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "prompt" not in [f.strip() for f in reader.fieldnames]:
        return [], ["line 1: a CSV file needs a header row with a 'prompt' column"]
    reader.fieldnames = [f.strip() for f in reader.fieldnames]
    records: list[Record] = []
    errors: list[str] = []
    start = reader.line_num + 1
    try:
        for row in reader:
            line = start
            start = reader.line_num + 1
            if None in row:
                errors.append(f"line {line}: more fields than the header has")
                continue
            prompt = row.get("prompt") or ""
            tags = [t.strip() for t in (row.get("tags") or "").split(";") if t.strip()]
            if is_blank(prompt):
                if any(not is_blank(v or "") for v in row.values()):
                    errors.append(f"line {line}: prompt: must not be blank")
                continue
            if len(prompt) > PROMPT_CHARS:
                errors.append(
                    f"line {line}: prompt: is longer than {PROMPT_CHARS:,} characters ({len(prompt):,})"
                )
                continue
            record = Record(line=line, prompt=prompt, tags=_unique(tags))
            try:
                _check_storable(record)
            except LineError as exc:
                errors.append(f"line {line}: {exc}")
                continue
            records.append(record)
    except csv.Error as exc:
        errors.append(f"line {reader.line_num}: {exc}")
    return records, errors


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(number, line) split on "\n" only, a "\r" before it dropped."""
    for number, raw in enumerate(text.split("\n"), start=1):
        yield number, raw.removesuffix("\r")


def _parse_jsonl(text: str, kind: ImportKind, left_out: list[int]) -> tuple[list[Record], list[str]]:
    records: list[Record] = []
    errors: list[str] = []
    for number, raw in _lines(text):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except (ValueError, RecursionError):
            errors.append(f"line {number}: not valid JSON (too deeply nested or not decodable)")
            continue
        if not isinstance(obj, dict):
            errors.append(f"line {number}: expected a JSON object")
            continue
        try:
            parsed = _parse_object(number, obj, kind, left_out)
            for record in parsed:
                _check_storable(record)
            records.extend(parsed)
        except LineError as exc:
            errors.append(f"line {number}: {exc}")
    return records, errors


def _parse_object(number: int, obj: dict[str, Any], kind: ImportKind, left_out: list[int]) -> list[Record]:
    if kind == ImportKind.gold:
        records = _parse_object(number, obj, ImportKind.ranked_groups, left_out)
        for record in records:
            if record.tiers is None:
                raise LineError("a gold group needs its known ranking (`ranking`)")
            if record.all_bad:
                raise LineError("an all-bad ranking orders nothing: it cannot be gold")
        return records
    if kind == ImportKind.prompts:
        p = _validate(PromptLine, obj)
        return [Record(line=number, prompt=p.prompt, tags=_unique(p.tags))]
    if kind == ImportKind.pairs:
        pair = _validate(PairLine, obj)
        given = isinstance(obj.get("prompt"), list) or pair.prompt is None
        prompt, chosen, rejected = _pair_texts(pair.prompt, pair.chosen, pair.rejected, given)
        if chosen == rejected:
            raise LineError("chosen and rejected are the same text")
        return [
            Record(
                line=number,
                prompt=prompt,
                tags=_unique(pair.tags),
                completions=[chosen, rejected],
                tiers=[[0], [1]],
                model=pair.model or DEFAULT_MODEL,
            )
        ]
    if kind == ImportKind.demonstrations:
        demo = _validate(DemonstrationLine, obj)
        return [
            Record(
                line=number,
                prompt=demo.prompt,
                completions=[_reply("completion", demo.completion)],
                model=DEMONSTRATIONS_MODEL,
                source="demonstrations",
            )
        ]
    if kind == ImportKind.ranked_groups and isinstance(obj.get("candidates"), list) and "tiers" in obj:
        return [_parse_exported_ranking(number, obj)]
    if kind == ImportKind.oasst or isinstance(obj.get("prompt"), dict):
        return _parse_oasst(number, obj, left_out)
    group = _validate(RankedGroupLine, obj)
    _check_group(group.completions)
    tiers = None
    if group.ranking is not None:
        tiers = _check_ranking(group.ranking, len(group.completions))
    return [
        Record(
            line=number,
            prompt=group.prompt,
            tags=_unique(group.tags),
            completions=list(group.completions),
            tiers=tiers,
            model=group.model or DEFAULT_MODEL,
        )
    ]


def _parse_exported_ranking(number: int, obj: dict[str, Any]) -> Record:
    """A rankings.jsonl line as a ranked group: the candidates in set order, the tiers as their indexes."""
    line = _validate(ExportedRankingLine, obj)
    index = {c.id: i for i, c in enumerate(line.candidates)}
    unknown = sorted({c for tier in line.tiers for c in tier} - set(index))
    if unknown:
        raise LineError(f"tiers: candidate ids {unknown[:5]} are not among the candidates")
    texts = [c.text for c in line.candidates]
    # Two versions may have written the same text: a candidate is its text and its version.
    _check_group([(c.model_version, c.text) for c in line.candidates])
    return Record(
        line=number,
        prompt=line.prompt.messages if line.prompt.messages is not None else line.prompt.text,
        tags=_unique(line.prompt.tags),
        completions=texts,
        tiers=_check_ranking([[index[c] for c in tier] for tier in line.tiers], len(texts)),
        completion_models=[c.model_version for c in line.candidates],
        all_bad=line.all_bad,
    )


def _check_storable(record: Record) -> None:
    """Every text of a record under app.text's rule: what the line schemas checked, and what the
    importer made of them (a rendered conversation, tags from CSV, provenance strings)."""
    fields: list[tuple[str, str, dict[str, Any]]] = [
        ("prompt", flatten(record.prompt), {"blank_ok": False}),
        ("model", record.model, {"one_line": True, "blank_ok": False, "max_chars": NAME_CHARS}),
    ]
    fields += [
        ("tags", t, {"one_line": True, "blank_ok": False, "max_chars": TAG_CHARS}) for t in record.tags
    ]
    fields += [("completions", c, {"blank_ok": False}) for c in record.completions]
    fields += [("model_version", m, {"one_line": True, "blank_ok": False}) for m in record.completion_models]
    fields += [
        (k, v, {"one_line": True})
        for meta in record.completion_meta
        for k, v in meta.items()
        if isinstance(v, str)
    ]
    for name, value, rule in fields:
        problem = text_problem(value, **rule)
        if problem:
            raise LineError(f"{name}: {problem}")


def _validate(model: type[M], obj: dict[str, Any]) -> M:
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False)[:3]:
            where = ".".join(str(p) for p in err["loc"]) or "line"
            if err["type"] == "conversation" and err.get("ctx", {}).get("at"):
                # app.conversation names the bad turn ("2.content") below the field.
                where = f"{where}.{err['ctx']['at']}"
            message = "must not be blank" if err["type"] == "string_pattern_mismatch" else err["msg"]
            problems.append(f"{where}: {message}")
        raise LineError("; ".join(problems)) from exc


def _unique(tags: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(tags))


def _check_group(completions: Sequence[Hashable]) -> None:
    if not MIN_CANDIDATES <= len(completions) <= MAX_CANDIDATES:
        raise LineError(
            f"completions: a group needs {MIN_CANDIDATES} to {MAX_CANDIDATES} completions, "
            f"got {len(completions)}"
        )
    seen: dict[Hashable, int] = {}
    for index, text in enumerate(completions):
        if text in seen:
            raise LineError(f"completions: {seen[text]} and {index} are the same text")
        seen[text] = index


def _check_ranking(ranking: list[list[int]], size: int) -> list[list[int]]:
    bad = sorted({i for tier in ranking for i in tier if not 0 <= i < size})
    if bad:
        raise LineError(f"ranking: indexes {bad} are outside completions (0..{size - 1})")
    try:
        return validate_tiers(ranking, range(size))
    except Invalid as exc:
        raise LineError(f"ranking: {exc.message}") from exc


def _parse_oasst(number: int, obj: dict[str, Any], left_out: list[int]) -> list[Record]:
    if not isinstance(obj.get("prompt"), dict) and {"text", "role"} <= obj.keys():
        # A bare message tree without the export wrapper.
        obj = {"prompt": obj}
    if not isinstance(obj.get("prompt"), dict):
        raise LineError("prompt: not an Open-Assistant message tree (expected an object with text and role)")
    tree = _validate(OATree, obj)
    if is_blank(tree.prompt.text):
        raise LineError("prompt.text: must not be blank (the root message is the prompt)")
    records: list[Record] = []
    for path, group in _ranked_groups(tree.prompt, [], left_out):
        if len(group) > MAX_CANDIDATES:
            where = path[-1].message_id or "a message"
            raise LineError(f"{len(group)} ranked replies to {where}; a group takes at most {MAX_CANDIDATES}")
        _check_group([r.text for r in group])
        records.append(
            Record(
                line=number,
                prompt=conversation_prompt(path),
                completions=[r.text for r in group],
                tiers=_tiers_from_ranks([r.rank for r in group if r.rank is not None]),
                model=OASST_MODEL,
                source="oasst",
                completion_meta=[
                    {"source": "oasst", "message_tree_id": tree.message_tree_id, "message_id": r.message_id}
                    for r in group
                ],
            )
        )
    return records


def _ranked_groups(
    message: OAMessage, before: list[OAMessage], left_out: list[int]
) -> Iterator[tuple[list[OAMessage], list[OAMessage]]]:
    """(conversation so far, its ranked replies) for each prompter message with two or more of them.

    A blank reply is left out and counted, with everything below it: it is no candidate, and no later
    turn's conversation can contain it.
    """
    path = [*before, message]
    replies = [r for r in message.replies if not r.deleted]
    blank = [r for r in replies if is_blank(r.text)]
    left_out[0] += len(blank)
    replies = [r for r in replies if not is_blank(r.text)]
    if message.role == "prompter":
        ranked = [r for r in replies if r.role == "assistant" and r.rank is not None]
        if len(ranked) >= MIN_CANDIDATES:
            yield path, ranked
    for reply in replies:
        yield from _ranked_groups(reply, path, left_out)


def _tiers_from_ranks(ranks: Sequence[int]) -> list[list[int]]:
    return [[i for i, r in enumerate(ranks) if r == value] for value in sorted(set(ranks))]


def conversation_prompt(path: Sequence[OAMessage]) -> PromptLike:
    """The prompt for replies to the last message: the conversation so far, roles intact (a prompter is
    the user), or the root's text alone."""
    turns = [Message("user" if m.role == "prompter" else "assistant", m.text) for m in path]
    try:
        return as_prompt(turns)
    except ValueError as exc:
        raise LineError(f"the conversation before {path[-1].message_id or 'a reply'} {exc}") from exc


def _reply(field: str, value: str | Conversation) -> str:
    """A reply given as a text, or as TRL's one assistant message."""
    if isinstance(value, str):
        return value
    if not value:
        raise LineError(f"{field}: no reply after the prompt")
    if len(value) != 1 or value[0].role != "assistant":
        roles = ", ".join(m.role for m in value)
        raise LineError(f"{field}: a reply is one assistant message (got {roles})")
    return value[0].content


def _pair_texts(
    prompt: PromptLike | None,
    chosen: str | Conversation,
    rejected: str | Conversation,
    prompt_as_messages: bool,
) -> tuple[PromptLike, str, str]:
    """(prompt, chosen, rejected) of a TRL preference line; without an explicit prompt (or with a text
    prompt beside message lists, as TRL's maybe_extract_prompt reads it) the prompt is the turns that
    chosen and rejected share. `prompt_as_messages`: the line gave its prompt as a message list (or none)."""
    both_lists = not isinstance(chosen, str) and not isinstance(rejected, str)
    explicit = prompt is not None and (not both_lists or prompt_as_messages)
    if explicit:
        assert prompt is not None
        return prompt, _reply("chosen", chosen), _reply("rejected", rejected)
    if isinstance(chosen, str) or isinstance(rejected, str):
        raise LineError("prompt: missing (an implicit prompt needs chosen and rejected as message lists)")
    if chosen == rejected:
        raise LineError("chosen and rejected are the same conversation")
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0 or chosen[shared - 1].role != "user":
        raise LineError(
            "prompt: chosen and rejected must share the conversation up to a user turn (the implicit prompt)"
        )
    try:
        implicit = as_prompt(chosen[:shared])
    except ValueError as exc:
        raise LineError(f"prompt: {exc}") from exc
    return implicit, _reply("chosen", chosen[shared:]), _reply("rejected", rejected[shared:])
