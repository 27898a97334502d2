"""Model text rendered as Markdown: formatting kept, and nothing in it can become markup or a live link."""

from __future__ import annotations

import re

import pytest

from app.markdown import LINK_REL, render_markdown


def test_markdown_formatting_is_rendered():
    html = render_markdown(
        "**bold** and *it*\nnext line\n\n- one\n- two\n\n"
        "```python\ndef f():\n    return 1\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n~~gone~~"
    )
    assert "<strong>bold</strong>" in html and "<em>it</em>" in html
    assert "<br />\nnext line" in html  # a model's single newline is a line break
    assert "<ul>\n<li>one</li>" in html
    assert '<pre><code class="language-python">def f():\n    return 1\n</code></pre>' in html
    assert "<table>" in html and "<th>a</th>" in html and "<td>2</td>" in html
    assert "<s>gone</s>" in html


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        '<div onclick="alert(1)">x</div>',
        "<details open ontoggle=alert(1)>",
        "para\n\n<iframe srcdoc='<script>alert(1)</script>'></iframe>",
        "`code` <svg onload=alert(1)>",
        "<!-- comment --><style>body{display:none}</style>",
    ],
)
def test_raw_html_comes_out_as_escaped_text(text):
    html = str(render_markdown(text))
    # Every tag in the output is one Markdown made; the model's own are escaped.
    assert set(re.findall(r"<(/?\w+)", html)) <= {"p", "/p", "code", "/code", "br"}
    assert "&lt;" in html


@pytest.mark.parametrize(
    "text",
    [
        "[click](javascript:alert(1))",
        "[click](JAVASCRIPT:alert(1))",
        "[click](vbscript:msgbox(1))",
        "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "<javascript:alert(1)>",
        "[click](file:///etc/passwd)",
        "[click](/admin/users) ![img](x.png) [c](//evil.example/x)",
    ],
)
def test_dangerous_link_targets_stay_text(text):
    html = str(render_markdown(text))
    assert "<a " not in html and "href" not in html


def test_links_open_apart_with_noopener_nofollow():
    html = str(
        render_markdown('[docs](https://example.org/a?b=1&c="2") <https://example.org> <mailto:a@b.org>')
    )
    links = re.findall(r"<a [^>]*>", html)
    assert len(links) == 3
    for link in links:
        assert f'rel="{LINK_REL}"' in link and 'target="_blank"' in link
    assert 'href="https://example.org/a?b=1&amp;c=%222%22"' in html


def test_images_become_links_so_nothing_loads_with_the_page():
    html = str(
        render_markdown('![a <b>cat</b>](https://tracker.example/p.png "t") ![x](x" onerror="alert(1))')
    )
    assert "<img" not in html
    assert (
        f'<a href="https://tracker.example/p.png" rel="{LINK_REL}" target="_blank">[image: a &lt;b&gt;cat'
        in html
    )
    # A quote in the URL cannot open a new attribute: every link carries exactly these three.
    for attrs in re.findall(r"<a ([^>]*)>", html):
        assert re.findall(r'(\w+)="', attrs) == ["href", "rel", "target"]


def test_empty_text_renders_empty():
    assert render_markdown("") == "" and render_markdown(None) == ""
