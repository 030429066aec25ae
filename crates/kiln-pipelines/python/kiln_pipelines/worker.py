"""The pipeline worker main loop.

Started by Kiln as `python -m kiln_pipelines.worker` with KILN_SPARK_URL (the
update's engine). Speaks line-delimited JSON on stdin/stdout: each request has an
`id` and an `op`; each answer is `{"id", "ok": true, "result"}` or
`{"id", "ok": false, "error": {"class_name", "message"}}`. Requests run on their
own threads, so independent flows run concurrently on one Spark session; every
query of a flow carries the flow's tag, which `cancel` interrupts.
"""

import json
import os
import sys
import threading
import traceback

from kiln_kernel.kernel import local_to_url, map_sql_paths
from kiln_pipelines import cdc, delta_log, expectations


EVENT_ORIGIN = ("pipeline_id", "pipeline_name", "update_id", "cluster_id", "flow_id", "flow_name", "dataset_name")
EVENT_SCHEMA = (
    "id string, timestamp timestamp, level string, event_type string, message string, maturity_level string, "
    "origin struct<" + ", ".join(f"{k}:string" for k in EVENT_ORIGIN) + ">, "
    "sequence struct<control_plane_seq_no:bigint>, details string, error string"
)


class FlowError(Exception):
    """A user-facing failure of a flow (shown in the event log)."""


class Worker:
    def __init__(self, spark_url):
        from pyspark.sql import SparkSession

        self.spark = SparkSession.builder.remote(spark_url).getOrCreate()
        self.spark.conf.set("spark.sql.sources.default", "delta")
        self.spark.sql("SELECT 1").collect()
        self.locations = {}
        self.lock = threading.Lock()
        self.creating = {}  # table -> the lock its creation holds (flows run concurrently)
        self.python = None

    # ---- tables -----------------------------------------------------------

    def location(self, table):
        if table not in self.locations:
            rows = self.spark.sql(f"DESCRIBE TABLE EXTENDED {table}").collect()
            found = [r for r in rows if r[0] == "Location"]
            if not found:
                raise FlowError(f"table {table} has no location")
            self.locations[table] = found[0][1]
        return self.locations[table]

    def exists(self, table):
        return self.spark.catalog.tableExists(table)

    def op_table_version(self, req):
        table = req["table"]
        cached = self.locations.get(table)
        if cached is not None and delta_log.versions(cached):
            return {"version": delta_log.latest_version(cached)}
        self.locations.pop(table, None)
        if not self.exists(table):
            return {"version": -1}
        return {"version": delta_log.latest_version(self.location(table))}

    def op_find_commit(self, req):
        table = req["table"]
        if not self.exists(table):
            return {"version": None}
        return {"version": delta_log.find_commit(self.location(table), req["user_metadata"])}

    def op_drop(self, req):
        """Drops the tables concurrently: each DROP is one engine round trip."""
        from concurrent.futures import ThreadPoolExecutor

        def drop(table):
            self.spark.sql(f"DROP TABLE IF EXISTS {table}").collect()
            self.locations.pop(table, None)

        tables = req["tables"]
        if tables:
            with ThreadPoolExecutor(max_workers=min(8, len(tables))) as pool:
                list(pool.map(drop, tables))  # the first failure is raised
        return {}

    def creation_lock(self, table):
        with self.lock:
            return self.creating.setdefault(table, threading.Lock())

    # ---- binding inputs ---------------------------------------------------

    def frame(self, binding, schemas=None):
        """A DataFrame for one input binding."""
        from pyspark.sql.types import StructType

        kind = binding["kind"]
        if kind == "empty":
            schema = StructType.fromJson(json.loads(binding["schema"]))
            return self.spark.createDataFrame([], schema)
        if kind == "table":
            return self.spark.table(binding["table"])
        if kind == "files":
            schema = binding.get("schema")
            files = binding["files"]
            sample = binding.get("sample") or []
            if not files and sample and not schema:
                return self.reader(binding).load(["file://" + f for f in sample]).limit(0)
            if not files:
                if not schema:
                    raise FlowError(
                        f"no files found in {binding['path']} to infer a schema from"
                    )
                return self.spark.createDataFrame([], StructType.fromJson(json.loads(schema)))
            reader = self.reader(binding)
            if schema:
                reader = reader.schema(StructType.fromJson(json.loads(schema)))
            return reader.load(["file://" + f for f in files])
        if kind == "delta_range":
            return self.delta_range(binding)
        if kind == "view":
            frame = self.query(binding)
            return expectations.apply_view(frame, binding.get("expectations") or [])
        raise FlowError(f"unknown input kind {kind}")

    def reader(self, binding):
        reader = self.spark.read.format(binding.get("format") or "json")
        for key, value in binding.get("options") or []:
            if key == "__schema_ddl":
                reader = reader.schema(value)
            else:
                reader = reader.option(key, value)
        return reader

    def delta_range(self, binding):
        from pyspark.sql import functions as F

        table = binding["table"]
        target = self.spark.table(table)
        schema = target.schema
        first, last = binding["from"], binding["to"]
        if last < first:
            return self.spark.createDataFrame([], schema)
        try:
            files = delta_log.added_files(self.location(table), first, last)
        except delta_log.NotAppendOnly as exc:
            raise FlowError(f"streaming read of {table}: {exc}") from None
        if not files:
            return self.spark.createDataFrame([], schema)
        groups = {}
        for path, values in files:
            url = path if "://" in path else "file://" + path
            groups.setdefault(tuple(sorted(values.items())), []).append(url)
        frames = []
        data_fields = None
        for values, paths in groups.items():
            frame = self.spark.read.parquet(*paths)
            for key, value in values:
                field = schema[key]
                frame = frame.withColumn(key, F.lit(value).cast(field.dataType))
            if data_fields is None:
                data_fields = [f.name for f in schema.fields]
            frames.append(frame.select(*data_fields))
        out = frames[0]
        for frame in frames[1:]:
            out = out.unionByName(frame)
        return out

    def bind(self, inputs):
        for name, binding in inputs.items():
            self.frame(binding).createOrReplaceTempView(name)

    def unbind(self, inputs):
        for name, binding in inputs.items():
            try:
                self.spark.catalog.dropTempView(name)
            except Exception:  # noqa: BLE001 - best effort
                pass
            if binding.get("kind") == "view":
                self.unbind(binding.get("inputs") or {})

    def query(self, req):
        self.bind(req.get("inputs") or {})
        if req.get("python"):
            from kiln_pipelines import dlt_shim

            return dlt_shim.call_flow(self, req["python"], req.get("refs") or {})
        return self.spark.sql(map_sql_paths(req["sql"], os.environ.get("KILN_DBFS_ROOT", "/nonexistent")))

    # ---- analysis ---------------------------------------------------------

    def op_analyze(self, req):
        """Plans each step against empty inputs of its upstream schemas; never
        reads a pipeline table. Returns each step's schema or its error."""
        out = []
        for step in req["steps"]:
            try:
                frame = self.query(step)
                if step.get("cdc"):
                    frame = cdc.check(frame, step["cdc"])
                schema = frame.schema
                for exp in step.get("expectations") or []:
                    expectations.check_expression(frame, exp)
                out.append({"ok": True, "schema": schema.json()})
            except Exception as exc:  # noqa: BLE001 - reported per step
                out.append({"ok": False, "error": describe(exc)})
            finally:
                self.unbind(step.get("inputs") or {})
        return {"steps": out}

    # ---- running a flow ---------------------------------------------------

    def op_run(self, req):
        tag = req["tag"]
        self.spark.addTag(tag)
        try:
            return self.run(req)
        finally:
            self.spark.removeTag(tag)
            self.unbind(req.get("inputs") or {})

    def run(self, req):
        table = req["target"]
        frame = self.query(req)
        quality = expectations.Evaluation(req.get("expectations") or [])
        frame = quality.evaluate(self.spark, frame, req["flow"])
        if req["mode"] == "cdc":
            metrics = cdc.run(self, req, frame)
            return {"num_output_rows": metrics["num_upserted_rows"], "metrics": metrics,
                    "data_quality": quality.report()}
        metadata = req["user_metadata"]
        created = False
        with self.creation_lock(table):
            exists = self.exists(table)
            if exists and req["mode"] == "complete" and not fits(self.spark.table(table).schema, frame.schema):
                self.spark.sql(f"DROP TABLE {table}").collect()
                self.locations.pop(table, None)
                exists = False
            if not exists:
                # The table is created with its first batch: one statement
                # (CREATE TABLE, then the batch's commit with its userMetadata).
                self.create(table, frame, req.get("create") or {}, metadata)
                created = True
        if not created:
            writer = frame.write.option("userMetadata", metadata)
            writer.mode("overwrite" if req["mode"] == "complete" else "append").insertInto(table)
        location = self.location(table)
        version = delta_log.find_commit(location, metadata)
        rows = 0
        if version is not None:
            metrics = delta_log.commit_info(location, version).get("operationMetrics") or {}
            rows = int(metrics.get("numOutputRows") or 0)
        return {
            "num_output_rows": rows,
            "version": version,
            "created": created,
            "data_quality": quality.report(),
            "schema": frame.schema.json(),
        }

    def create(self, table, frame, spec, metadata=None):
        """Creates `table` with `frame`'s schema and the partitioning and
        properties of `spec`. With `metadata`, `frame` is written as the
        table's first batch, its commit tagged with that userMetadata;
        without, the table is created empty."""
        writer = (frame if metadata is not None else frame.limit(0)).writeTo(table).using("delta")
        if spec.get("partition_cols"):
            writer = writer.partitionedBy(*spec["partition_cols"])
        for key, value in spec.get("table_properties") or []:
            if not key.startswith("pipelines."):
                writer = writer.tableProperty(key, str(value))
        if metadata is not None:
            writer = writer.option("userMetadata", metadata)
        writer.create()
        self.locations.pop(table, None)

    def op_ensure_schema(self, req):
        self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS {req['schema']}").collect()
        return {}

    def op_write_events(self, req):
        """Appends events to the Delta table at `path` (the pipeline's storage)."""
        import datetime

        rows = []
        for e in req["events"]:
            when = datetime.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
            o = e.get("origin") or {}
            rows.append((
                e["id"], when, e["level"], e["event_type"], e["message"], e.get("maturity_level"),
                tuple(o.get(k) for k in EVENT_ORIGIN),
                (e["sequence"]["control_plane_seq_no"],),
                json.dumps(e.get("details") or {}), json.dumps(e["error"]) if e.get("error") else None,
            ))
        frame = self.spark.createDataFrame(rows, EVENT_SCHEMA)
        frame.write.format("delta").mode("append").save(local_to_url(req["path"], os.environ.get("KILN_DBFS_ROOT", "/nonexistent")))
        return {"rows": len(rows)}

    def op_cancel(self, req):
        self.spark.interruptTag(req["tag"])
        return {}

    def op_ping(self, req):
        return {}

    # ---- Python libraries -------------------------------------------------

    def op_register_python(self, req):
        from kiln_pipelines import dlt_shim

        self.python = dlt_shim.Registry(self)
        return self.python.register(req["libraries"], req.get("configuration") or {})


# The operations Kiln sends (`crates/kiln-pipelines/src/protocol.rs`, one
# `Request` variant each; a test there holds the two tables together).
OPS = {
    "ping": Worker.op_ping,
    "cancel": Worker.op_cancel,
    "analyze": Worker.op_analyze,
    "register_python": Worker.op_register_python,
    "drop": Worker.op_drop,
    "ensure_schema": Worker.op_ensure_schema,
    "run": Worker.op_run,
    "table_version": Worker.op_table_version,
    "find_commit": Worker.op_find_commit,
    "write_events": Worker.op_write_events,
}


def fits(table_schema, frame_schema):
    """Whether rows of `frame_schema` can be written into a table of
    `table_schema` as they are: the same fields and types, where a table
    column may be nullable when the frame's is not (Delta stores aggregates'
    non-null columns as nullable)."""
    if len(table_schema.fields) != len(frame_schema.fields):
        return False
    for t, f in zip(table_schema.fields, frame_schema.fields):
        if t.name != f.name or loose(t.dataType) != loose(f.dataType):
            return False
        if f.nullable and not t.nullable:
            return False
    return True


def loose(data_type):
    """A type's JSON with every nullability flag and field metadata dropped."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if k not in ("nullable", "containsNull", "valueContainsNull", "metadata")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(data_type.jsonValue())


def describe(exc):
    if isinstance(exc, (FlowError, expectations.ExpectationViolation, cdc.CdcError)):
        return {"class_name": type(exc).__name__, "message": str(exc)}
    name = type(exc).__name__
    message = str(exc).strip() or name
    # Spark Connect errors carry the server's message first; keep it short.
    first = message.splitlines()[0] if message else name
    return {
        "class_name": name,
        "message": first[:2000],
        "stack": traceback.format_exception_only(type(exc), exc)[-1:][:1],
    }


def main():
    out_lock = threading.Lock()

    def send(message):
        line = json.dumps(message, default=str)
        with out_lock:
            sys.__stdout__.write(line + "\n")
            sys.__stdout__.flush()

    try:
        worker = Worker(os.environ["KILN_SPARK_URL"])
    except Exception as exc:  # noqa: BLE001
        send({"ready": False, "error": describe(exc)})
        return 1
    # User code's prints must not reach the protocol stream.
    sys.stdout = sys.stderr
    send({"ready": True})

    def handle(request):
        op = OPS.get(str(request.get("op")))
        try:
            if op is None:
                raise FlowError(f"unknown op {request.get('op')}")
            send({"id": request.get("id"), "ok": True, "result": op(worker, request)})
        except BaseException as exc:  # noqa: BLE001 - every failure is an answer
            send({"id": request.get("id"), "ok": False, "error": describe(exc)})

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
        except ValueError:
            continue
        threading.Thread(target=handle, args=(request,), daemon=True).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
