"""An exclusive lock on a batch's output folder, so that two batches never mix their outputs.

The lock is a file, ``.geostyle-batch.lock``, in the output folder. It holds its owner's host,
pid, process start time and a random token, and it appears complete or not at all (a finished
file is hard-linked into place, which fails when a lock is there). A lock is stale when its
process is gone: on this host, no process has its pid, or the one that has it started at
another time (a reused pid). A stale lock is replaced; a lock from another host is never
guessed stale, and the refusal says how to remove it.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path

from .media import TEMP_MARK

LOCK_NAME = ".geostyle-batch.lock"
_UNREADABLE_GRACE_S = 10.0  # a lock file without readable contents: being written, or debris


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds, comparable between two calls), or None."""
    try:
        import psutil  # comes with dask.distributed, which batch needs

        return float(psutil.Process(pid).create_time())
    except ImportError:
        pass
    except Exception:  # no such process, or no right to look
        return None
    try:  # Linux without psutil: field 22 of /proc/PID/stat, in clock ticks since boot
        stat = Path(f"/proc/{pid}/stat").read_text()
        return float(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _pid_running(pid: int) -> bool:
    try:
        import psutil

        return bool(psutil.pid_exists(pid))
    except ImportError:
        pass
    if os.name == "nt":  # os.kill(pid, 0) would end the process there: assume it runs
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return True
    return True


def _owner() -> dict:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process_start": _process_start(os.getpid()),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "token": uuid.uuid4().hex,
    }


def _read(path: Path) -> dict | None:
    """The lock's owner; None when there is no lock; ``{}`` when its contents are unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError):
        return {}
    try:
        owner = json.loads(text)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _stale(path: Path, owner: dict) -> bool:
    if not owner:  # unreadable: only debris once it has been there a while
        try:
            return time.time() - path.stat().st_mtime > _UNREADABLE_GRACE_S
        except OSError:
            return False
    if owner.get("host") != socket.gethostname():
        return False
    pid = owner.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return True
    if pid == os.getpid():
        return owner.get("process_start") != _process_start(pid)
    if not _pid_running(pid):
        return True
    started, now = owner.get("process_start"), _process_start(pid)
    return started is not None and now is not None and abs(float(started) - now) > 1.0


def _busy_message(folder: Path, path: Path, owner: dict) -> str:
    who = (
        f"pid {owner.get('pid')} on {owner.get('host')}, since {owner.get('started')}"
        if owner
        else "its lock file is being written"
    )
    return (
        f"another batch is writing to {folder} ({who}): wait for it to finish or choose "
        f"another output folder (if no batch runs there any more, delete {path})."
    )


def check_free(folder) -> None:
    """``ValueError`` when a running batch holds ``folder``'s lock (a stale lock is fine)."""
    path = Path(folder).expanduser() / LOCK_NAME
    try:
        owner = _read(path)
    except (OSError, ValueError):  # not a folder at all: the planner says so
        return
    if owner is not None and not _stale(path, owner):
        raise ValueError(_busy_message(path.parent, path, owner))


class FolderLock:
    """``acquire()`` takes the folder's lock or raises ``ValueError`` (another batch holds it);
    ``release()`` removes it if it is still this one's."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.token: str | None = None

    def acquire(self) -> None:
        for _ in range(5):
            owner = _owner()
            if self._create(owner):
                self.token = owner["token"]
                return
            found = _read(self.path)
            if found is None:  # released meanwhile: try again
                continue
            if not _stale(self.path, found):
                raise ValueError(_busy_message(self.folder, self.path, found))
            self._break(found)
        raise ValueError(
            f"cannot take the lock of the output folder {self.folder}: other batches keep "
            f"taking it; wait for them, or delete {self.path} if none runs."
        )

    def release(self) -> None:
        if self.token is None:
            return
        owner = _read(self.path)
        if owner and owner.get("token") == self.token:
            self.path.unlink(missing_ok=True)
        self.token = None

    def _create(self, owner: dict) -> bool:
        """Put a complete lock file in place; False when a lock is there."""
        data = json.dumps(owner).encode()
        handle, temp = tempfile.mkstemp(prefix=f"{LOCK_NAME}.", suffix=TEMP_MARK, dir=self.folder)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            try:
                os.link(temp, self.path)
                return True
            except FileExistsError:
                return False
            except OSError:  # a file system without hard links: create exclusively instead
                try:
                    descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(descriptor, "wb") as file:
                    file.write(data)
                return True
        finally:
            Path(temp).unlink(missing_ok=True)

    def _break(self, stale: dict) -> None:
        """Remove the stale lock ``stale``, unless another batch replaced it meanwhile."""
        aside = self.folder / f"{LOCK_NAME}.stale-{uuid.uuid4().hex}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if _read(aside) != stale:  # a fresh lock taken since we looked: put it back
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        aside.unlink(missing_ok=True)
