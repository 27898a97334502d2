"""Parse import files into records, checking every line before anything is written.

Pure functions: bytes in, `Record`s out, or `Invalid` naming each bad line. Formats:

- prompts: JSONL `{"prompt": str, "tags": [str]}`, or CSV with a `prompt` column and an optional `tags`
  column (`;`-separated).
- pairs: TRL preference pairs, JSONL `{"prompt", "chosen", "rejected"}` -> a ranking [[chosen], [rejected]].
- ranked-groups: JSONL `{"prompt": str, "completions": [str], "ranking": [[int]]}` (tiers of indexes, best
  first; without `ranking` the group waits for annotators), or Open-Assistant trees (detected per line:
  `prompt` is a message object). Every group of two or more ranked sibling assistant replies becomes a
  record; its prompt is the root text for replies to the root, else the conversation so far rendered as
  "User: ...\n\nAssistant: ...\n\nUser: ...". Equal ranks are a tie; deleted replies are left out.
- demonstrations: JSONL `{"prompt", "completion"}`, a human-written reply for the supervised (SFT) stage ->
  a record with that one completion and no ranking.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from app.annotation.tiers import MAX_CANDIDATES, MIN_CANDIDATES, validate_tiers
from app.errors import Invalid
from app.prompts.schemas import (
    DemonstrationLine,
    ImportKind,
    OAMessage,
    OATree,
    PairLine,
    PromptLine,
    RankedGroupLine,
)

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
    prompt: str
    tags: list[str] = field(default_factory=list)
    completions: list[str] = field(default_factory=list)
    tiers: list[list[int]] | None = None
    model: str = DEFAULT_MODEL
    source: str = "import"
    # Per completion, stored as the candidate's generation_params (where an imported text came from).
    completion_meta: list[dict[str, Any]] = field(default_factory=list)


class LineError(Exception):
    """A problem with one line; collected so that the user sees every bad line at once."""


def parse(data: bytes, kind: ImportKind, filename: str = "") -> list[Record]:
    """All records of a file, or Invalid listing the malformed lines (by line number)."""
    text = _decode(data)
    if not text.strip():
        raise Invalid("the file holds no records to import")
    if kind == ImportKind.prompts and _is_csv(filename, text):
        records, errors = _parse_csv_prompts(text)
    else:
        records, errors = _parse_jsonl(text, kind)
    if errors:
        shown = "; ".join(errors[:MAX_REPORTED_ERRORS])
        more = len(errors) - MAX_REPORTED_ERRORS
        suffix = f"; and {more} more" if more > 0 else ""
        raise Invalid(
            f"{len(errors)} malformed line(s), nothing imported: {shown}{suffix}", errors=errors[:100]
        )
    if not records:
        raise Invalid("the file holds no records to import")
    return records


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
            if not prompt.strip():
                if any((v or "").strip() for v in row.values()):
                    errors.append(f"line {line}: prompt: the prompt is empty")
                continue
            if any(len(t) > 100 for t in tags):
                errors.append(f"line {line}: tags: a tag is longer than 100 characters")
                continue
            record = Record(line=line, prompt=prompt, tags=tags)
            try:
                _check_storable(record)
            except LineError as exc:
                errors.append(f"line {line}: {exc}")
                continue
            records.append(record)
    except csv.Error as exc:
        errors.append(f"line {reader.line_num}: {exc}")
    return records, errors


def _parse_jsonl(text: str, kind: ImportKind) -> tuple[list[Record], list[str]]:
    records: list[Record] = []
    errors: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
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
            parsed = _parse_object(number, obj, kind)
            for record in parsed:
                _check_storable(record)
            records.extend(parsed)
        except LineError as exc:
            errors.append(f"line {number}: {exc}")
    return records, errors


def _parse_object(number: int, obj: dict[str, Any], kind: ImportKind) -> list[Record]:
    if kind == ImportKind.prompts:
        p = _validate(PromptLine, obj)
        return [Record(line=number, prompt=p.prompt, tags=_unique(p.tags))]
    if kind == ImportKind.pairs:
        pair = _validate(PairLine, obj)
        if pair.chosen == pair.rejected:
            raise LineError("chosen and rejected are the same text")
        return [
            Record(
                line=number,
                prompt=pair.prompt,
                tags=_unique(pair.tags),
                completions=[pair.chosen, pair.rejected],
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
                completions=[demo.completion],
                model=DEMONSTRATIONS_MODEL,
                source="demonstrations",
            )
        ]
    if kind == ImportKind.oasst or isinstance(obj.get("prompt"), dict):
        return _parse_oasst(number, obj)
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


def _check_storable(record: Record) -> None:
    """PostgreSQL text holds neither NUL characters nor lone surrogates (which JSON escapes can carry)."""
    fields = [("prompt", record.prompt), ("model", record.model)]
    fields += [("tags", t) for t in record.tags] + [("completions", c) for c in record.completions]
    fields += [(k, v) for meta in record.completion_meta for k, v in meta.items() if isinstance(v, str)]
    for name, value in fields:
        if "\x00" in value:
            raise LineError(f"{name}: contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise LineError(f"{name}: contains an unpaired surrogate (invalid Unicode)") from None


def _validate(model: type[M], obj: dict[str, Any]) -> M:
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False)[:3]:
            where = ".".join(str(p) for p in err["loc"]) or "line"
            message = "must not be blank" if err["type"] == "string_pattern_mismatch" else err["msg"]
            problems.append(f"{where}: {message}")
        raise LineError("; ".join(problems)) from exc


def _unique(tags: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(tags))


def _check_group(completions: Sequence[str]) -> None:
    if not MIN_CANDIDATES <= len(completions) <= MAX_CANDIDATES:
        raise LineError(
            f"completions: a group needs {MIN_CANDIDATES} to {MAX_CANDIDATES} completions, "
            f"got {len(completions)}"
        )
    seen: dict[str, int] = {}
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


def _parse_oasst(number: int, obj: dict[str, Any]) -> list[Record]:
    if not isinstance(obj.get("prompt"), dict) and {"text", "role"} <= obj.keys():
        # A bare message tree without the export wrapper.
        obj = {"prompt": obj}
    if not isinstance(obj.get("prompt"), dict):
        raise LineError("prompt: not an Open-Assistant message tree (expected an object with text and role)")
    tree = _validate(OATree, obj)
    records: list[Record] = []
    for path, group in _ranked_groups(tree.prompt, []):
        if len(group) > MAX_CANDIDATES:
            where = path[-1].message_id or "a message"
            raise LineError(f"{len(group)} ranked replies to {where}; a group takes at most {MAX_CANDIDATES}")
        _check_group([r.text for r in group])
        records.append(
            Record(
                line=number,
                prompt=render_conversation(path),
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
    message: OAMessage, before: list[OAMessage]
) -> Iterator[tuple[list[OAMessage], list[OAMessage]]]:
    path = [*before, message]
    if message.role == "prompter":
        ranked = [
            r for r in message.replies if r.role == "assistant" and r.rank is not None and not r.deleted
        ]
        if len(ranked) >= MIN_CANDIDATES:
            yield path, ranked
    for reply in message.replies:
        if not reply.deleted:
            yield from _ranked_groups(reply, path)


def _tiers_from_ranks(ranks: Sequence[int]) -> list[list[int]]:
    return [[i for i, r in enumerate(ranks) if r == value] for value in sorted(set(ranks))]


def render_conversation(path: Sequence[OAMessage]) -> str:
    """The prompt for replies to the last message: its text alone at the root, else the dialogue."""
    if len(path) == 1:
        return path[0].text
    speaker = {"prompter": "User", "assistant": "Assistant"}
    return "\n\n".join(f"{speaker[m.role]}: {m.text}" for m in path)
