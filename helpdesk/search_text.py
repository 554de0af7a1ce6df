"""How text becomes searchable: one preparation for documents and queries, and safe snippets.

PostgreSQL's `simple` configuration splits words on spaces and punctuation and lower-cases
them, with no stemming and no stop words, which suits mixed cs/ru/en/zh content. Chinese
and Japanese are written without spaces, so the parser would make one "word" of a whole
sentence; `prepare_text` therefore rewrites every CJK run as its overlapping character
bigrams ("我的订单没有到" → "我的 的订 订单 单没 没有 有到"). The same function prepares the
query, so the two-character word "订单" is the lexeme '订单' on both sides, and a longer
word is the phrase of its bigrams.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from django.contrib.postgres.search import SearchVectorField
from django.db.models import Func, Value
from django.db.models.fields import TextField
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# The longest query a search accepts (characters); beyond it the page says so.
MAX_QUERY_CHARS = 400
# Text indexed per document: a tsvector holds at most 1 MB, and positions stop at 16,383.
MAX_DOCUMENT_CHARS = 100_000

# Han (with extensions and compatibility ideographs) and kana: scripts written without spaces.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_CJK_RUN = re.compile(f"[{_CJK}]+")
_CJK_CHAR = re.compile(f"[{_CJK}]")
# CJK punctuation and symbols separate words like spaces do.
_CJK_PUNCT = re.compile("[\u3000-\u303f]")
_WORD = re.compile(r"\w+")


def _bigrams(run: str) -> list[str]:
    return [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]


def prepare_text(text: str) -> str:
    """The text as it is indexed and queried: NFKC, lower case, CJK runs as bigrams.

    NUL characters (PostgreSQL cannot hold them) become spaces. A run is padded with
    spaces, except after "-" or a quote so that web-search syntax ("-订单", "\\"订单\\"")
    keeps applying to it.
    """
    text = unicodedata.normalize("NFKC", text[: MAX_DOCUMENT_CHARS * 2].replace("\x00", " ")).lower()
    text = _CJK_PUNCT.sub(" ", text)

    def spaced(match: re.Match[str]) -> str:
        before = match.string[match.start() - 1] if match.start() else " "
        left = "" if before in ' -"' else " "
        return f"{left}{' '.join(_bigrams(match.group()))} "

    return _CJK_RUN.sub(spaced, text)[:MAX_DOCUMENT_CHARS]


class SearchDocument(Func):
    """`to_tsvector('simple', <prepared text>)`, computed by the database in the same INSERT.

    On SQLite it is NULL: the embedded mode searches the text itself (helpdesk/search.py).
    """

    output_field = SearchVectorField()

    def __init__(self, text: str) -> None:
        super().__init__(Value(prepare_text(text or ""), output_field=TextField()))

    def as_sql(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, list[Any]]:  # type: ignore[override]
        sql, params = compiler.compile(self.source_expressions[0])
        return f"to_tsvector('simple'::regconfig, ({sql})::text)", list(params)

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, list[Any]]:
        return "NULL", []


# --- the query side ---------------------------------------------------------------------------


def query_terms(q: str) -> list[str]:
    """The words of a query worth marking in a snippet (not the negated ones, not "or"), lower case."""
    terms: list[str] = []
    for chunk in unicodedata.normalize("NFKC", q.replace("\x00", " ")).lower().split():
        if chunk.startswith("-") or chunk == "or":
            continue
        for word in _WORD.findall(chunk):
            for part in _split_cjk(word):
                if _CJK_CHAR.match(part):
                    terms.append(part)
                    terms.extend(gram for gram in _bigrams(part) if gram != part)
                else:
                    terms.append(part)
    return list(dict.fromkeys(t for t in terms if t))[:32]


def _split_cjk(word: str) -> list[str]:
    """A word cut where it goes in and out of CJK script ("iphone订单" → "iphone", "订单")."""
    parts: list[str] = []
    last = 0
    for match in _CJK_RUN.finditer(word):
        parts.extend([word[last : match.start()], match.group()])
        last = match.end()
    parts.append(word[last:])
    return [p for p in parts if p]


def has_words(q: str) -> bool:
    """Whether a query has anything to search for (not only punctuation or operators)."""
    return bool(query_terms(q))


# --- snippets ---------------------------------------------------------------------------------

SNIPPET_CHARS = 220
_SNIPPET_LEAD = 60


def highlight(text: str, terms: list[str], *, whole_words: bool = True, width: int = SNIPPET_CHARS) -> SafeString:
    """A window of `text` around the first match of `terms`, HTML-escaped, matches in <mark>.

    Every piece of the text is escaped before the marks are put between the pieces, so the
    result is safe to render whatever the text holds. Without a match: the start of the text.
    """
    flat = " ".join(text.replace("\x00", " ").split())
    pattern = _terms_pattern(terms, whole_words=whole_words)
    first = pattern.search(flat) if pattern else None
    start = 0
    if first is not None and first.start() > _SNIPPET_LEAD:
        start = flat.rfind(" ", 0, first.start() - _SNIPPET_LEAD) + 1 or first.start() - _SNIPPET_LEAD
    window = flat[start : start + width]
    pieces: list[str] = ["…"] if start else []
    last = 0
    for match in pattern.finditer(window) if pattern else ():
        pieces.append(escape(window[last : match.start()]))
        pieces.append(f"<mark>{escape(match.group())}</mark>")
        last = match.end()
    pieces.append(escape(window[last:]))
    if start + width < len(flat):
        pieces.append("…")
    return mark_safe("".join(pieces))  # noqa: S308  (every piece above is escaped)


def _terms_pattern(terms: list[str], *, whole_words: bool) -> re.Pattern[str] | None:
    if not terms:
        return None
    alternatives = []
    for term in sorted(terms, key=len, reverse=True):
        escaped = re.escape(term)
        if whole_words and not _CJK_CHAR.match(term):
            escaped = rf"(?<!\w){escaped}(?!\w)"
        alternatives.append(escaped)
    return re.compile("|".join(alternatives), re.IGNORECASE)


# --- filling the stored documents of existing rows ---------------------------------------------

# (table, source column) of every stored search document; the column is `search_vector`.
DOCUMENT_TABLES = (("helpdesk_message", "text"), ("helpdesk_ticket", "subject"))


def reindex_table(connection: Any, table: str, column: str, *, only_missing: bool = False, batch: int = 2000) -> int:
    """Recompute `search_vector` from `column` for every row of `table` (PostgreSQL), by id batches.

    For rows written before the column existed or by a bulk load that did not fill it; one
    UPDATE per batch. Returns the number of rows written. Does nothing elsewhere.
    """
    if connection.vendor != "postgresql":
        return 0
    qn = connection.ops.quote_name
    missing = f" AND {qn('search_vector')} IS NULL" if only_missing else ""
    written, last = 0, 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, {qn(column)} FROM {qn(table)} WHERE id > %s{missing} ORDER BY id LIMIT %s",  # noqa: S608
                [last, batch],
            )
            rows = cursor.fetchall()
            if not rows:
                return written
            cursor.execute(
                f"UPDATE {qn(table)} AS t SET {qn('search_vector')} = to_tsvector('simple'::regconfig, v.doc)"  # noqa: S608
                " FROM unnest(%s::bigint[], %s::text[]) AS v(id, doc) WHERE t.id = v.id",
                [[row[0] for row in rows], [prepare_text(row[1] or "") for row in rows]],
            )
        written += len(rows)
        last = rows[-1][0]
