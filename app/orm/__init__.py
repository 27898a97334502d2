"""ORM classes. "Model" means an ML model in this project; these are tables."""

from app.orm.annotation import (
    Assignment,
    AssignmentStatus,
    Candidate,
    ComparisonSet,
    ComparisonSetItem,
    Ranking,
    SetStatus,
    Skip,
)
from app.orm.base import Base
from app.orm.models import DataSnapshot, ModelKind, ModelStatus, ModelVersion, RewardScore
from app.orm.projects import DEFAULT_FLAG_TYPES, Project, ProjectMember
from app.orm.prompts import Prompt, PromptSet
from app.orm.rounds import ACTIVE_ROUND_STATUSES, Round, RoundKind, RoundStatus
from app.orm.users import ApiToken, LoginThrottle, Role, User, WebSession

__all__ = [
    "ACTIVE_ROUND_STATUSES",
    "DEFAULT_FLAG_TYPES",
    "ApiToken",
    "Assignment",
    "AssignmentStatus",
    "Base",
    "Candidate",
    "ComparisonSet",
    "ComparisonSetItem",
    "DataSnapshot",
    "LoginThrottle",
    "ModelKind",
    "ModelStatus",
    "ModelVersion",
    "Project",
    "ProjectMember",
    "Prompt",
    "PromptSet",
    "Ranking",
    "RewardScore",
    "Role",
    "Round",
    "RoundKind",
    "RoundStatus",
    "SetStatus",
    "Skip",
    "User",
    "WebSession",
]
