"""The chat widget's front-end assets (static/widget/, templates/widget/): size budgets, no
third-party hosts, no inline script, and every UI string in every language (docs/chat.md)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "static" / "widget"
TEMPLATES = ROOT / "templates" / "widget"
ASSETS = ("loader.js", "app.js", "app.css")
LANGUAGES = {"en", "zh-Hans", "cs", "ru"}

# gzip -9 sizes in bytes: the loader must stay "a few KB", the whole widget under 50 KB.
LOADER_BUDGET = 6 * 1024
WIDGET_BUDGET = 50 * 1024

# Only these hosts may appear in a URL literal: XML namespaces (not fetched) and placeholders.
ALLOWED_URL = re.compile(r"https?://(www\.w3\.org/2000/svg)")


def gzip_size(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))


def strings_table(path: Path) -> dict[str, dict[str, object]]:
    """The `/*i18n*/ {...} /*end-i18n*/` JSON object of a script."""
    match = re.search(r"/\*i18n\*/(.*?)/\*end-i18n\*/", path.read_text(), re.S)
    assert match, f"{path.name} has no /*i18n*/ … /*end-i18n*/ strings table"
    table = json.loads(match.group(1))
    assert isinstance(table, dict)
    return table


def test_sizes_are_within_budget() -> None:
    # given
    sizes = {name: (len((STATIC / name).read_bytes()), gzip_size(STATIC / name)) for name in ASSETS}

    # when
    total = sum(gz for _, gz in sizes.values())
    for name, (raw, gz) in sizes.items():
        print(f"{name:10} {raw:7} B raw {gz:7} B gzip")
    print(f"{'total':10} {sum(r for r, _ in sizes.values()):7} B raw {total:7} B gzip")

    # then
    assert sizes["loader.js"][1] <= LOADER_BUDGET, sizes
    assert total <= WIDGET_BUDGET, sizes


@pytest.mark.parametrize("name", ASSETS)
def test_no_third_party_hosts(name: str) -> None:
    # given
    text = (STATIC / name).read_text()

    # when
    urls = [m.group(0) for m in re.finditer(r"https?://[^\s\"'()<>]+", text) if not ALLOWED_URL.match(m.group(0))]

    # then
    assert urls == []
    assert "@import" not in text
    assert "eval(" not in text
    assert "new Function" not in text


@pytest.mark.parametrize("name", ["loader.js", "app.js"])
def test_every_string_exists_in_every_language(name: str) -> None:
    # given
    table = strings_table(STATIC / name)

    # when
    keys = {lang: set(strings) for lang, strings in table.items()}

    # then
    assert set(table) >= LANGUAGES
    for lang in LANGUAGES:
        assert keys[lang] == keys["en"], (lang, keys["en"] ^ keys[lang])
        for key, value in table[lang].items():
            forms = value.values() if isinstance(value, dict) else [value]
            assert all(isinstance(f, str) and f.strip() for f in forms), (lang, key)
            if isinstance(value, dict):
                assert "other" in value, (lang, key)


def test_loader_is_ascii() -> None:
    # given: the host page's charset (not ours) decides how loader.js is decoded
    raw = (STATIC / "loader.js").read_bytes()

    # then
    assert raw.isascii()


def test_app_never_parses_html() -> None:
    # given
    text = (STATIC / "app.js").read_text() + (STATIC / "loader.js").read_text()

    # then: visitor and agent text only ever goes through textContent
    assert "innerHTML" not in text
    assert "outerHTML" not in text
    assert "insertAdjacentHTML" not in text
    assert "document.write" not in text


def test_templates_have_no_inline_script_or_style() -> None:
    # given
    frame = (TEMPLATES / "frame.html").read_text()
    page = (TEMPLATES / "conversation.html").read_text()

    # then: the page's CSP is default-src 'self' (no inline script); config comes from json_script
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", frame) == []
    assert "<style" not in frame
    assert "style=" not in frame
    assert 'json_script:"sb-config"' in frame
    assert "{% static 'widget/app.js' %}" in frame
    assert "{% static 'widget/app.css' %}" in frame
    assert '{% extends "widget/frame.html" %}' in page
