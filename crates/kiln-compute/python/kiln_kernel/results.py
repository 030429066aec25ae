"""Result payloads in the REST API 1.2 `results` shape."""

import html
import json
import traceback

MAX_TEXT = 256 * 1024
TRUNCATION_NOTE = "\n*** WARNING: max output size exceeded, skipping output. ***"


def text(data: str, html_out: str = "") -> dict:
    """Text output; `html_out` is what `displayHTML` showed (an extra field
    clients ignore; Kiln's notebook view renders it in a sandboxed frame)."""
    truncated = len(data) > MAX_TEXT
    if truncated:
        data = data[:MAX_TEXT] + TRUNCATION_NOTE
    result = {"resultType": "text", "data": data}
    if truncated:
        result["truncated"] = True
    if html_out and len(html_out) <= MAX_TEXT:
        result["html"] = html_out
    return result


def table(rows: list, schema: list, truncated: bool) -> dict:
    return {"resultType": "table", "data": rows, "schema": schema, "truncated": truncated, "isJsonSchema": True}


def images(file_names: list) -> dict:
    if len(file_names) == 1:
        return {"resultType": "image", "fileName": file_names[0]}
    return {"resultType": "images", "fileNames": file_names}


def error(exc: BaseException, with_traceback: bool = True) -> dict:
    name = type(exc).__name__
    message = str(exc).strip()
    summary = f"{name}: {message}" if message else name
    if with_traceback:
        cause = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    else:
        cause = summary
    return {"resultType": "error", "summary": f"<span class='ansi-red-fg'>{html.escape(summary)}</span>", "cause": cause}


def cancelled() -> dict:
    return {"resultType": "error", "summary": "Command cancelled", "cause": "CommandCancelledException: the command was cancelled by the user"}


def schema_of(struct_type) -> list:
    """Databricks' table schema: one object per column, type as a JSON-encoded Spark type."""
    return [
        {"name": f.name, "type": json.dumps(f.dataType.jsonValue()), "metadata": json.dumps(f.metadata or {})}
        for f in struct_type.fields
    ]


def jsonable(value):
    """A cell value as JSON can carry it (dates and decimals as strings)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if hasattr(value, "asDict"):
        return jsonable(value.asDict(recursive=True))
    if isinstance(value, (bytes, bytearray)):
        return list(value)
    return str(value)


REDACTED = "[REDACTED]"


def redact(payload, secrets):
    """Replaces every secret value the context read with [REDACTED], in any
    string of the payload (text, table cells, error summary and cause)."""
    values = sorted((v for v in secrets if v), key=len, reverse=True)
    if not values:
        return payload

    def scrub(value):
        if isinstance(value, str):
            for secret in values:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        return value

    return scrub(payload)
