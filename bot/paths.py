"""Where ``avatarbot`` finds its files when no setting says: shared by the CLI and the bot's settings.

It imports nothing from the rest of ``bot``, so ``bot.cli`` and ``bot.config`` can both use it without
importing each other.
"""

from __future__ import annotations

import os
from pathlib import Path

# The weights shipped with the code: <repository>/weights, next to this package.
SHIPPED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


def default_weights_dir() -> Path:
    """``$WEIGHTS_DIR``, else ``./weights`` when it exists, else the weights shipped with the code."""
    env = os.environ.get("WEIGHTS_DIR")
    if env:
        return Path(env)
    local = Path("weights")
    if local.is_dir():
        return local
    return SHIPPED_WEIGHTS
