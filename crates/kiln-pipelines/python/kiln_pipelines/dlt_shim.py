"""Python pipeline sources: `import dlt` and `from pyspark import pipelines as dp`.

A Python library is executed once at registration: decorators only register
datasets and flows. Each flow function is then called once in discovery mode,
where every read (`dlt.read`, `dlt.read_stream`, `spark.read.table`,
`spark.readStream.table`, `spark.table`, file readers including Auto Loader's
`cloudFiles`) is recorded and returns a lazy placeholder, so Kiln learns the
graph without touching data. At analysis and run time the function is called
again with each read bound to what Kiln chose (an empty frame of the upstream
schema, the table, the new files, the new Delta versions).
"""

import sys
import threading
import types

_context = threading.local()


class RegistrationError(Exception):
    pass


def _key_of_table(name):
    parts = [p.strip("`") for p in str(name).split(".")]
    live = len(parts) > 1 and parts[0].lower() == "live"
    if live:
        parts = parts[1:]
    return parts, live


class _Recorder:
    """Discovery: what a flow function reads."""

    def __init__(self, spark):
        self.spark = spark
        self.items = []

    def table(self, name, streaming, live=False):
        parts, prefixed = _key_of_table(name)
        item = {"kind": "relation", "parts": parts, "streaming": streaming, "live": live or prefixed}
        if item not in self.items:
            self.items.append(item)
        return self.spark.table("__kiln_discovery_" + "_".join(parts))

    def files(self, path, fmt, options, streaming, schema):
        item = {"kind": "files", "path": path, "format": fmt, "options": options, "streaming": streaming}
        if item not in self.items:
            self.items.append(item)
        return self.spark.table("__kiln_discovery_files")


class _Binder:
    """Analysis and runs: reads resolve to the views Kiln bound."""

    def __init__(self, spark, refs):
        self.spark = spark
        self.refs = refs

    def table(self, name, streaming, live=False):
        parts, _ = _key_of_table(name)
        ref = self.refs.get("ds:" + ".".join(parts).lower())
        if ref is None:
            return self.spark.table(name)
        return self.spark.table(ref)

    def files(self, path, fmt, options, streaming, schema):
        ref = self.refs.get("files:" + path)
        if ref is None:
            raise RegistrationError(f"the file source {path} was not declared at registration")
        return self.spark.table(ref)


def _active():
    handler = getattr(_context, "handler", None)
    if handler is None:
        raise RegistrationError(
            "dlt.read/read_stream and pipeline reads are only available inside a dataset or flow function"
        )
    return handler


class _Reader:
    """spark.read / spark.readStream as a pipeline sees them."""

    def __init__(self, real, streaming):
        self._real = real
        self._streaming = streaming
        self._format = None
        self._options = []
        self._schema = None

    def format(self, fmt):
        self._format = fmt
        return self

    def option(self, key, value):
        self._options.append((str(key), str(value).lower() if isinstance(value, bool) else str(value)))
        return self

    def options(self, **kwargs):
        for k, v in kwargs.items():
            self.option(k, v)
        return self

    def schema(self, schema):
        self._schema = schema if isinstance(schema, str) else schema.simpleString()
        return self

    def table(self, name):
        if getattr(_context, "handler", None) is None:
            return self._real().table(name)
        return _active().table(name, self._streaming)

    def load(self, path=None, format=None, **options):
        if format:
            self._format = format
        for k, v in options.items():
            self.option(k, v)
        fmt = (self._format or "parquet").lower()
        opts = []
        for key, value in self._options:
            if key.lower() == "cloudfiles.format":
                fmt = value.lower()
            elif key.lower().startswith("cloudfiles."):
                opts.append((key[len("cloudFiles."):], value))
            else:
                opts.append((key, value))
        if fmt == "cloudfiles":
            fmt = "json"
        if self._schema:
            opts.append(("__schema_ddl", self._schema))
        if getattr(_context, "handler", None) is None:
            raise RegistrationError("pipeline sources read files only inside dataset functions")
        return _active().files(str(path), fmt, opts, self._streaming, self._schema)

    def _fmt(self, fmt):
        def read(path, **options):
            self._format = fmt
            return self.load(path, **options)

        return read

    def __getattr__(self, name):
        if name in ("json", "csv", "parquet", "text", "orc"):
            return self._fmt(name)
        return getattr(self._real(), name)


class Session:
    """The `spark` a pipeline source sees: the real session, with pipeline-aware reads."""

    def __init__(self, spark):
        self._spark = spark

    @property
    def read(self):
        return _Reader(lambda: self._spark.read, False)

    @property
    def readStream(self):  # noqa: N802 - Spark's name
        return _Reader(lambda: self._spark.readStream, True)

    def table(self, name):
        if getattr(_context, "handler", None) is None:
            return self._spark.table(name)
        return _active().table(name, False)

    def __getattr__(self, name):
        return getattr(self._spark, name)


class Registry:
    """Datasets and flows of the Python libraries of one update."""

    def __init__(self, worker):
        self.worker = worker
        self.spark = Session(worker.spark)
        self.datasets = []
        self.flows = {}
        self.by_function = {}
        self.current_path = None

    # ---- decorators ------------------------------------------------------

    def dataset(self, kind, func, name=None, comment=None, table_properties=None, partition_cols=None,
                temporary=False, expectations=None):
        name = name or func.__name__
        ds = {
            "name": name,
            "kind": kind,
            "comment": comment,
            "table_properties": [[str(k), str(v)] for k, v in (table_properties or {}).items()],
            "partition_cols": list(partition_cols or []),
            "temporary": bool(temporary),
            "expectations": list(expectations or []) + list(getattr(func, "_kiln_expectations", [])),
            "path": self.current_path,
        }
        self.datasets.append(ds)
        if func is not None:
            self.by_function[id(func)] = ds
            self.flow(name, name, func)
        return ds

    def flow(self, name, target, func, once=False, cdc=None):
        fid = f"{self.current_path}#{name}"
        if name in self.flows:
            raise RegistrationError(f"flow '{name}' is defined twice")
        self.flows[name] = {"id": fid, "name": name, "target": target, "func": func, "once": once,
                            "cdc": cdc, "path": self.current_path, "line": _line_of(func)}
        return fid

    def add_expectation(self, func, name, expr, action):
        exp = {"name": name, "expr": expr, "action": action}
        ds = self.by_function.get(id(func))
        if ds is not None:
            ds["expectations"].append(exp)
        else:
            func._kiln_expectations = getattr(func, "_kiln_expectations", []) + [exp]
        return func

    # ---- registration ----------------------------------------------------

    def register(self, libraries, configuration):
        modules = install(self)
        self.worker.spark.conf.set("spark.sql.sources.default", "delta")
        for key, value in configuration.items():
            # spark.conf.get("<key>") reads the pipeline configuration, as on Databricks.
            self.worker.spark.conf.set(key, value)
        for lib in libraries:
            self.current_path = lib["path"]
            namespace = {"__name__": "__main__", "spark": self.spark, "dlt": modules["dlt"],
                         "display": lambda *a, **k: None}
            try:
                code = compile(lib["source"], lib["path"], "exec")
                exec(code, namespace)  # noqa: S102 - the user's pipeline source
            except Exception as exc:  # noqa: BLE001
                raise RegistrationError(f"{lib['path']}: {type(exc).__name__}: {exc}") from None
        elements = {"datasets": [], "flows": []}
        for ds in self.datasets:
            elements["datasets"].append({k: v for k, v in ds.items()})
        for flow in self.flows.values():
            items, streaming = self.discover(flow)
            elements["flows"].append({
                "id": flow["id"], "name": flow["name"], "target": flow["target"], "once": flow["once"],
                "items": items, "streaming": streaming, "cdc": flow["cdc"],
                "path": flow["path"], "line": flow["line"], "code": _code_hash(flow),
            })
        return elements

    def discover(self, flow):
        if flow["cdc"] is not None:
            source = flow["cdc"]["source"]
            parts, live = _key_of_table(source)
            return [{"kind": "relation", "parts": parts, "streaming": True, "live": live}], True
        recorder = _Recorder(self.worker.spark)
        _context.handler = recorder
        try:
            flow["func"]()
        except RegistrationError:
            raise
        except Exception as exc:  # noqa: BLE001 - plans are lazy; a failure here is the user's
            raise RegistrationError(
                f"{flow['path']}: the function of '{flow['name']}' failed while Kiln registered it: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from None
        finally:
            _context.handler = None
        streaming = any(i["streaming"] for i in recorder.items)
        return recorder.items, streaming

    def call(self, fid, refs):
        flow = next((f for f in self.flows.values() if f["id"] == fid), None)
        if flow is None:
            raise RegistrationError(f"unknown Python flow {fid}")
        _context.handler = _Binder(self.worker.spark, refs)
        try:
            frame = flow["func"]()
        finally:
            _context.handler = None
        if not hasattr(frame, "schema"):
            raise RegistrationError(f"the function of '{flow['name']}' must return a DataFrame, not {type(frame).__name__}")
        return frame


def _code_hash(flow):
    """Changes when the function's code (or the CDC spec) changes."""
    import hashlib
    import json
    import marshal

    func = flow["func"]
    if func is None:
        return json.dumps(flow["cdc"], sort_keys=True)
    try:
        return hashlib.sha256(marshal.dumps(func.__code__)).hexdigest()
    except ValueError:
        return flow["id"]


def _line_of(func):
    code = getattr(func, "__code__", None)
    return code.co_firstlineno if code is not None else 0


def call_flow(worker, fid, refs):
    if worker.python is None:
        raise RegistrationError("no Python library was registered")
    return worker.python.call(fid, refs or {})


# ---- the modules ----------------------------------------------------------


def _decorator(make):
    """Supports both `@dlt.table` and `@dlt.table(...)`."""

    def outer(*args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return make(args[0])
        return lambda func: make(func, *args, **kwargs)

    return outer


def install(registry):
    """Puts `dlt` and `pyspark.pipelines` in sys.modules, bound to `registry`."""

    def table(func, name=None, comment=None, spark_conf=None, table_properties=None, path=None,
              partition_cols=None, cluster_by=None, schema=None, temporary=False, row_filter=None, **_):
        registry.dataset("auto", func, name, comment, table_properties, partition_cols, temporary)
        return func

    def materialized_view(func, name=None, comment=None, spark_conf=None, table_properties=None,
                          partition_cols=None, cluster_by=None, schema=None, **_):
        registry.dataset("materialized_view", func, name, comment, table_properties, partition_cols)
        return func

    def view(func, name=None, comment=None, spark_conf=None, **_):
        registry.dataset("view", func, name, comment)
        return func

    def create_streaming_table(name, comment=None, spark_conf=None, table_properties=None,
                               partition_cols=None, cluster_by=None, path=None, schema=None,
                               expect_all=None, expect_all_or_drop=None, expect_all_or_fail=None, **_):
        exps = []
        for action, group in (("warn", expect_all), ("drop", expect_all_or_drop), ("fail", expect_all_or_fail)):
            for n, e in (group or {}).items():
                exps.append({"name": n, "expr": e, "action": action})
        registry.dataset("streaming_table", None, name, comment, table_properties, partition_cols,
                         expectations=exps)

    def append_flow(target, name=None, spark_conf=None, comment=None, once=False):
        def wrap(func):
            registry.flow(name or func.__name__, target, func, once=once)
            return func

        return wrap

    def apply_changes(target, source, keys, sequence_by, where=None, ignore_null_updates=False,
                      apply_as_deletes=None, apply_as_truncates=None, column_list=None,
                      except_column_list=None, stored_as_scd_type=1, track_history_column_list=None,
                      track_history_except_column_list=None, flow_name=None, once=False, **_):
        def expr(value):
            if value is None:
                return None
            return value if isinstance(value, str) else _column_sql(value)

        cdc = {
            "source": source, "keys": [str(k) for k in keys], "sequence_by": expr(sequence_by),
            "delete_when": expr(apply_as_deletes), "truncate_when": expr(apply_as_truncates),
            "ignore_null_updates": bool(ignore_null_updates),
            "columns": [str(c) for c in column_list] if column_list else None,
            "except_columns": [str(c) for c in (except_column_list or [])],
            "scd_type": int(str(stored_as_scd_type)), "where": expr(where),
        }
        registry.flow(flow_name or target, target, None, once=once, cdc=cdc)

    def expectation(action):
        def one(name, inv):
            return lambda func: registry.add_expectation(func, name, inv, action)

        def many(expectations):
            def wrap(func):
                for n, e in expectations.items():
                    registry.add_expectation(func, n, e, action)
                return func

            return wrap

        return one, many

    def read(name):
        return _active().table(name, False, live=True)

    def read_stream(name):
        return _active().table(name, True, live=True)

    expect, expect_all = expectation("warn")
    expect_or_drop, expect_all_or_drop = expectation("drop")
    expect_or_fail, expect_all_or_fail = expectation("fail")

    def unsupported(what):
        def fail(*args, **kwargs):
            raise RegistrationError(f"{what} is not supported by pipelines on Kiln")

        return fail

    common = dict(
        table=_decorator(table), view=_decorator(view), temporary_view=_decorator(view),
        materialized_view=_decorator(materialized_view), append_flow=append_flow,
        create_streaming_table=create_streaming_table, create_target_table=create_streaming_table,
        apply_changes=apply_changes, create_auto_cdc_flow=apply_changes,
        expect=expect, expect_all=expect_all, expect_or_drop=expect_or_drop,
        expect_all_or_drop=expect_all_or_drop, expect_or_fail=expect_or_fail,
        expect_all_or_fail=expect_all_or_fail, read=read, read_stream=read_stream,
        create_sink=unsupported("create_sink"),
        apply_changes_from_snapshot=unsupported("apply_changes_from_snapshot"),
        create_auto_cdc_from_snapshot_flow=unsupported("create_auto_cdc_from_snapshot_flow"),
    )
    modules = {}
    for name in ("dlt", "pyspark.pipelines"):
        module = types.ModuleType(name)
        module.__dict__.update(common)
        sys.modules[name] = module
        modules[name] = module
    import pyspark

    pyspark.pipelines = modules["pyspark.pipelines"]
    return modules


def _column_sql(column):
    """A Column's SQL text (for `sequence_by=col("x")` and `expr(...)`)."""
    text = str(column)
    if text.startswith("Column<'") and text.endswith("'>"):
        return text[len("Column<'"):-2]
    return text
