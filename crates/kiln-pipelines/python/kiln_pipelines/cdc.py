"""APPLY CHANGES / AUTO CDC, SCD type 1.

Change events are appended to an append-only log table next to the target
(`__kiln_cdc_log_<target>`: the output columns plus `__kiln_seq` and
`__kiln_deleted`); the target is then rewritten as the latest event per key by
`SEQUENCE BY`, without the keys whose latest event is a delete. Events that
arrive out of order (in one batch or across batches) therefore never regress a
row, and a late upsert older than a delete stays deleted. Both writes carry the
batch's `userMetadata`, so a batch replayed after a crash is not logged twice.
Cost: each batch rereads the log (a full recompute of the target).
"""

from kiln_pipelines import delta_log


class CdcError(Exception):
    pass


def quote(name):
    return "`" + name.replace("`", "``") + "`"


def output_columns(frame, spec):
    """The stored columns: `COLUMNS (…)`, or all but `COLUMNS * EXCEPT (…)`."""
    columns = frame.columns
    if spec.get("columns"):
        missing = [c for c in spec["columns"] if c not in columns]
        if missing:
            raise CdcError(f"COLUMNS names {', '.join(missing)}, which the source does not have")
        wanted = list(spec["columns"])
    else:
        excluded = {c.lower() for c in spec.get("except_columns") or []}
        wanted = [c for c in columns if c.lower() not in excluded]
    for key in spec["keys"]:
        if key not in columns:
            raise CdcError(f"KEYS names {key}, which the source does not have")
        if key not in wanted:
            wanted.insert(0, key)
    return wanted


def check(frame, spec):
    """Analysis: the target's schema, with the clauses checked against the source."""
    if int(spec.get("scd_type") or 1) != 1:
        raise CdcError("STORED AS SCD TYPE 2 is not supported by Kiln yet; use SCD TYPE 1")
    if spec.get("truncate_when"):
        raise CdcError("APPLY AS TRUNCATE WHEN is not supported by Kiln yet")
    events(frame, spec).schema  # analyses the sequence and delete expressions
    return frame.select(*[quote(c) for c in output_columns(frame, spec)])


def events(frame, spec):
    if spec.get("where"):
        frame = frame.filter(spec["where"])
    columns = output_columns(frame, spec)
    deleted = f"coalesce(CAST(({spec['delete_when']}) AS BOOLEAN), false)" if spec.get("delete_when") else "false"
    return frame.selectExpr(
        *[quote(c) for c in columns],
        f"({spec['sequence_by']}) AS __kiln_seq",
        f"{deleted} AS __kiln_deleted",
    )


def latest_sql(view, columns, spec):
    """The target's rows from the log: per key the latest event, or with
    IGNORE NULL UPDATES each column's latest non-NULL value since the key's
    latest delete; keys whose latest event is a delete are absent."""
    keys = ", ".join(quote(k) for k in spec["keys"])
    if not spec.get("ignore_null_updates"):
        return (
            f"SELECT {', '.join(quote(c) for c in columns)} FROM ("
            f" SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY __kiln_seq DESC, __kiln_deleted DESC) AS __kiln_rank"
            f" FROM {view}) WHERE __kiln_rank = 1 AND NOT __kiln_deleted"
        )
    key_set = {k.lower() for k in spec["keys"]}
    picks = [
        f"e.{quote(c)}" if c.lower() in key_set
        else f"max_by(e.{quote(c)}, CASE WHEN e.{quote(c)} IS NOT NULL THEN e.__kiln_seq END) AS {quote(c)}"
        for c in columns
    ]
    on = " AND ".join(f"e.{quote(k)} = d.{quote(k)}" for k in spec["keys"])
    return (
        f"SELECT {', '.join(picks)} FROM {view} e JOIN ("
        f" SELECT {keys}, max(CASE WHEN __kiln_deleted THEN __kiln_seq END) AS __kiln_del, max(__kiln_seq) AS __kiln_last"
        f" FROM {view} GROUP BY {keys}) d ON {on}"
        f" WHERE NOT e.__kiln_deleted AND (d.__kiln_del IS NULL OR e.__kiln_seq > d.__kiln_del)"
        f" GROUP BY {', '.join('e.' + quote(k) for k in spec['keys'])}"
    )


def run(worker, req, frame):
    spec = req["cdc"]
    check(frame, spec)
    table, log, metadata = req["target"], req["cdc_log"], req["user_metadata"]
    batch = events(frame, spec)
    counts = batch.selectExpr(
        "count(*) AS n",
        "sum(CASE WHEN __kiln_deleted THEN 1 ELSE 0 END) AS d",
        "sum(CASE WHEN __kiln_seq IS NULL THEN 1 ELSE 0 END) AS nulls",
    ).collect()[0]
    if int(counts["nulls"] or 0) > 0:
        raise CdcError(f"{counts['nulls']} change event(s) have a NULL SEQUENCE BY value ({spec['sequence_by']})")
    if not worker.exists(log):
        worker.create(log, batch, {})
    if delta_log.find_commit(worker.location(log), metadata) is None:
        batch.write.option("userMetadata", metadata).mode("append").insertInto(log)
    columns = [c for c in batch.columns if c not in ("__kiln_seq", "__kiln_deleted")]
    view = "__kiln_cdc_" + str(abs(hash(log)))
    worker.spark.table(log).createOrReplaceTempView(view)
    latest = worker.spark.sql(latest_sql(view, columns, spec))
    if not worker.exists(table):
        worker.create(table, latest, req.get("create") or {})
    latest.write.option("userMetadata", metadata).mode("overwrite").insertInto(table)
    worker.spark.catalog.dropTempView(view)
    total, deletes = int(counts["n"] or 0), int(counts["d"] or 0)
    return {"num_upserted_rows": total - deletes, "num_deleted_rows": deletes}
