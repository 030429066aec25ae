"""`dbutils.notebook.run(path, timeout_seconds, arguments)`: another notebook run in an
execution context of its own on this cluster, as the same user (through Kiln's REST API with the
context's credential), its `arguments` read by `dbutils.widgets`; returns the value it passes
to `dbutils.notebook.exit` ("" if none). Its definitions stay in its own context, as on
Databricks (unlike `%run`)."""

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request

from kiln_kernel import magics

TERMINAL = ("Finished", "Error", "Cancelled")


class NotebookRunError(Exception):
    """The notebook failed (or timed out); the message says how."""


def _call(api, method, path, body=None, params=None):
    url = api["url"] + path + ("?" + urllib.parse.urlencode(params) if params else "")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": "Bearer " + api.get("credential", ""), "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            detail = json.loads(error.read() or b"{}")
        except ValueError:
            detail = {}
        raise NotebookRunError(f"{detail.get('error_code', error.code)}: {detail.get('message', error.reason)}") from None


def _poll(fn, done, deadline, interval=0.05):
    while True:
        value = fn()
        if done(value):
            return value
        if deadline is not None and time.monotonic() > deadline:
            return None
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


def run(api, cluster_id, current_path, path, timeout_seconds=0, arguments=None):
    if not api.get("url") or not cluster_id:
        raise RuntimeError("dbutils.notebook.run is not available in this context")
    target = magics.resolve_notebook(path, current_path)
    exported = _call(api, "GET", "/api/2.0/workspace/export", params={"path": target, "format": "SOURCE"})
    cells = magics.notebook_cells(base64.b64decode(exported["content"]).decode("utf-8"))
    deadline = time.monotonic() + timeout_seconds if timeout_seconds and timeout_seconds > 0 else None
    widgets = {str(k): str(v) for k, v in (arguments or {}).items()}
    context = _call(api, "POST", "/api/1.2/contexts/create", {"clusterId": cluster_id, "language": "python"})["id"]
    ids = {"clusterId": cluster_id, "contextId": context}
    try:
        status = _poll(lambda: _call(api, "GET", "/api/1.2/contexts/status", params=ids),
                       lambda s: s.get("status") in ("Running", "Error"), deadline)  # fmt: skip
        if status is None or status.get("status") != "Running":
            raise NotebookRunError(f"Notebook {target} could not start: {status}")
        for language, code in cells:
            command = _call(api, "POST", "/api/1.2/commands/execute", dict(ids, language=language, command=code,
                            options={"notebookPath": target, "widgets": widgets}))["id"]  # fmt: skip
            query = dict(ids, commandId=command)
            result = _poll(lambda: _call(api, "GET", "/api/1.2/commands/status", params=query),
                           lambda r: r.get("status") in TERMINAL, deadline)  # fmt: skip
            if result is None:
                _call(api, "POST", "/api/1.2/commands/cancel", dict(query))
                raise NotebookRunError(f"Notebook {target} timed out after {timeout_seconds} seconds")
            results = result.get("results") or {}
            if result["status"] != "Finished" or results.get("resultType") == "error":
                summary = results.get("summary") or results.get("cause") or result["status"]
                raise NotebookRunError(f"Notebook {target} failed: {summary}")
            if "notebookExitValue" in results:
                return results["notebookExitValue"]
        return ""
    finally:
        try:
            _call(api, "POST", "/api/1.2/contexts/destroy", ids)
        except NotebookRunError:
            pass
