"""JSON API for data in and out: imports (multipart upload) and streamed JSONL exports. Admins only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, StreamingResponse

from app.deps import DB, AdminUser, ProjectParam, SettingsDep
from app.exports import service as exports
from app.exports.schemas import (
    ConversationalPreferencePair,
    ExportFormat,
    PreferencePair,
    RankingRecord,
)
from app.prompts import service as prompts
from app.prompts.schemas import ImportSummary
from app.prompts.uploads import REQUEST_BODY, ImportUpload, read_import_upload

router = APIRouter(tags=["data"])

NDJSON = "application/x-ndjson"


class JSONLines(JSONResponse):
    """For OpenAPI only: the response model is the schema of one line, under the JSON-lines media type.

    The endpoints return a StreamingResponse themselves, so FastAPI neither validates nor buffers it.
    """

    media_type = NDJSON


PromptSetFilter = Annotated[
    str | None, Query(max_length=200, description="only rankings of prompts in this prompt set")
]
SinceFilter = Annotated[
    str | None,
    Query(
        max_length=40, description="only rankings created at or after this ISO date/datetime (UTC if naive)"
    ),
]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "not logged in"},
    403: {"description": "admin role required"},
}


def _jsonl_response(what: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": f"{what}: one JSON object per line (the schema is one line)"}, **ERRORS}


@router.post(
    "/imports",
    response_model=ImportSummary,
    status_code=201,
    openapi_extra={"requestBody": REQUEST_BODY},
    responses={
        **ERRORS,
        413: {"description": "the upload is larger than RANKLOOP_MAX_UPLOAD_BYTES"},
        422: {"description": "malformed lines (each named by line number); nothing was imported"},
    },
    summary="Import prompts, preference pairs or ranked groups (all or nothing)",
)
def create_import(
    db: DB,
    settings: SettingsDep,
    user: AdminUser,
    project: ProjectParam,
    upload: Annotated[ImportUpload, Depends(read_import_upload)],
) -> ImportSummary:
    return prompts.import_file(
        db, settings, upload.data, upload.kind, upload.prompt_set, upload.filename, project_id=project
    )


@router.get(
    "/exports/rankings.jsonl",
    response_class=JSONLines,
    response_model=RankingRecord,
    responses=_jsonl_response("every live ranking"),
    summary="Export raw rankings as JSONL (streamed)",
)
def export_rankings(
    db: DB,
    user: AdminUser,
    project: ProjectParam,
    prompt_set: PromptSetFilter = None,
    since: SinceFilter = None,
) -> StreamingResponse:
    lines = exports.rankings_export(db, prompt_set, since, project_id=project)
    return StreamingResponse(
        lines, media_type=NDJSON, headers={"Content-Disposition": 'attachment; filename="rankings.jsonl"'}
    )


@router.get(
    "/exports/pairs.jsonl",
    response_class=JSONLines,
    response_model=PreferencePair | ConversationalPreferencePair,
    responses=_jsonl_response("TRL preference pairs, standard or conversational (`format`)"),
    summary="Export TRL preference pairs as JSONL (streamed)",
)
def export_pairs(
    db: DB,
    user: AdminUser,
    project: ProjectParam,
    prompt_set: PromptSetFilter = None,
    since: SinceFilter = None,
    format: Annotated[
        ExportFormat,
        Query(
            description="TRL's standard format (texts; a conversation's prompt flattened) or its "
            "conversational one (message lists: the prompt's turns, each reply one assistant message)"
        ),
    ] = ExportFormat.standard,
) -> StreamingResponse:
    lines = exports.pairs_export(db, prompt_set, since, format=format, project_id=project)
    return StreamingResponse(
        lines, media_type=NDJSON, headers={"Content-Disposition": 'attachment; filename="pairs.jsonl"'}
    )
