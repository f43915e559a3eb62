"""Which process owns a tracked run, so the runs of killed commands do not stay RUNNING for ever.

A run is tagged with its process id and host name when it starts. A tracking command that starts later ends
the runs still RUNNING whose owner is gone from this host, marking them KILLED: a SIGKILL, an OOM kill or a
power cut gives a process no chance to end its own run. Runs owned by another host, or started without
these tags, are left alone: whether their owner lives cannot be seen from here.
"""

from __future__ import annotations

import os
import socket

from tierwise.registry.models import Registry

OWNER_PID = "tierwise.owner_pid"
OWNER_HOST = "tierwise.owner_host"
ENDED_BY = "tierwise.ended_by"
KILLED = "KILLED"


def owner_tags() -> dict[str, str]:
    """The tags that name this process as a run's owner."""
    return {OWNER_PID: str(os.getpid()), OWNER_HOST: socket.gethostname()}


def is_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (one we may not signal still exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_orphaned_runs(registry: Registry) -> list[str]:
    """Mark KILLED the RUNNING runs of this host whose owning process is gone; their run ids."""
    host = socket.gethostname()
    ended = []
    for run in registry.running_runs(host, OWNER_HOST):
        pid = run.data.tags.get(OWNER_PID, "")
        if not pid.isdigit() or is_alive(int(pid)):
            continue
        why = f"process {pid} on {host} was gone; ended by process {os.getpid()}"
        registry.end_run(run.info.run_id, KILLED, {ENDED_BY: why})
        ended.append(run.info.run_id)
    return ended
