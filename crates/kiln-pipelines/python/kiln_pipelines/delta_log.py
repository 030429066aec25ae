"""Reads a Delta table's transaction log (`_delta_log/NNN.json`) directly: the
latest version, the commit that carries a given `userMetadata`, and the files a
range of commits added. Tables on the local tree are read as files; tables on
Kiln's object-store root (`s3://…`) through pyarrow's S3 client, with the
store's settings Kiln gives the worker (`AWS_*`, as engines get them): Kiln's
key, or a lease on credentials scoped to the root fetched from Kiln."""

import json
import os
import re
import time

_COMMIT = re.compile(r"^(\d{20})\.json$")


def _log_dir(location):
    if location.startswith("file://"):
        location = location[len("file://"):]
    return os.path.join(location, "_delta_log")


_FS = {"fs": None, "until": 0.0}


def _container_credentials():
    """Kiln's engine credentials scoped to its root, when it leases them
    (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, the container-credentials protocol):
    (access key, secret key, session token, expiry in epoch seconds), else None."""
    uri = os.environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    if not uri:
        return None
    import datetime
    import urllib.request

    request = urllib.request.Request(uri, headers={"Authorization": os.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN", "")})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as answer:
        c = json.load(answer)
    expires = datetime.datetime.fromisoformat(c["Expiration"].replace("Z", "+00:00")).timestamp()
    return c["AccessKeyId"], c["SecretAccessKey"], c["Token"], expires


def _s3():
    """pyarrow's S3 client with the store's settings; with leased credentials,
    made again (with fresh ones) five minutes before they expire."""
    if _FS["fs"] is not None and time.time() < _FS["until"]:
        return _FS["fs"]
    from pyarrow import fs

    endpoint = os.environ.get("AWS_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
    options = {"region": os.environ.get("AWS_REGION", "us-east-1")}
    if endpoint:
        scheme, _, rest = endpoint.partition("://")
        options["endpoint_override"], options["scheme"] = (rest, scheme) if rest else (endpoint, "https")
    until = float("inf")
    leased = _container_credentials()
    if leased:
        options["access_key"], options["secret_key"], options["session_token"], expires = leased
        until = expires - 300
    else:
        for key, var in (("access_key", "AWS_ACCESS_KEY_ID"), ("secret_key", "AWS_SECRET_ACCESS_KEY"),
                         ("session_token", "AWS_SESSION_TOKEN")):  # fmt: skip
            if os.environ.get(var):
                options[key] = os.environ[var]
    if os.environ.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST") == "true":
        options["force_virtual_addressing"] = True
    _FS.update(fs=fs.S3FileSystem(**options), until=until)
    return _FS["fs"]


def _on_s3(location):
    return location.startswith("s3://") or location.startswith("s3a://")


def _s3_path(location):
    return location.split("://", 1)[1].rstrip("/")


def _names(location):
    if not _on_s3(location):
        return os.listdir(_log_dir(location))
    from pyarrow import fs

    infos = _s3().get_file_info(fs.FileSelector(_s3_path(location) + "/_delta_log", allow_not_found=True))
    return [i.base_name for i in infos if i.type == fs.FileType.File]


def _read(location, name):
    if not _on_s3(location):
        with open(os.path.join(_log_dir(location), name), encoding="utf-8") as f:
            return f.read()
    with _s3().open_input_stream(f"{_s3_path(location)}/_delta_log/{name}") as f:
        return f.read().decode("utf-8")


def versions(location):
    """Committed versions, ascending (empty when the table has no log)."""
    try:
        names = _names(location)
    except FileNotFoundError:
        return []
    found = sorted(int(m.group(1)) for m in map(_COMMIT.match, names) if m)
    return found


def latest_version(location):
    found = versions(location)
    return found[-1] if found else -1


def actions(location, version):
    text = _read(location, f"{version:020d}.json")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


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
    root = location[len("file://"):] if location.startswith("file://") else location.rstrip("/")
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
                path = f"{root}/{add['path']}" if _on_s3(location) else os.path.join(root, add["path"])
                out.append((path, add.get("partitionValues") or {}))
    return out
