"""Build a release archive of a Node.js application on the controller (the app role's source step).

The source is a directory or a .tar.gz/.tgz (npm pack's package/ layout or the package at the top)
holding package.json and a lockfile, package-lock.json or npm-shrinkwrap.json.
The archive is deterministic (sorted names, no times, root-owned, modes normalised, node_modules
and .git left out), so its SHA-256 names the content: the release version is package.json's
version plus the first 12 hex digits of it, and an unchanged source is the same release.
Prints {"name", "version", "archive"}; the archive holds one top directory named after the version,
whose last member is .chajipoa-release.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
from pathlib import Path
from typing import Iterator

SKIPPED = {"node_modules", ".git"}
LOCKFILES = {"package-lock.json", "npm-shrinkwrap.json"}
COMPLETE = ".chajipoa-release"
VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]*")


class ReleaseError(Exception):
    pass


def directory_files(root: Path) -> Iterator[tuple[str, bytes, bool]]:
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if SKIPPED & set(parts) or not path.is_file() or path.is_symlink():
            continue
        yield "/".join(parts), path.read_bytes(), os.access(path, os.X_OK)


def tarball_files(source: Path) -> Iterator[tuple[str, bytes, bool]]:
    with tarfile.open(source, "r:*") as archive:
        members = [member for member in archive.getmembers() if member.isfile()]
        # tar's ./ prefix and an absolute name's / go; the leading dot of a dotfile (.npmrc) stays.
        names = [member.name.removeprefix("./").lstrip("/") for member in members]
        # npm pack puts everything under one directory (package/); strip a single top directory.
        tops = {name.split("/", 1)[0] for name in names}
        strip = len(tops) == 1 and all("/" in name for name in names)
        for member, name in sorted(zip(members, names), key=lambda pair: pair[1]):
            relative = name.split("/", 1)[1] if strip else name
            if SKIPPED & set(relative.split("/")) or ".." in relative.split("/"):
                continue
            data = archive.extractfile(member)
            yield relative, data.read() if data else b"", bool(member.mode & 0o111)


def build(source: Path, out_dir: Path) -> dict[str, str]:
    if source.is_dir():
        files = list(directory_files(source))
    elif source.is_file():
        files = list(tarball_files(source))
    else:
        raise ReleaseError(f"{source} is neither a directory nor a file (app_source)")
    contents = {entry[0]: entry[1] for entry in files}
    if "package.json" not in contents:
        raise ReleaseError(f"{source} has no package.json (app_source)")
    # npm ci installs from either lockfile; npm pack never packs package-lock.json, so a packed
    # package carries its tree as npm-shrinkwrap.json or not at all.
    if not LOCKFILES & contents.keys():
        raise ReleaseError(f"{source} has neither {' nor '.join(sorted(LOCKFILES))} (npm ci needs a lockfile; app_source)")
    try:
        package = json.loads(contents["package.json"])
        version = str(package["version"])
        name = str(package.get("name", ""))
    except (ValueError, KeyError, TypeError) as error:
        raise ReleaseError(f"{source}/package.json has no readable version: {error}") from error
    if not VERSION.fullmatch(version):
        raise ReleaseError(f"{source}/package.json's version {version!r} is not a plain version string")

    content = hashlib.sha256()
    for relative, data, executable in files:
        content.update(f"{relative}\0{int(executable)}\0{len(data)}\0".encode())
        content.update(data)
    release = f"{version}-{content.hexdigest()[:12]}"

    out_dir.mkdir(parents=True, exist_ok=True)
    archive_path = out_dir / f"{name.replace('/', '-').lstrip('@') or 'app'}-{release}.tar.gz"
    if not archive_path.exists():
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
            directories = sorted({"/".join(entry[0].split("/")[:depth]) for entry in files
                                  for depth in range(1, entry[0].count("/") + 1)})
            for entry in [""] + directories:
                info = tarfile.TarInfo(f"{release}/{entry}".rstrip("/"))
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            for relative, data, executable in files:
                info = tarfile.TarInfo(f"{release}/{relative}")
                info.size, info.mode = len(data), 0o755 if executable else 0o644
                archive.addfile(info, io.BytesIO(data))
            # Last, so that its presence means the whole release was unpacked (the role's creates=).
            marker = f"{release}\n".encode()
            info = tarfile.TarInfo(f"{release}/{COMPLETE}")
            info.size, info.mode = len(marker), 0o644
            archive.addfile(info, io.BytesIO(marker))
        partial = archive_path.with_suffix(".partial")
        with gzip.GzipFile(partial, "wb", mtime=0) as compressed:
            compressed.write(buffer.getvalue())
        partial.replace(archive_path)
    return {"name": name, "version": release, "archive": str(archive_path)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    try:
        print(json.dumps(build(args.source.resolve(), args.out_dir)))
    except (ReleaseError, OSError, tarfile.TarError) as error:
        print(f"Cannot build the release: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
