# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""The host side of chajipoa.platform.files: bring many files and directories to their wanted
content, ownership and mode in one module call.

Kept apart from the module so that the decisions (what differs, in what order) can be unit-tested
without a host, and so that the action plugin can check its entries with the same rules."""
from __future__ import annotations

import base64
import os
import shutil
import tempfile

STATES = ("file", "directory", "absent")


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
    validate = entry.get("validate")
    if validate and "%s" not in validate:
        return f"{dest}: validate must contain %s (the candidate file's path), got {validate!r}"
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
