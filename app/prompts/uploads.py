"""Reading an import upload (multipart: `file`, `kind`, optional `prompt_set`) within the size limit.

FastAPI's own form parsing would spool any size of body to disk before the endpoint runs, so this
dependency parses the body itself: it refuses a declared Content-Length over the limit at once and counts
bytes while reading, so an oversize body (chunked, or lying about its length) stops at the limit with 413.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.deps import SettingsDep
from app.errors import Invalid, PayloadTooLarge
from app.prompts.schemas import ImportKind

# Room for the multipart boundaries, part headers and the small text fields around the file.
FORM_OVERHEAD = 64 * 1024

REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "kind"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "JSONL or CSV file"},
                    "kind": {"type": "string", "enum": [k.value for k in ImportKind]},
                    "prompt_set": {
                        "type": "string",
                        "maxLength": 200,
                        "description": 'prompt set to import into (created if missing; default "imported")',
                    },
                },
            }
        }
    },
}


@dataclass(frozen=True)
class ImportUpload:
    filename: str
    data: bytes
    kind: ImportKind
    prompt_set: str | None


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"upload too large: the limit is {limit:,} bytes ({limit / 1024 / 1024:.1f} MiB); "
        "split the file or raise RANKLOOP_MAX_UPLOAD_BYTES"
    )


async def _limited(request: Request, cap: int, limit: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > cap:
            raise _too_large(limit)
        yield chunk


async def _form(request: Request, limit: int) -> FormData:
    cap = limit + FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _too_large(limit)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise Invalid("send the import as multipart/form-data with the fields file, kind and prompt_set")
    parser = MultiPartParser(request.headers, _limited(request, cap, limit), max_files=1, max_fields=10)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise Invalid(f"malformed upload: {exc.message}") from exc
    except RuntimeError:
        # The CSRF check already read this form (a plain HTML post with a csrf_token field).
        return await request.form()


async def read_import_upload(request: Request, settings: SettingsDep) -> ImportUpload:
    """The uploaded file and its import options, refusing anything over max_upload_bytes with 413."""
    limit = settings.max_upload_bytes
    form = await _form(request, limit)
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile) or not file.filename:
            raise Invalid("choose a file to import (form field 'file')")
        if file.size is not None and file.size > limit:
            raise _too_large(limit)
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise _too_large(limit)
        kind_value = form.get("kind")
        try:
            kind = ImportKind(kind_value if isinstance(kind_value, str) else "")
        except ValueError:
            choices = ", ".join(k.value for k in ImportKind)
            raise Invalid(f"kind must be one of: {choices}") from None
        prompt_set = form.get("prompt_set")
        name = prompt_set.strip() if isinstance(prompt_set, str) else ""
        return ImportUpload(filename=file.filename, data=data, kind=kind, prompt_set=name or None)
    finally:
        await form.close()
