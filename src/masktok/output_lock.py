"""An output folder owned by one run at a time: a lock file that names its holder.

    with OutputLock(out, command="tokenize-dataset"):
        ...  # write into out/

    lock = hold_run_output(out, command="masktok train tokenizer")  # one lock per torchrun rank

The lock is ``<folder>/_lock.json`` (or ``_lock.<part>.json``, e.g. one per rank of a multi-process
run), created atomically, holding the holder's host, pid, process start and command. A second run
that finds it stops with :class:`~masktok.errors.OutputInUseError` naming the holder. A lock left
by a run that died — same host, and its pid no longer runs (or now belongs to a younger process) —
is stale: it is removed with a warning and taken over. A lock from another host cannot be checked
from here; the error says which file to delete once that run is gone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from masktok.errors import OutputInUseError

log = logging.getLogger(__name__)

LOCK_PREFIX = "_lock"


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock: written into the lock file as JSON."""

    host: str
    pid: int
    started: str  # when the lock was taken, ISO 8601 UTC
    command: str
    token: str  # tells this run's lock from a later one at the same path
    process_start: int | None = None  # /proc/<pid>/stat start time (Linux): guards against pid reuse
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started} ({self.command})"


def lock_path(folder: str | Path, part: str = "") -> Path:
    """The lock file of ``folder`` (``part`` tells the locks of one run's processes apart)."""
    return Path(folder) / (f"{LOCK_PREFIX}.{part}.json" if part else f"{LOCK_PREFIX}.json")


def _process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces: count fields after its closing parenthesis
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def _running(holder: LockHolder) -> bool | None:
    """Whether the holder still runs: True / False on this host, None when it cannot be told."""
    if holder.host != socket.gethostname():
        return None
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user: it exists
        pass
    if holder.process_start is not None:
        now = _process_start(holder.pid)
        if now is not None and now != holder.process_start:
            return False  # the pid was reused by a process started later
    return True


def read_holder(path: Path) -> LockHolder | None:
    """The holder recorded in a lock file; None when the file is gone or unreadable (half-written)."""
    try:
        data = json.loads(path.read_text())
        return LockHolder(**data)
    except (OSError, ValueError, TypeError):
        return None


def live_holders(folder: str | Path) -> dict[Path, LockHolder]:
    """Every lock of ``folder`` whose holder runs (or may run, on another host)."""
    found = {}
    for path in sorted(Path(folder).glob(f"{LOCK_PREFIX}*.json")):
        holder = read_holder(path)
        if holder is not None and _running(holder) is not False:
            found[path] = holder
    return found


class OutputLock:
    """Exclusive ownership of an output folder (see the module docstring).

    Args:
        folder: the output folder (created if missing).
        part: names one lock among several of the same run (e.g. ``"rank3"``); "" for the only one.
        command: what the holder is doing, shown to a second run (default: the command line).
        info: extra JSON fields recorded in the lock (e.g. rank and world size).
    """

    def __init__(self, folder: str | Path, *, part: str = "", command: str | None = None,
                 info: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.path = lock_path(self.folder, part)
        self.command = command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        self.info = dict(info or {})
        self.holder: LockHolder | None = None

    def acquire(self) -> "OutputLock":
        """Take the lock, replacing a stale one; OutputInUseError when a live run holds it."""
        if self.holder is not None:
            raise RuntimeError(f"{self.path} is already held by this OutputLock")
        self.folder.mkdir(parents=True, exist_ok=True)
        me = LockHolder(host=socket.gethostname(), pid=os.getpid(),
                        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), command=self.command,
                        token=uuid.uuid4().hex, process_start=_process_start(os.getpid()), info=self.info)
        for _ in range(3):  # a stale lock removed by a concurrent run too: try again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._clear_stale()
                continue
            with os.fdopen(fd, "w") as file:
                json.dump(asdict(me), file, indent=2)
            self.holder = me
            return self
        raise OutputInUseError(f"{self.folder}: could not take the lock {self.path.name} (other runs keep "
                               "taking it)")

    def _clear_stale(self) -> None:
        holder = read_holder(self.path)
        if holder is None:
            # Being written this instant, or garbage: give a writer a moment, then judge again.
            time.sleep(0.2)
            holder = read_holder(self.path)
            if holder is None:
                if self.path.exists():
                    raise OutputInUseError(f"{self.folder} is locked by {self.path}, which is not a masktok "
                                           "lock file; delete it if no run is writing into this folder")
                return
        running = _running(holder)
        if running is False:
            again = read_holder(self.path)
            if again is not None and again.token == holder.token:  # not replaced meanwhile
                log.warning("%s: removing the stale lock of a run that is no longer running (%s)",
                            self.folder, holder.describe())
                self.path.unlink(missing_ok=True)
            return
        where = ("" if running else f" (on another host: delete {self.path} once that run has stopped)")
        raise OutputInUseError(f"{self.folder} is being written by another run: {holder.describe()}{where}; "
                               "wait for it to finish or choose another output folder")

    def release(self) -> None:
        """Give the lock back (only if the file still is this run's)."""
        if self.holder is None:
            return
        current = read_holder(self.path)
        if current is not None and current.token == self.holder.token:
            self.path.unlink(missing_ok=True)
        self.holder = None

    def __enter__(self) -> "OutputLock":
        """Take the lock, or keep holding it when it is already taken (``hold_run_output``)."""
        return self if self.holder is not None else self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def hold_run_output(folder: str | Path, *, rank: int | None = None, world_size: int | None = None,
                    command: str | None = None) -> OutputLock:
    """This process's lock on ``folder`` for a run of ``world_size`` processes (default: torchrun's
    ``RANK`` / ``WORLD_SIZE``, else 0 of 1): each rank holds ``_lock.rank<r>.json``, and any other
    live lock must belong to this run's other ranks (the same world size). Every process checks
    after locking, so two runs never both go on; the second gets :class:`OutputInUseError`.
    Release with ``lock.release()`` (or use it as a context manager)."""
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    lock = OutputLock(folder, part=f"rank{rank}", command=command,
                      info={"rank": rank, "world_size": world_size}).acquire()
    others = {path: holder for path, holder in live_holders(lock.folder).items()
              if path != lock.path and holder.info.get("world_size") != world_size}
    if others:
        lock.release()
        path, holder = next(iter(others.items()))
        raise OutputInUseError(f"{lock.folder} is being written by another run: {holder.describe()} "
                               f"({path.name}, {holder.info.get('world_size')} process(es)); wait for it "
                               "to finish or choose another output folder")
    return lock
