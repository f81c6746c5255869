# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""The host side of chajipoa.platform.files: bring many files and directories to their wanted
content, ownership and mode in one module call.

Kept apart from the module so that the decisions (what differs, in what order) can be unit-tested
without a host, and so that the action plugin can check its entries with the same rules."""
from __future__ import annotations

import base64
import errno
import os
import shutil
import stat
import tempfile

STATES = ("file", "directory", "link", "absent")


def entry_problem(entry: dict) -> str | None:
    """What is wrong with one entry, in words naming its dest, or None."""
    dest = entry.get("dest")
    if not dest or not os.path.isabs(dest):
        return f"dest must be an absolute path, got {dest!r}"
    state = entry.get("state") or "file"
    if state not in STATES:
        return f"{dest}: state must be one of {', '.join(STATES)}, got {state!r}"
    if state == "file" and entry.get("content_base64") is None:
        return f"{dest}: a file needs its content"
    if state != "file" and entry.get("content_base64") is not None:
        return f"{dest}: content given for state {state}"
    if (state == "link") != bool(entry.get("target")):
        return f"{dest}: a link needs its target, and only a link has one"
    validate = entry.get("validate")
    if validate and "%s" not in validate:
        return f"{dest}: validate must contain %s (the candidate file's path), got {validate!r}"
    return None


def order_problem(entries: list[dict]) -> str | None:
    """An entry listed before the directory entry that creates its directory: on a host that already has
    the directory the list works, on a new one it fails. Found from the list alone, so on every run."""
    for index, entry in enumerate(entries):
        for later in entries[index + 1:]:
            directory = str(later.get("dest") or "").rstrip("/")
            if later.get("state") == "directory" and directory and str(entry.get("dest") or "").startswith(directory + "/"):
                return f"{entry['dest']} is listed before {directory}, the directory entry it needs"
    return None


def wanted_bytes(entry: dict) -> bytes:
    return base64.b64decode(entry["content_base64"])


def current_bytes(path: str) -> bytes | None:
    """The file's content, or None when there is no regular file at path."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def content_differs(path: str, wanted: bytes) -> bool:
    return current_bytes(path) != wanted


def write_candidate(directory: str, content: bytes) -> str:
    """A temporary file beside the destination, so that the final rename stays on one filesystem."""
    handle, path = tempfile.mkstemp(prefix=".chajipoa-files-", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        os.unlink(path)
        raise
    return path


def inherit_attributes(candidate: str, dest: str, mode: bool = True, owner: bool = True, group: bool = True) -> None:
    """Gives the candidate the mode, owner and group (each when asked: those the entry does not set) of the
    file it replaces, or a new file's mode (0666 less the umask), as ansible.builtin.copy does: a candidate
    is created 0600 and owned by the module's user."""
    try:
        current = os.stat(dest)
    except FileNotFoundError:
        if mode:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(candidate, 0o666 & ~umask)
        return
    if mode:
        os.chmod(candidate, stat.S_IMODE(current.st_mode))
    if owner or group:
        try:
            os.chown(candidate, current.st_uid if owner else -1, current.st_gid if group else -1)
        except PermissionError as error:
            # Not root: the candidate stays the module user's, as with ansible.builtin.copy.
            if error.errno != errno.EPERM:
                raise


def link_to(path: str, target: str) -> None:
    """Points path at target in one rename, so that the link never goes missing in between."""
    candidate = f"{path}.chajipoa-files-link"
    if os.path.lexists(candidate):
        os.unlink(candidate)
    os.symlink(target, candidate)
    try:
        os.replace(candidate, path)
    except BaseException:
        os.unlink(candidate)
        raise


def remove(path: str) -> bool:
    """Removes a file, link or directory tree; says whether anything was there."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
        return True
    if os.path.isdir(path):
        shutil.rmtree(path)
        return True
    return False


def exists(path: str) -> bool:
    return os.path.lexists(path)


def text_for_diff(content: bytes | None) -> str:
    if content is None:
        return ""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return f"(binary, {len(content)} bytes)\n"


def snapshot(path: str, content: bytes | None = None) -> dict:
    """What path holds now, enough to put it back: its kind, bytes or link target, mode and owner.
    A directory keeps its attributes only; its contents are the entries' own business. `content`:
    the regular file's bytes when the caller has just read them, so they are not read twice."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return {"kind": "missing"}
    kept = {"mode": stat.S_IMODE(status.st_mode), "uid": status.st_uid, "gid": status.st_gid}
    if stat.S_ISLNK(status.st_mode):
        return {"kind": "link", "target": os.readlink(path), **kept}
    if stat.S_ISDIR(status.st_mode):
        return {"kind": "directory", **kept}
    if content is None:
        with open(path, "rb") as handle:
            content = handle.read()
    return {"kind": "file", "content": content, **kept}


def restore(path: str, kept: dict) -> None:
    """Puts back what snapshot() saw; a removed directory tree comes back empty."""
    kind = kept["kind"]
    if kind == "missing":
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        elif os.path.lexists(path):
            os.unlink(path)
        return
    if kind == "link":
        if os.path.lexists(path):
            remove(path)
        os.symlink(kept["target"], path)
        return
    if kind == "directory":
        os.makedirs(path, exist_ok=True)
    else:
        candidate = write_candidate(os.path.dirname(path), kept["content"])
        try:
            os.replace(candidate, path)
        except OSError as error:
            # A file the rename cannot replace (a bind mount) was written in place: so is its old content.
            os.unlink(candidate)
            if error.errno not in (errno.EBUSY, errno.EXDEV):
                raise
            with open(path, "wb") as handle:
                handle.write(kept["content"])
    os.chmod(path, kept["mode"])
    os.lchown(path, kept["uid"], kept["gid"])


def missing_directories(path: str) -> list[str]:
    """The directories os.makedirs(path) will create, outermost first."""
    missing = []
    while path and not os.path.lexists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return list(reversed(missing))
