"""The Traditional Chinese catalogue, made from the Simplified one: ``python -m bot.hant``.

Users whose Discord or Telegram is set to Traditional Chinese (``zh-TW``, ``zh-HK``, ``zh-hant``) read
``bot/locale/zh_Hant``. Nobody writes it by hand: it is the Simplified catalogue (``bot/locale/zh``)
converted by OpenCC with its ``s2twp`` configuration (Taiwan's characters and words: 檔案 for 文件,
預設 for 默认), so the two never say different things. After changing the Simplified catalogue, run
this again (``tests/test_i18n.py`` fails while the two differ). OpenCC is needed for this only, not
to run the bot: ``pip install -e ".[i18n]"``.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

from bot.i18n import catalogue_path

SOURCE, TARGET = "zh", "zh_Hant"
OPENCC_CONFIG = "s2twp"
HEADER = """\
# Traditional Chinese texts of the avatarbot chat bot, converted from the
# Simplified Chinese catalogue by OpenCC (s2twp): python -m bot.hant.
# Do not edit by hand. Distributed under the avatarbot project's licence (MIT)."""


def converted(source: Catalog, convert) -> Catalog:
    """``source`` with every translation (and the team's name) passed through ``convert``."""
    target = Catalog(locale=TARGET, domain=source.domain, header_comment=HEADER, project=source.project,
                     version=source.version, msgid_bugs_address=source.msgid_bugs_address,
                     creation_date=source.creation_date, revision_date=source.revision_date,
                     last_translator=source.last_translator, language_team="Traditional Chinese",
                     fuzzy=False)
    for message in source:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        strings = tuple(convert(s) for s in strings)
        target.add(message.id, strings if isinstance(message.string, tuple) else strings[0],
                   flags=message.flags, auto_comments=message.auto_comments,
                   user_comments=message.user_comments, context=message.context)
    return target


def render(catalog: Catalog) -> bytes:
    """The ``.po`` file's bytes, written as the other catalogues are (sorted, no locations)."""
    out = io.BytesIO()
    write_po(out, catalog, sort_output=True, omit_header=False, no_location=True, width=76)
    return out.getvalue()


def build(convert=None) -> bytes:
    """The Traditional catalogue's bytes from today's Simplified one (OpenCC unless ``convert`` given)."""
    if convert is None:
        import opencc

        convert = opencc.OpenCC(OPENCC_CONFIG).convert
    with open(catalogue_path(SOURCE), "rb") as po:
        source = read_po(po, locale="zh_Hans")
    return render(converted(source, convert))


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, compare) ``bot/locale/zh_Hant/LC_MESSAGES/avatarbot.po``."""
    parser = argparse.ArgumentParser(prog="python -m bot.hant", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from a fresh conversion")
    args = parser.parse_args(argv)
    try:
        data = build()
    except ImportError:
        print("python -m bot.hant: OpenCC is missing; pip install -e \".[i18n]\"", file=sys.stderr)
        return 2
    path: Path = catalogue_path(TARGET)
    if args.check:
        same = path.is_file() and path.read_bytes() == data
        print(f"{path}: {'up to date' if same else 'differs from the Simplified catalogue; run python -m bot.hant'}")
        return 0 if same else 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
