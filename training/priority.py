"""Background processes (a training worker, an upload check) yield the CPU to the bot's replies.

Imports nothing but ``os``: the upload checker calls it before it imports anything heavy, so that even
its imports run at the low priority.
"""

from __future__ import annotations

import os

AUTOGROUP = "/proc/self/autogroup"


def run_in_background(nice: int) -> list[str]:
    """Lower this process to the background, as far as the platform allows; returns what could not be
    changed (empty when all went through), for the caller to log.

    - Its nice value rises to ``nice`` (never falls: that needs privileges).
    - It takes the ``SCHED_IDLE`` policy, inherited by the threads it starts later: a reply's thread
      that wakes up takes the core at once instead of waiting for the end of a time slice.
    - If it leads a session of its own (``start_new_session=True``), that session's autogroup gets
      ``nice`` too. Linux gives each session's autogroup a share of the CPU by the group's nice value,
      whatever its processes' own: a background process in a session of its own at the group's default
      nice 0 would take as much CPU as the whole bot. A process in someone else's session (run by hand
      from a shell) leaves that session's priority alone.
    """
    failed = []
    # The policy comes last: whoever sees SCHED_IDLE on this process knows the rest is done.
    if hasattr(os, "getsid") and os.getsid(0) == os.getpid():
        try:
            with open(AUTOGROUP, "w") as group:  # Linux with CONFIG_SCHED_AUTOGROUP
                group.write(f"{nice}\n")
        except OSError as exc:  # no autogroups, or not permitted
            failed.append(f"session priority: {exc}")
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) < nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    except (AttributeError, OSError) as exc:  # not a Unix, or not permitted
        failed.append(f"nice value: {exc}")
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError) as exc:  # not Linux
        failed.append(f"scheduling policy: {exc}")
    return failed
