"""Line-delimited JSON between Kiln and a kernel.

Kiln -> kernel (stdin), one JSON object per line:
  {"op": "execute", "id": "<command id>", "language": "python"|"sql", "code": "...",
   "options": {"displayRowLimit": 10000}}
  {"op": "exit"}
Kernel -> Kiln (a private duplicate of the original stdout), one JSON object per line:
  {"event": "ready", "pid": 123}                     after start-up (Spark session connected)
  {"event": "started", "id": "..."}                  a command began running
  {"event": "done", "id": "...", "status": "Finished"|"Error"|"Cancelled", "results": {...}}
Cancellation is SIGINT to the kernel process while a command runs.
"""

import json
import os
import sys


class Channel:
    def __init__(self):
        # Keep the real stdout for the protocol; user code and native libraries
        # that write to fd 1 go to stderr (Kiln's kernel log) instead.
        self._out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)
        self._in = sys.stdin

    def send(self, message: dict) -> None:
        self._out.write(json.dumps(message, default=str) + "\n")
        self._out.flush()

    def receive(self):
        line = self._in.readline()
        if not line:
            return None
        return json.loads(line)
