"""Chat texts within the platforms' limits, for both adapters and ``bot.styles``.

User input quoted back in a message is cut to a sane length (``echo``); a whole message is fitted to
a platform's limit (``fit``: a trailing list such as "Available styles: a, b, c." loses its last items
to "... and N more", anything else is cut with an ellipsis). Lengths are counted in UTF-16 code units,
the stricter of the ways the platforms count, so a fitted text fits on either. This module imports
neither discord nor telegram.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.i18n import DEFAULT, _

ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"
ECHO_LIMIT = 40  # user text (a style name, an option) quoted back in a message


def text_length(text: str) -> int:
    """Length in UTF-16 code units: a character outside the BMP (most emoji) counts twice."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def clip(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit``, else its start cut to fit with an ellipsis at the end."""
    if text_length(text) <= limit:
        return text
    budget, used, end = limit - 1, 0, 0
    for end, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > budget:
            break
    return text[:end].rstrip() + ELLIPSIS


def echo(text: str, limit: int = ECHO_LIMIT) -> str:
    """User text as quoted back in a reply: on one line, cut to ``limit`` with an ellipsis."""
    return clip(" ".join(str(text).split()), limit)


def clip_list(items: Sequence[str], limit: int, sep: str = ", ", locale: str = DEFAULT) -> str:
    """``items`` joined by ``sep`` in ``limit``; those that do not fit become "... and N more" (on a
    line of its own when ``sep`` is a line break; in ``locale``). "" when not even the first item fits
    with it."""
    joined = sep.join(items)
    if text_length(joined) <= limit:
        return joined
    joiner = "\n" if "\n" in sep else " "
    best, used = "", 0
    for kept in range(1, len(items)):
        used += text_length(items[kept - 1]) + (text_length(sep) if kept > 1 else 0)
        more = joiner + _("{ellipsis} and {count} more").format(ellipsis=ELLIPSIS,
                                                                count=len(items) - kept).render(locale)
        if used + text_length(more) > limit:
            break
        best = sep.join(items[:kept]) + more
    return best


def fit(text: str, limit: int, locale: str = DEFAULT) -> str:
    """A message within a platform's ``limit``: a trailing list ("...: a, b, c.") keeps the items
    that fit and ends "... and N more." (in ``locale``); any other text is cut with an ellipsis."""
    if text_length(text) <= limit:
        return text
    head, sep, tail = text.rpartition(": ")
    end = tail[-1] if tail.endswith((".", "\N{IDEOGRAPHIC FULL STOP}")) else ""
    items = tail[: len(tail) - len(end)].split(", ")
    if sep and len(items) > 1 and "\n" not in tail:
        shortened = clip_list(items, limit - text_length(head + sep + end), locale=locale)
        if shortened:
            return head + sep + shortened + end
    return clip(text, limit)
