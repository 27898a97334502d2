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

This module reads files and lines; `records` holds `Record` and the checks every format shares, `oasst`
reads Open-Assistant trees, `trl` the reply and implicit-prompt shapes of TRL's datasets.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from app.errors import Invalid
from app.prompts.importers.oasst import parse_oasst
from app.prompts.importers.records import (
    DEFAULT_MODEL,
    DEMONSTRATIONS_MODEL,
    LineError,
    Parsed,
    Record,
    check_group,
    check_ranking,
    check_storable,
    unique,
    validate,
)
from app.prompts.importers.trl import pair_texts, reply
from app.prompts.schemas import (
    DemonstrationLine,
    ExportedRankingLine,
    ImportKind,
    PairLine,
    PromptLine,
    RankedGroupLine,
)
from app.text import PROMPT_CHARS, is_blank

# Enough to fix a file in one go without drowning the reader.
MAX_REPORTED_ERRORS = 20


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
            record = Record(line=line, prompt=prompt, tags=unique(tags))
            try:
                check_storable(record)
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
                check_storable(record)
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
        p = validate(PromptLine, obj)
        return [Record(line=number, prompt=p.prompt, tags=unique(p.tags))]
    if kind == ImportKind.pairs:
        pair = validate(PairLine, obj)
        given = isinstance(obj.get("prompt"), list) or pair.prompt is None
        prompt, chosen, rejected = pair_texts(pair.prompt, pair.chosen, pair.rejected, given)
        if chosen == rejected:
            raise LineError("chosen and rejected are the same text")
        return [
            Record(
                line=number,
                prompt=prompt,
                tags=unique(pair.tags),
                completions=[chosen, rejected],
                tiers=[[0], [1]],
                model=pair.model or DEFAULT_MODEL,
            )
        ]
    if kind == ImportKind.demonstrations:
        demo = validate(DemonstrationLine, obj)
        return [
            Record(
                line=number,
                prompt=demo.prompt,
                completions=[reply("completion", demo.completion)],
                model=DEMONSTRATIONS_MODEL,
                source="demonstrations",
            )
        ]
    if kind == ImportKind.ranked_groups and isinstance(obj.get("candidates"), list) and "tiers" in obj:
        return [_parse_exported_ranking(number, obj)]
    if kind == ImportKind.oasst or isinstance(obj.get("prompt"), dict):
        return parse_oasst(number, obj, left_out)
    group = validate(RankedGroupLine, obj)
    check_group(group.completions)
    tiers = None
    if group.ranking is not None:
        tiers = check_ranking(group.ranking, len(group.completions))
    return [
        Record(
            line=number,
            prompt=group.prompt,
            tags=unique(group.tags),
            completions=list(group.completions),
            tiers=tiers,
            model=group.model or DEFAULT_MODEL,
        )
    ]


def _parse_exported_ranking(number: int, obj: dict[str, Any]) -> Record:
    """A rankings.jsonl line as a ranked group: the candidates in set order, the tiers as their indexes."""
    line = validate(ExportedRankingLine, obj)
    index = {c.id: i for i, c in enumerate(line.candidates)}
    unknown = sorted({c for tier in line.tiers for c in tier} - set(index))
    if unknown:
        raise LineError(f"tiers: candidate ids {unknown[:5]} are not among the candidates")
    texts = [c.text for c in line.candidates]
    # Two versions may have written the same text: a candidate is its text and its version.
    check_group([(c.model_version, c.text) for c in line.candidates])
    return Record(
        line=number,
        prompt=line.prompt.messages if line.prompt.messages is not None else line.prompt.text,
        tags=unique(line.prompt.tags),
        completions=texts,
        tiers=check_ranking([[index[c] for c in tier] for tier in line.tiers], len(texts)),
        completion_models=[c.model_version for c in line.candidates],
        all_bad=line.all_bad,
    )
