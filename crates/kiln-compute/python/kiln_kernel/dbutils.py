"""The `dbutils` object of a context: `fs` over the workspace's DBFS root and
`notebook.exit`. Paths `dbfs:/x` and `/x` name `<dbfs root>/x`; `file:/x` names
the local file `/x`. No DBFS path escapes the root."""

import base64
import json
import os
import posixpath
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections import namedtuple

FileInfo = namedtuple("FileInfo", ["path", "name", "size", "modificationTime"])
MountInfo = namedtuple("MountInfo", ["mountPoint", "source", "encryptionType"])
SecretMetadata = namedtuple("SecretMetadata", ["key"])
SecretScope = namedtuple("SecretScope", ["name"])


def external_locations():
    """Where EXTERNAL volumes' real directories may be (set by Kiln)."""
    value = os.environ.get("KILN_EXTERNAL_LOCATIONS", "")
    return [os.path.realpath(p) for p in value.split(os.pathsep) if p]


def reachable(local, root):
    """A resolved path user code may name by a DBFS or `/Volumes` path: inside
    DBFS, or inside an external location (an EXTERNAL volume's link leads
    there). Anything else — a planted link to /etc — is refused."""
    for base in [root] + external_locations():
        if local == base or local.startswith(base.rstrip(os.sep) + os.sep):
            return True
    return False


class NotebookExit(Exception):
    """Raised by dbutils.notebook.exit: ends the command with its value as the result."""

    def __init__(self, value):
        super().__init__(value)
        self.value = value


class _Fs:
    def __init__(self, root: str):
        self._root = os.path.realpath(root)

    def _local(self, path: str) -> str:
        if path.startswith("file:"):
            return "/" + path[len("file:"):].lstrip("/")
        if path.startswith("dbfs:"):
            path = path[len("dbfs:"):]
        if not path.startswith("/"):
            raise ValueError(f"Path must be absolute: {path}")
        local = os.path.realpath(os.path.join(self._root, path.lstrip("/")))
        if not reachable(local, self._root):
            raise PermissionError(f"Path escapes DBFS: {path}")
        return local

    @staticmethod
    def _shown(path: str) -> str:
        """The name a listing gives `path`: `file:/x` stays local, anything
        else is `dbfs:/x` — by the path the user wrote, so an EXTERNAL
        volume lists under `/Volumes/…`, not where its data really is."""
        if path.startswith("file:"):
            return "file:" + posixpath.normpath("/" + path[len("file:"):].lstrip("/"))
        path = path[len("dbfs:"):] if path.startswith("dbfs:") else path
        shown = posixpath.normpath("/" + path.lstrip("/"))
        return "dbfs:" + ("/" if shown == "/" else shown)

    def ls(self, path: str):
        local = self._local(path)
        if not os.path.exists(local):
            raise FileNotFoundError(f"{path} does not exist")
        shown = self._shown(path)
        if os.path.isfile(local):
            entries = [(local, shown)]
        else:
            base = shown.rstrip("/")
            entries = [(os.path.join(local, n), f"{base}/{n}") for n in sorted(os.listdir(local))]
        infos = []
        for entry, entry_shown in entries:
            is_dir = os.path.isdir(entry)
            name = os.path.basename(entry_shown) + ("/" if is_dir else "")
            dbfs = entry_shown + ("/" if is_dir else "")
            stat = os.stat(entry)
            infos.append(FileInfo(dbfs, name, 0 if is_dir else stat.st_size, int(stat.st_mtime * 1000)))
        return infos

    def mounts(self):
        """What a Databricks workspace shows: the DBFS root, Unity Catalog
        volumes and the sample datasets, all served from Kiln's DBFS root."""
        return [
            MountInfo("/", "DatabricksRoot", ""),
            MountInfo("/Volumes", "UnityCatalogVolumes", ""),
            MountInfo("/databricks-datasets", "databricks-datasets", ""),
        ]

    def refreshMounts(self) -> bool:
        return True

    def help(self, method: str = ""):
        print(
            "dbutils.fs: ls(path), mkdirs(path), put(file, contents, overwrite), head(file, maxBytes), "
            "cp(from, to, recurse), mv(from, to, recurse), rm(path, recurse), mounts(), refreshMounts(). "
            "Paths: dbfs:/x or /x (DBFS), /Volumes/<catalog>/<schema>/<volume>/x, file:/x (local)."
        )

    def mkdirs(self, path: str) -> bool:
        os.makedirs(self._local(path), exist_ok=True)
        return True

    def put(self, file: str, contents: str, overwrite: bool = False) -> bool:
        local = self._local(file)
        if os.path.exists(local) and not overwrite:
            raise FileExistsError(f"{file} already exists; pass overwrite=True")
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "w", encoding="utf-8") as f:
            f.write(contents)
        return True

    def head(self, file: str, maxBytes: int = 65536) -> str:
        with open(self._local(file), "rb") as f:
            return f.read(maxBytes).decode("utf-8", errors="replace")

    def cp(self, from_: str, to: str, recurse: bool = False) -> bool:
        src, dst = self._local(from_), self._local(to)
        if os.path.isdir(src):
            if not recurse:
                raise IsADirectoryError(f"{from_} is a directory; pass recurse=True")
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst)
        return True

    def mv(self, from_: str, to: str, recurse: bool = False) -> bool:
        src, dst = self._local(from_), self._local(to)
        if os.path.isdir(src) and not recurse:
            raise IsADirectoryError(f"{from_} is a directory; pass recurse=True")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.move(src, dst)
        return True

    def rm(self, path: str, recurse: bool = False) -> bool:
        local = self._local(path)
        if not os.path.exists(local):
            return False
        if os.path.isdir(local):
            if not recurse:
                raise IsADirectoryError(f"{path} is a directory; pass recurse=True")
            shutil.rmtree(local)
        else:
            os.remove(local)
        return True


class _Secrets:
    """dbutils.secrets: reads through Kiln's Secrets API as the context's user.
    Every value read is remembered so the kernel can redact it from outputs."""

    def __init__(self, api, redacted):
        self._api = api  # a dict {"url", "credential"} set by the kernel per command
        self._redacted = redacted

    def _call(self, path, **params):
        if not self._api.get("url"):
            raise RuntimeError("dbutils.secrets is not available in this context")
        url = self._api["url"] + path + ("?" + urllib.parse.urlencode(params) if params else "")
        request = urllib.request.Request(url, headers={"Authorization": "Bearer " + self._api.get("credential", "")})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            try:
                body = json.loads(error.read() or b"{}")
            except ValueError:
                body = {}
            raise Exception(f"{body.get('error_code', error.code)}: {body.get('message', error.reason)}") from None

    def getBytes(self, scope, key):
        value = base64.b64decode(self._call("/api/2.0/secrets/get", scope=scope, key=key)["value"])
        self._redacted.add(value.decode("utf-8", errors="replace"))
        return value

    def get(self, scope, key):
        return self.getBytes(scope, key).decode("utf-8")

    def list(self, scope):
        return [SecretMetadata(s["key"]) for s in self._call("/api/2.0/secrets/list", scope=scope).get("secrets", [])]

    def listScopes(self):
        return [SecretScope(s["name"]) for s in self._call("/api/2.0/secrets/scopes/list").get("scopes", [])]


class _Notebook:
    def __init__(self, runner=None):
        self._runner = runner

    def exit(self, value=""):
        raise NotebookExit("" if value is None else str(value))

    def run(self, path, timeout_seconds=0, arguments=None):
        if self._runner is None:
            raise RuntimeError("dbutils.notebook.run is not available in this context")
        return self._runner(path, timeout_seconds, arguments)


class _Widgets:
    """Notebook parameters: `arguments` of dbutils.notebook.run (or a job), else the defaults."""

    def __init__(self):
        self._defaults = {}
        self._arguments = {}

    def _set_arguments(self, arguments):
        self._arguments = {str(k): str(v) for k, v in (arguments or {}).items()}

    def text(self, name, defaultValue="", label=None):
        self._defaults[name] = defaultValue

    def dropdown(self, name, defaultValue, choices, label=None):
        self._defaults[name] = defaultValue

    combobox = dropdown

    def multiselect(self, name, defaultValue, choices, label=None):
        self._defaults[name] = defaultValue

    def get(self, name):
        if name in self._arguments:
            return self._arguments[name]
        if name in self._defaults:
            return self._defaults[name]
        raise ValueError(f"InputWidgetNotDefined: No input widget named {name} is defined")

    def getArgument(self, name, defaultValue=None):
        return self._arguments.get(name, self._defaults.get(name, defaultValue))

    def getAll(self):
        return {**self._defaults, **self._arguments}

    def remove(self, name):
        self._defaults.pop(name, None)

    def removeAll(self):
        self._defaults.clear()


class _TaskValues:
    """`dbutils.jobs.taskValues`: values a job task sets for the tasks after it. Kiln passes the
    values of earlier tasks with each command (`taskValues` option) and collects what a command
    sets (reported in its results)."""

    def __init__(self):
        self._upstream = {}
        self.set_now = {}

    def _set_upstream(self, values):
        self._upstream = {str(k): dict(v) for k, v in (values or {}).items() if isinstance(v, dict)}
        self.set_now = {}

    def set(self, key, value):
        import json

        json.dumps(value)  # must be JSON-serializable, as on Databricks
        self.set_now[str(key)] = value

    def get(self, taskKey, key, default=None, debugValue=None):
        values = self._upstream.get(str(taskKey))
        if values is None:
            if debugValue is not None:
                return debugValue
            raise ValueError(f"Task {taskKey} is not an upstream task of this one (or set no values)")
        if key in values:
            return values[key]
        if default is not None:
            return default
        raise ValueError(f"Task {taskKey} set no value {key!r}")


class _Jobs:
    def __init__(self):
        self.taskValues = _TaskValues()


class _Library:
    def __init__(self, restart):
        self._restart = restart

    def restartPython(self):
        if self._restart is None:
            raise RuntimeError("dbutils.library.restartPython is not available in this context")
        self._restart()


class DBUtils:
    def __init__(self, dbfs_root: str, api=None, redacted=None, restart=None, run=None):
        os.makedirs(dbfs_root, exist_ok=True)
        self.fs = _Fs(dbfs_root)
        self.library = _Library(restart)
        self.notebook = _Notebook(run)
        self.widgets = _Widgets()
        self.jobs = _Jobs()
        self.secrets = _Secrets(api if api is not None else {}, redacted if redacted is not None else set())

    def help(self):
        print("dbutils: fs (ls, cp, mv, rm, mkdirs, head, put), library (restartPython), notebook (exit, run), widgets (text, dropdown, get, getArgument), jobs (taskValues.set, taskValues.get), secrets (get, getBytes, list, listScopes)")
