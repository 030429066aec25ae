"""The kernel main loop: runs commands of one execution context in order, in one
persistent namespace, against the context's own Spark Connect session.

Started by Kiln as `python -m kiln_kernel.kernel` with:
  KILN_SPARK_URL   sc://127.0.0.1:<port> of the cluster's engine (optional: no `spark` without it)
  KILN_DBFS_ROOT   local directory backing dbfs:/
  KILN_LIBS_DIR    the cluster's library directory (put first on sys.path)
  KILN_DBFS_URL    DBFS (volumes too) on an object store (s3://…/dbfs): Spark paths go there
"""

import ast
import io
import os
import re
import signal
import sys
import textwrap
import threading
import uuid
from contextlib import redirect_stderr, redirect_stdout

from kiln_kernel import magics, results
from kiln_kernel.dbutils import DBUtils, NotebookExit, reachable
from kiln_kernel.protocol import Channel

DEFAULT_ROW_LIMIT = 10000


class Interrupted(BaseException):
    """Raised in the command's thread when Kiln cancels it."""


class Kernel:
    def __init__(self, spark_url, dbfs_root, libs_dir):
        self.dbfs_root = dbfs_root
        if libs_dir:
            os.makedirs(libs_dir, exist_ok=True)
            sys.path.insert(0, libs_dir)
        self.spark = None
        if spark_url:
            from pyspark.sql import SparkSession

            self.spark = SparkSession.builder.remote(spark_url).getOrCreate()
            # Tables are Delta unless a command says otherwise, as on Databricks.
            self.spark.conf.set("spark.sql.sources.default", "delta")
            self.spark.sql("SELECT 1").collect()  # connect now, not on the first command
        if self.spark is not None:
            map_dbfs_paths(dbfs_root)
        map_local_paths(dbfs_root)
        self.pending_table = None
        self.pending_html = []
        self.row_limit = DEFAULT_ROW_LIMIT
        self.api = {}
        self.redacted = set()
        self.namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        magics.pip_dir()  # the context's own %pip libraries come first on sys.path
        self.dbutils = DBUtils(dbfs_root, self.api, self.redacted, restart=self.restart_python, run=self.run_other_notebook)
        self.namespace.update(
            spark=self.spark,
            display=self.display,
            displayHTML=self.display_html,
            dbutils=self.dbutils,
        )
        if self.spark is not None:
            self.namespace["sc"] = None
            self.namespace["sqlContext"] = self.spark
        self.executing = False

    # ---- display ---------------------------------------------------------

    def display(self, value=None, *args, **kwargs):
        self.pending_table = self.table_of(value)

    def display_html(self, html):
        # Printed, as the REST API shows it; also kept apart so that the web
        # UI can render it (in a sandboxed frame) as Databricks' notebooks do.
        print(html)
        self.pending_html.append(str(html))

    def table_of(self, value):
        try:
            import pandas
        except ImportError:  # pragma: no cover - pandas is in the runtime
            pandas = None
        if pandas is not None and isinstance(value, pandas.DataFrame):
            if self.spark is None:
                raise TypeError("display(pandas.DataFrame) needs a Spark session")
            value = self.spark.createDataFrame(value)
        if not hasattr(value, "schema") or not hasattr(value, "limit"):
            raise TypeError(f"display() expects a DataFrame, got {type(value).__name__}")
        arrow, schema = arrow_and_schema(value, self.row_limit + 1)
        rows = [[results.jsonable(v) for v in row.values()] for row in arrow.to_pylist()]
        truncated = len(rows) > self.row_limit
        return results.table(rows[: self.row_limit], results.schema_of(schema), truncated)

    # ---- execution -------------------------------------------------------

    def execute(self, language, code, options):
        self.dbutils.jobs.taskValues._set_upstream((options or {}).get("taskValues"))
        status, payload = self._execute(language, code, options)
        if self.dbutils.jobs.taskValues.set_now:
            # values a job task set (read by Kiln, passed on to later tasks)
            payload = payload | {"taskValues": dict(self.dbutils.jobs.taskValues.set_now)}
        return status, results.redact(payload, self.redacted)

    def _execute(self, language, code, options):
        self.pending_table = None
        self.pending_html = []
        self.pending_markdown = None
        self.row_limit = int((options or {}).get("displayRowLimit") or DEFAULT_ROW_LIMIT)
        self.notebook_path = (options or {}).get("notebookPath") or ""
        self.dbutils.widgets._set_arguments((options or {}).get("widgets"))
        output = io.StringIO()
        try:
            with redirect_stdout(output), redirect_stderr(output):
                self.run_cell(language, code, output)
        except magics.MagicError as exc:
            return "Error", results.error(exc, with_traceback=False) | {"cause": str(exc)}
        except NotebookExit as done:
            # `notebookExitValue` (ignored by clients) tells dbutils.notebook.run it exited
            return "Finished", results.text(done.value) | {"notebookExitValue": done.value}
        except (KeyboardInterrupt, Interrupted):
            return "Cancelled", results.cancelled()
        except SystemExit as exc:
            return "Error", results.error(exc)
        except Exception as exc:  # noqa: BLE001 - every user error is a result
            return "Error", self.error_result(exc, language)
        if self.pending_markdown is not None:
            source, rendered = self.pending_markdown
            return "Finished", results.text(source, rendered)
        if self.pending_table is not None:
            return "Finished", self.pending_table
        shown = self.flush_figures()
        if shown:
            return "Finished", results.images(shown)
        # As Databricks shows it: `print("Hello, World!")` is "Hello, World!".
        text = output.getvalue()
        return "Finished", results.text(text[:-1] if text.endswith("\n") else text, "".join(self.pending_html))

    def run_cell(self, language, code, output, depth=0):
        """One command or notebook cell: a magic when its first line is one."""
        magic = magics.split(code)
        if magic is None:
            if language == "sql":
                self.run_sql(code)
            else:
                self.run_python(code, output)
            return
        name, arguments, body = magic
        magics.check(name, "SQL" if language == "sql" else "Python")
        if name == "python":
            self.run_python((arguments + "\n" + body) if arguments else body, output)
        elif name == "sql":
            self.run_sql((arguments + "\n" + body) if arguments else body)
        elif name == "md":
            source = ((arguments + "\n") if arguments else "") + body
            self.pending_markdown = (source, magics.markdown(source))
        elif name == "pip":
            magics.pip(arguments, body)
        elif name == "sh":
            magics.sh(arguments, body)
        elif name == "fs":
            self.show_fs(magics.fs(self.dbutils, arguments, body), output)
        elif name == "run":
            self.run_notebook(arguments, output, depth)

    def show_fs(self, value, output):
        if isinstance(value, list) and value and hasattr(value[0], "_fields"):
            fields = value[0]._fields
            types = {"size": '"long"', "modificationTime": '"long"'}
            schema = [{"name": f, "type": types.get(f, '"string"'), "metadata": "{}"} for f in fields]
            self.pending_table = results.table([list(v) for v in value], schema, False)
        elif value is not None:
            print(value)

    def run_notebook(self, arguments, output, depth):
        """`%run ./other`: the other notebook's cells run here, in this namespace."""
        import base64
        import json
        import urllib.error
        import urllib.parse
        import urllib.request

        if depth > 16:
            raise magics.MagicError("%run nests too deeply (a notebook that runs itself?)")
        words = arguments.split()
        if not words:
            raise magics.MagicError("%run needs a notebook path")
        path = magics.resolve_notebook(words[0], self.notebook_path)
        if not self.api.get("url"):
            raise magics.MagicError("%run is not available in this context")
        url = self.api["url"] + "/api/2.0/workspace/export?" + urllib.parse.urlencode({"path": path, "format": "SOURCE"})
        request = urllib.request.Request(url, headers={"Authorization": "Bearer " + self.api.get("credential", "")})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                content = json.loads(response.read())["content"]
        except urllib.error.HTTPError as error:
            raise magics.MagicError(f"%run {path}: notebook not found or not readable ({error.code})") from None
        source = base64.b64decode(content).decode("utf-8")
        caller = self.notebook_path
        self.notebook_path = path
        try:
            for language, cell in magics.notebook_cells(source):
                self.run_cell(language, cell, output, depth + 1)
        finally:
            self.notebook_path = caller

    def run_other_notebook(self, path, timeout_seconds=0, arguments=None):
        from kiln_kernel import notebook_run

        return notebook_run.run(self.api, os.environ.get("KILN_CLUSTER_ID", ""), self.notebook_path, path, timeout_seconds, arguments)

    def restart_python(self):
        """dbutils.library.restartPython(): a fresh namespace, and the context's %pip
        libraries imported anew; the context, its Spark session and its libraries stay."""
        magics.forget_pip_modules()
        keep = {k: self.namespace[k] for k in ("__name__", "__builtins__", "spark", "display", "displayHTML", "dbutils", "sc", "sqlContext") if k in self.namespace}
        self.namespace.clear()
        self.namespace.update(keep)
        print("Python interpreter will be restarted.")

    def run_python(self, code, output):
        # Source indented as a whole (the SDK's dbutils proxy sends it so) runs
        # as Databricks runs it: with the common indent removed.
        tree = ast.parse(textwrap.dedent(code), filename="<command>", mode="exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, "<command>", "exec"), self.namespace)
        if last is not None:
            value = eval(compile(last, "<command>", "eval"), self.namespace)
            if value is not None:
                text = repr(value)
                output.write(text if not output.getvalue() or output.getvalue().endswith("\n") else "\n" + text)

    def run_sql(self, code):
        if self.spark is None:
            raise RuntimeError("SQL needs a Spark session, and this context has none")
        statements = split_sql(code)
        if not statements:
            raise ValueError("No SQL statement to run")
        frame = None
        for n, statement in enumerate(statements):
            text = map_sql_paths(statement, self.dbfs_root)
            if n == len(statements) - 1 and is_query(text):
                # the rows are fetched at once below: one round trip instead of two
                frame = lazy_sql(self.spark, text)
            else:
                frame = self.spark.sql(text)
        self.namespace["_sqldf"] = frame
        self.pending_table = self.table_of(frame)

    def error_result(self, exc, language):
        if language == "sql":
            return results.error(exc, with_traceback=False) | {"cause": str(exc)}
        return results.error(strip_kernel_frames(exc))

    def flush_figures(self):
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None or not pyplot.get_fignums():
            return []
        plots = os.path.join(self.dbfs_root, "FileStore", "plots")
        os.makedirs(plots, exist_ok=True)
        names = []
        for number in pyplot.get_fignums():
            name = f"{uuid.uuid4()}.png"
            pyplot.figure(number).savefig(os.path.join(plots, name), format="png")
            names.append(f"/plots/{name}")
        pyplot.close("all")
        return names


QUERY_HEADS = ("select", "values", "table", "from")
WRITES = re.compile(r"\b(insert|merge|update|delete)\b", re.IGNORECASE)


def is_query(statement):
    """A statement that only reads (its result is all it does): run lazily with its rows."""
    text = re.sub(r"^(\s|--[^\n]*\n|/\*.*?\*/|\()+", "", statement, flags=re.DOTALL)
    head = text.split(None, 1)[0].lower() if text.split() else ""
    return head in QUERY_HEADS or (head == "with" and not WRITES.search(text))


def lazy_sql(spark, query):
    """A DataFrame of the query without asking the engine first (Spark Connect's `spark.sql`
    sends the statement once to get back the same relation)."""
    try:
        from pyspark.sql.connect.dataframe import DataFrame
        from pyspark.sql.connect.plan import SQL
        from pyspark.sql.connect.session import SparkSession as ConnectSession
    except ImportError:  # pragma: no cover - the runtime has Spark Connect
        return spark.sql(query)
    if not isinstance(spark, ConnectSession):
        return spark.sql(query)
    return DataFrame(SQL(query), spark)


def arrow_and_schema(frame, limit):
    """The first `limit` rows of a DataFrame as Arrow, and its schema, in one round trip to the
    engine where the DataFrame can (Spark Connect's answer carries the schema with the rows):
    `toArrow()` and `.schema` would each ask the engine for the schema once more."""
    limited = frame.limit(limit)
    to_table = getattr(limited, "_to_table", None)
    if to_table is None:
        return limited.toArrow(), frame.schema
    table, schema = to_table()
    if schema is None:
        schema = frame.schema
    from pyspark.sql.pandas.types import to_arrow_schema

    return table.cast(to_arrow_schema(schema, error_on_duplicated_field_names_in_struct=True, timezone="UTC")), schema


def dbfs_to_local(path, dbfs_root):
    """`dbfs:/x` and bare absolute paths `/x` (as Databricks resolves them) →
    `file://<dbfs root>/x`, refusing paths that leave the root. Paths with
    another scheme (`file:`, `s3:`) are left to the engine."""
    if not isinstance(path, str):
        return path
    if path.startswith("dbfs:/"):
        rel = path[len("dbfs:/"):]
    elif path.startswith("/") and not path.startswith("//"):
        rel = path[1:]
    else:
        return path
    dbfs_url = os.environ.get("KILN_DBFS_URL")
    if dbfs_url:
        return object_url(dbfs_url, rel, path)
    root = os.path.realpath(dbfs_root)
    local = os.path.realpath(os.path.join(root, rel.lstrip("/")))
    if not reachable(local, root):
        raise PermissionError(f"Path escapes DBFS: {path}")
    return "file://" + local


def object_url(dbfs_url, rel, path):
    """`dbfs:/x` (volumes too: `/Volumes/c/s/v/x`) on an object-store root →
    `<dbfs url>/x`: engines read and write DBFS there (Delta commits cannot go
    through the FUSE mount local file calls use). The engine parses a URL, so
    each name is quoted (`%2e%2e` is not `..`, `#` does not end the path)."""
    from urllib.parse import quote, unquote

    parts = [p for p in rel.split("/") if p]
    if any(p in (".", "..") or unquote(p) in (".", "..") for p in parts):
        raise PermissionError(f"Path escapes DBFS: {path}")
    return dbfs_url.rstrip("/") + "".join("/" + quote(p, safe="") for p in parts)


def local_to_url(local, dbfs_root):
    """A local path under the DBFS root as the engine should name it: its
    object-store URL when DBFS is on one, else `file://…`."""
    dbfs_url = os.environ.get("KILN_DBFS_URL")
    root = os.path.realpath(dbfs_root)
    if dbfs_url and reachable(os.path.abspath(local), root):
        return object_url(dbfs_url, os.path.relpath(os.path.abspath(local), root), local)
    return "file://" + local


_PATH_TABLE = re.compile(r"\b(json|csv|parquet|delta|text|orc|avro|binaryFile)\.`((?:dbfs:)?/[^`]*)`", re.IGNORECASE)


_LOCATION = re.compile(r"\b(LOCATION\s+)'((?:dbfs:)?/[^']*)'", re.IGNORECASE)


def map_sql_paths(statement, dbfs_root):
    """``json.`/x` ``, ``delta.`dbfs:/x` `` and `LOCATION '/Volumes/…'` in SQL
    name DBFS and volumes, as on Databricks."""
    statement = _PATH_TABLE.sub(lambda m: f"{m.group(1)}.`{dbfs_to_local(m.group(2), dbfs_root)}`", statement)
    return _LOCATION.sub(lambda m: f"{m.group(1)}'{dbfs_to_local(m.group(2), dbfs_root)}'", statement)


LOCAL_PREFIXES = ("/Volumes/", "/dbfs/")


def local_path(path, dbfs_root):
    """`/Volumes/c/s/v/x` and `/dbfs/x` → the file behind them, as Databricks'
    FUSE mounts show them to local Python; other paths unchanged."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else path
    if not isinstance(text, str):
        return path
    if text.startswith("/Volumes/") or text == "/Volumes":
        rel = text[1:]
    elif text.startswith("/dbfs/") or text == "/dbfs":
        rel = text[len("/dbfs"):].lstrip("/")
    else:
        return path
    root = os.path.realpath(dbfs_root)
    local = os.path.realpath(os.path.join(root, rel))
    if not reachable(local, root):
        raise PermissionError(f"Path escapes its volume or DBFS: {text}")
    return local


_LOCAL_ROOT = [None]


def map_local_paths(dbfs_root):
    """Local Python (`open()`, pandas, `os` calls) reaches volumes and DBFS by
    the paths Databricks users write."""
    import builtins

    _LOCAL_ROOT[0] = dbfs_root
    if getattr(builtins.open, "_kiln_local", False):
        return

    def wrap(fn):
        def mapped(path, *args, **kwargs):
            return fn(local_path(path, _LOCAL_ROOT[0]), *args, **kwargs)

        mapped._kiln_local = True
        mapped.__wrapped__ = fn
        return mapped

    builtins.open = wrap(builtins.open)
    io.open = builtins.open
    for name in ("listdir", "makedirs", "mkdir", "remove", "unlink", "rmdir", "stat", "scandir"):
        setattr(os, name, wrap(getattr(os, name)))
    for name in ("exists", "isfile", "isdir", "getsize"):
        setattr(os.path, name, wrap(getattr(os.path, name)))


def map_dbfs_paths(dbfs_root):
    """Lets DataFrame readers and writers take dbfs:/ paths, as on Databricks."""
    from pyspark.sql.connect.readwriter import DataFrameReader, DataFrameWriter

    def wrap(cls, name):
        original = getattr(cls, name, None)
        if original is None or getattr(original, "_kiln_dbfs", False):
            return

        def mapped(self, path=None, *args, **kwargs):
            if isinstance(path, (list, tuple)):
                path = [dbfs_to_local(p, dbfs_root) for p in path]
            else:
                path = dbfs_to_local(path, dbfs_root)
            if "path" in kwargs:
                kwargs["path"] = dbfs_to_local(kwargs["path"], dbfs_root)
            return original(self, path, *args, **kwargs)

        mapped._kiln_dbfs = True
        setattr(cls, name, mapped)

    for name in ("load", "csv", "json", "parquet", "text", "orc"):
        wrap(DataFrameReader, name)
    for name in ("save", "csv", "json", "parquet", "text", "orc"):
        wrap(DataFrameWriter, name)


def strip_kernel_frames(exc):
    """Drop the kernel's own frames so the traceback starts at the user's code."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != "<command>":
        tb = tb.tb_next
    if tb is not None:
        exc.__traceback__ = tb
    return exc


def split_sql(code):
    """Splits on `;` outside quotes and comments; drops empty statements."""
    statements, current, quote, i = [], [], None, 0
    while i < len(code):
        ch = code[i]
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"', "`"):
            quote = ch
            current.append(ch)
        elif code.startswith("--", i):
            end = code.find("\n", i)
            i = len(code) if end < 0 else end
            continue
        elif ch == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def main():
    channel = Channel()
    if os.environ.get("KILN_SPARK_URL"):
        # user code's own `SparkSession.builder.getOrCreate()` (a job's Python file) gets this
        # kernel's session, as on a Databricks cluster
        os.environ.setdefault("SPARK_REMOTE", os.environ["KILN_SPARK_URL"])
    kernel = Kernel(os.environ.get("KILN_SPARK_URL"), os.environ.get("KILN_DBFS_ROOT", "/tmp/kiln-dbfs"), os.environ.get("KILN_LIBS_DIR"))

    def on_sigint(signum, frame):
        if not kernel.executing:
            return
        if kernel.spark is not None:
            threading.Thread(target=interrupt_spark, args=(kernel.spark,), daemon=True).start()
        raise Interrupted()

    signal.signal(signal.SIGINT, on_sigint)
    channel.send({"event": "ready", "pid": os.getpid()})
    while True:
        message = channel.receive()
        if message is None or message.get("op") == "exit":
            return
        if message.get("op") != "execute":
            continue
        kernel.api.update(message.get("api") or {})
        channel.send({"event": "started", "id": message["id"]})
        kernel.executing = True
        try:
            status, payload = kernel.execute(message.get("language", "python"), message.get("code", ""), message.get("options"))
        except Interrupted:
            status, payload = "Cancelled", results.cancelled()
        finally:
            kernel.executing = False
        channel.send({"event": "done", "id": message["id"], "status": status, "results": payload})


def interrupt_spark(spark):
    try:
        spark.interruptAll()
    except Exception:  # noqa: BLE001 - best effort
        pass


if __name__ == "__main__":
    main()
