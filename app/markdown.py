"""Model text (prompts, candidates) as safe HTML: Markdown rendered by markdown-it-py, raw HTML never.

Models answer in Markdown (lists, code fences, tables); shown literally it is hard to read and code sits
in a proportional font. The text is untrusted, so:
- raw HTML is off (`html: False`): `<script>` and friends come out escaped, as visible text;
- only absolute web and mail links become links (markdown-it's own check would still let relative
  ones through, which would point into this app); anything else, `javascript:` included, stays text;
- links open in a new tab (a click never loses a half-done ranking) with `rel="noopener nofollow
  noreferrer"`, so the target learns nothing and gets no handle on the page;
- images become links: an `<img>` would fetch from wherever the model pointed, as soon as the page loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token
from markupsafe import Markup

LINK_REL = "noopener nofollow noreferrer"
LINK_SCHEMES = ("http://", "https://", "mailto:")


def _web_link(url: str) -> bool:
    return url.strip().lower().startswith(LINK_SCHEMES)


def _link_open(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    tokens[idx].attrSet("rel", LINK_REL)
    tokens[idx].attrSet("target", "_blank")
    return str(self.renderToken(tokens, idx, options, env))


def _image(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env) or "image"
    src = escapeHtml(str(token.attrGet("src") or ""))
    return f'<a href="{src}" rel="{LINK_REL}" target="_blank">[image: {escapeHtml(alt)}]</a>'


def _parser() -> MarkdownIt:
    # `breaks`: models end lines with a single newline and mean it; CommonMark would join such lines.
    md = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.validateLink = _web_link  # type: ignore[method-assign]
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("image", _image)
    return md


_MD = _parser()


def render_markdown(text: str | None) -> Markup:
    """`text` as HTML that is safe to put in a page as it is (a Jinja filter: `{{ text | markdown }}`)."""
    # Safe by construction: html is off, so every tag in the output is one markdown-it made.
    return Markup(_MD.render(text or ""))  # noqa: S704
