"""Reads a Delta table's transaction log (`_delta_log/NNN.json`) directly: the
latest version, the commit that carries a given `userMetadata`, and the files a
range of commits added."""

import json
import os
import re

_COMMIT = re.compile(r"^(\d{20})\.json$")


def _log_dir(location):
    if location.startswith("file://"):
        location = location[len("file://"):]
    return os.path.join(location, "_delta_log")


def versions(location):
    """Committed versions, ascending (empty when the table has no log)."""
    try:
        names = os.listdir(_log_dir(location))
    except FileNotFoundError:
        return []
    found = sorted(int(m.group(1)) for m in map(_COMMIT.match, names) if m)
    return found


def latest_version(location):
    found = versions(location)
    return found[-1] if found else -1


def actions(location, version):
    path = os.path.join(_log_dir(location), f"{version:020d}.json")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def commit_info(location, version):
    for action in actions(location, version):
        if "commitInfo" in action:
            return action["commitInfo"]
    return {}


def find_commit(location, user_metadata, newer_than=-1):
    """The version whose commitInfo.userMetadata equals `user_metadata`, or None."""
    for version in reversed(versions(location)):
        if version <= newer_than:
            break
        if commit_info(location, version).get("userMetadata") == user_metadata:
            return version
    return None


class NotAppendOnly(Exception):
    pass


def added_files(location, first, last):
    """(path, partitionValues) of the files commits first..=last added. A commit
    that removed data (an update, delete or overwrite) is not an append."""
    out = []
    root = location[len("file://"):] if location.startswith("file://") else location
    for version in range(first, last + 1):
        for action in actions(location, version):
            remove = action.get("remove")
            if remove and remove.get("dataChange", True):
                raise NotAppendOnly(
                    f"version {version} of the source table updated or deleted rows; "
                    "a streaming read needs an append-only source (run a full refresh)"
                )
            add = action.get("add")
            if add and add.get("dataChange", True):
                out.append((os.path.join(root, add["path"]), add.get("partitionValues") or {}))
    return out
