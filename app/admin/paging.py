"""Page numbers for the admin lists, and links that keep the list's filters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

MAX_PAGE = 100_000


@dataclass(frozen=True)
class Pager:
    page: int  # 1-based, already clamped to the pages that exist
    per_page: int
    total: int
    params: Mapping[str, str] = field(default_factory=dict)  # the list's filters, kept in every link

    @classmethod
    def of(cls, page: int, per_page: int, total: int, params: Mapping[str, str] | None = None) -> Pager:
        """A pager on `page`, clamped to 1..last page."""
        last = max(1, -(-total // per_page))
        return cls(min(max(1, page), last), per_page, total, dict(params or {}))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def first_item(self) -> int:
        return min(self.total, self.offset + 1)

    @property
    def last_item(self) -> int:
        return min(self.total, self.offset + self.per_page)

    def url(self, page: int) -> str:
        """Query string for another page of the same list."""
        query = {k: v for k, v in self.params.items() if v not in ("", None)}
        if page > 1:
            query["page"] = str(page)
        return "?" + urlencode(query) if query else "?"
