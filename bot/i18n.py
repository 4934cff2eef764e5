"""The bot's languages: English (the source and fallback), Simplified and Traditional Chinese, Japanese.

Texts users see are marked ``_("Unknown style {name}.")`` (or ``ngettext(singular, plural, n)``) and
stay lazy ``Text`` values until an adapter, which knows the user's locale, renders them:
``text.format(name=...).render("ja")``. A ``Text`` may carry other ``Text`` values as parameters
(a title inside a caption, a reason inside a refusal); they render in the same language.
``str(text)`` is the English text.

The catalogues are ``bot/locale/<lang>/LC_MESSAGES/avatarbot.po``, compiled in memory with babel at
first use (no ``.mo`` files to go stale); ``pybabel extract -F babel.cfg`` regenerates the template
(README.md, "Languages"). Locales from either platform are normalised here: Discord's ``zh-CN``,
``zh-TW``, ``ja``, ``en-US``; Telegram's ``language_code`` such as ``zh-hans``, ``zh-hant``, ``zh``,
``ja``, ``en``. Traditional Chinese (``zh-TW``, ``zh-HK``, ``zh-MO``, ``zh-Hant``) has a catalogue made
from the Simplified one (``bot.hant``); anything else gets English. This module imports neither
discord nor telegram.
"""

from __future__ import annotations

import gettext as _gettext
import io
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from training.errors import Message

log = logging.getLogger(__name__)

DOMAIN = "avatarbot"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DEFAULT = "en"
LANGUAGES = ("en", "zh", "zh_Hant", "ja")  # "en" is the source: it has no catalogue
TRADITIONAL = {"hant", "tw", "hk", "mo"}  # a script or region that writes Chinese in Traditional characters


def normalize_locale(code: str | None) -> str:
    """One of ``LANGUAGES`` for a platform's locale code: ``zh-CN``, ``zh-hans`` and ``zh`` -> ``zh``;
    ``zh-TW``, ``zh-HK``, ``zh-hant`` (and ``zh_Hant`` itself) -> ``zh_Hant``; ``ja``, ``ja-JP`` -> ``ja``;
    anything else (``en-US``, ``ko``, None) -> ``en``."""
    language, *rest = str(code or "").strip().lower().replace("_", "-").split("-")
    if language == "zh":
        return "zh_Hant" if "hans" not in rest and TRADITIONAL & set(rest) else "zh"
    return language if language in LANGUAGES else DEFAULT


def catalogue_path(locale: str) -> Path:
    """Where a language's ``.po`` file lives."""
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=None)
def translations(locale: str) -> _gettext.NullTranslations:
    """The gettext translations of a locale (any code ``normalize_locale`` takes): its ``.po`` file
    compiled in memory on first use; English, and a missing catalogue, translate nothing."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import Translations

    language = normalize_locale(locale)
    if language == DEFAULT:
        return _gettext.NullTranslations()
    path = catalogue_path(language)
    try:
        with open(path, "rb") as po:
            catalog = read_po(po, locale=language, domain=DOMAIN)
    except OSError as exc:
        log.error("no %s catalogue (%s): answering in English", language, exc)
        return _gettext.NullTranslations()
    mo = io.BytesIO()
    write_mo(mo, catalog)  # fuzzy entries are left out, as msgfmt does
    mo.seek(0)
    return Translations(mo, domain=DOMAIN)


def gettext(locale: str, message: str) -> str:
    """``message`` translated into ``locale`` (itself when the catalogue has no translation)."""
    return translations(locale).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> "Text":
    """A lazy message with a plural form chosen by ``n`` in the language it is rendered in."""
    return Text(singular, plural, n)


def _(message: str) -> "Text":
    """Mark ``message`` for translation; it is rendered later in the user's language."""
    return Text(message)


@dataclass(frozen=True)
class Text:
    """A message to translate when its language is known, with its named parameters."""

    message: str
    plural: str | None = None
    n: int = 1
    params: tuple[tuple[str, Any], ...] = ()

    def format(self, **params: Any) -> "Text":
        """The message with (more) named parameters for its ``{placeholders}``."""
        return Text(self.message, self.plural, self.n, self.params + tuple(params.items()))

    def render(self, locale: str = DEFAULT) -> str:
        """The message in ``locale``, its parameters filled in (``Text`` parameters rendered too)."""
        t = translations(locale)
        template = t.gettext(self.message) if self.plural is None else t.ngettext(self.message, self.plural, self.n)
        if not self.params:
            return template
        return template.format(**{k: render(v, locale) for k, v in self.params})

    def __str__(self) -> str:
        return self.render(DEFAULT)


@dataclass(frozen=True)
class Localized:
    """A text its author wrote in several languages (a built-in style's description), by language code;
    ``fallback`` where a language is missing."""

    texts: tuple[tuple[str, str], ...]
    fallback: str

    def render(self, locale: str = DEFAULT) -> str:
        """The text in ``locale``'s language, else in its base language (``zh`` for ``zh_Hant``), else
        the fallback."""
        language = normalize_locale(locale)
        texts = dict(self.texts)
        return texts.get(language) or texts.get(language.split("_")[0]) or self.fallback

    def __str__(self) -> str:
        return self.render(DEFAULT)


def render(value: Any, locale: str = DEFAULT) -> Any:
    """A ``Text``, a ``Localized`` or a training-side ``Message`` rendered in ``locale``; a list of them
    as the language writes a list ("a, b and c", "a、b和c"); any other value as it is."""
    if isinstance(value, (Text, Localized)):
        return value.render(locale)
    if isinstance(value, Message):
        return text_of(value).render(locale)
    if isinstance(value, (list, tuple)):
        from babel.lists import format_list

        return format_list([str(render(v, locale)) for v in value], locale=normalize_locale(locale))
    return value


def text_of(message: Message) -> Text:
    """A ``training.errors.Message`` (a template marked with ``N_`` on the training side) as a ``Text``."""
    return Text(message.template).format(**message.params)
