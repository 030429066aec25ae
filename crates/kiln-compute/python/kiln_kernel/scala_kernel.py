"""The kernel of a Scala execution context: the same line-delimited JSON
protocol as `kiln_kernel.kernel` (see `protocol.py`), backed by Spark
Connect's Scala REPL (Ammonite) in a JVM of its own, driven by
`scala/KilnScalaRepl.java`.

Started by Kiln as `python -m kiln_kernel.scala_kernel` with:
  KILN_SPARK_URL    the Spark Connect URL of the cluster's engine (through Kiln's front)
  KILN_SCALA_HOME   the installed REPL: `jars/` (pyspark's) and `driver/` (the compiled driver)
  KILN_JAVA         the `java` to run
The REPL keeps its caches under this process's HOME: one per context, so a
stale cache of another launch is never read.
"""

import base64
import ctypes
import fcntl
import json
import os
import re
import signal
import subprocess
import termios
import threading

from kiln_kernel import results
from kiln_kernel.protocol import Channel

PR_SET_PDEATHSIG = 1
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TABLE = "\x02KILN-TABLE "
ROW = "\x02KILN-ROW "
# what the REPL says of source it cannot parse: `(console):1:66 expected ")"`
PARSE_ERROR = re.compile(r"^\(console\):\d+:\d+ ")
EXCEPTION = re.compile(r"^(?:[\w$]+\.)+[\w$]*(?:Exception|Error)\b|^[\w$]*(?:Exception|Error): ")
NO_SPARK_CONTEXT = (
    "Spark Connect has no SparkContext (`sc`), as on Databricks' standard access mode clusters: "
    "use `spark` (a SparkSession), e.g. spark.range(1, 11) instead of sc.parallelize(1 to 10)."
)
NO_JVM_UDFS = (
    "Scala UDFs and typed Dataset lambdas (map, filter or foreach with a Scala function) cannot run on "
    "this cluster's engine (Sail runs SQL, DataFrame operations and Python UDFs)."
)
JVM_OPTIONS = [
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Xss4m",
]

# Defined in every context before the first command: `display` as on Databricks.
PREDEF = r'''
def kilnJson(value: Any): String = value match {
  case null => "null"
  case s: String => "\"" + s.flatMap {
    case '"' => "\\\""
    case '\\' => "\\\\"
    case '\n' => "\\n"
    case '\r' => "\\r"
    case '\t' => "\\t"
    case c if c < ' ' => "\\u%04x".format(c.toInt)
    case c => c.toString
  } + "\""
  case b: Boolean => b.toString
  case n: java.lang.Number if !n.isInstanceOf[java.math.BigDecimal] && !n.isInstanceOf[scala.math.BigDecimal] =>
    val d = n.doubleValue
    if (d.isNaN || d.isInfinite) kilnJson(n.toString) else n.toString
  case r: org.apache.spark.sql.Row => r.toSeq.map(kilnJson).mkString("[", ",", "]")
  case s: scala.collection.Seq[_] => s.map(kilnJson).mkString("[", ",", "]")
  case m: scala.collection.Map[_, _] => m.map { case (k, v) => kilnJson(String.valueOf(k)) + ":" + kilnJson(v) }.mkString("{", ",", "}")
  case a: Array[Byte] => a.map(_ & 0xff).mkString("[", ",", "]")
  case other => kilnJson(other.toString)
}
def display(data: org.apache.spark.sql.Dataset[_]): Unit = {
  val limit = sys.props.getOrElse("kiln.displayRowLimit", "10000").toInt
  val rows = data.toDF().limit(limit + 1).collect()
  println("\u0002KILN-TABLE " + data.schema.json + " " + (rows.length > limit))
  rows.take(limit).foreach(row => println("\u0002KILN-ROW " + kilnJson(row)))
}
'''


class ScalaRepl:
    """One JVM running the REPL; `run` sends source and returns what it printed."""

    def __init__(self, spark_url, home, java):
        jars = os.path.join(home, "jars")
        classpath = ":".join([os.path.join(home, "driver"), os.path.join(jars, "connect-repl", "*"), os.path.join(jars, "*")])
        master, slave = os.openpty()
        self.master = master

        def controlling_tty():
            # The JVM dies with this kernel (it is in a session of its own, so
            # it would outlive a kill of the kernel's process group).
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            # Ammonite reads terminal settings from /dev/tty: give the JVM a
            # terminal of its own while the protocol stays on pipes.
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(
            # user.home: the context's own directory (a kernel's uid has no
            # passwd entry, and the REPL keeps its caches there).
            [java, *JVM_OPTIONS, f"-Duser.home={os.environ.get('HOME') or os.getcwd()}", "-cp", classpath,
             "KilnScalaRepl", "--remote", spark_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            preexec_fn=controlling_tty,
            pass_fds=(slave,),
            # the REPL asks the terminal its size (tput): it needs a TERM
            env={**os.environ, "TERM": "xterm", "COLUMNS": "200", "LINES": "50"},
        )
        os.close(slave)
        threading.Thread(target=self._drain_tty, daemon=True).start()
        first = self.process.stdout.readline().decode().strip()
        if first != "READY":
            detail = base64.b64decode(first.split(" ", 1)[1]).decode(errors="replace") if first.startswith("FAILED ") else first
            raise RuntimeError(f"the Scala REPL did not start: {clean(detail)[-2000:]}")
        self.lock = threading.Lock()

    def _drain_tty(self):
        try:
            while os.read(self.master, 4096):
                pass
        except OSError:
            pass

    def run(self, code):
        payload = code.encode()
        with self.lock:
            self.process.stdin.write(b"RUN %d\n" % len(payload) + payload)
            self.process.stdin.flush()
            line = self.process.stdout.readline().decode()
        if not line.startswith("DONE "):
            raise RuntimeError("the Scala REPL stopped")
        _, ok, data = line.strip("\n").split(" ", 2)
        return ok == "true", base64.b64decode(data).decode(errors="replace")

    def interrupt(self):
        try:
            self.process.stdin.write(b"INTERRUPT\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass


def clean(text):
    return ANSI.sub("", text).replace("\r", "")


def outputs(printed):
    """What each statement printed, without the REPL's echo of the input
    (each statement is echoed as `scala> <source> ` before its output)."""
    text = clean(printed)
    pieces = re.split(r"(?:^|\n)\n?scala> ", text)
    out = []
    for piece in pieces[1:]:
        echo, _, rest = piece.partition(" \n")
        if echo.strip() == "semaphore.release()":
            continue
        out.append(rest.rstrip("\n"))
    if pieces and pieces[0].strip():
        out.insert(0, pieces[0].rstrip("\n"))
    return [o for o in out if o.strip()]


def result_of(printed, row_limit):
    """The REST API 1.2 result of what the REPL printed for one command."""
    blocks = outputs(printed)
    lines = "\n".join(blocks).split("\n")
    table, rows, truncated, text = None, [], False, []
    for line in lines:
        if line.startswith(TABLE):
            schema_json, _, more = line[len(TABLE):].rpartition(" ")
            table, rows, truncated = json.loads(schema_json), [], more == "true"
        elif line.startswith(ROW):
            rows.append(json.loads(line[len(ROW):]))
        else:
            text.append(line)
    body = "\n".join(text).strip("\n")
    failed = (
        "Compilation Failed" in body
        or any(EXCEPTION.match(line) for line in text)
        or any(PARSE_ERROR.match(line) for line in text)
    )
    if failed:
        hints = []
        if re.search(r"not found: value sc\b", body):
            hints.append(NO_SPARK_CONTEXT)
        # The engine refuses a JVM function in its own words (an unsupported
        # operation, a UDF it cannot run): say which code cannot run there.
        if re.search(r"(?i)udf|UnsupportedOperation|not (?:yet )?(?:supported|implemented)|unsupported", body):
            hints.append(NO_JVM_UDFS)
        summary = next((line for line in text if line.strip() and not line.startswith("  ")), "Error")
        cause = "\n".join([body, *hints])
        return "Error", {"resultType": "error", "summary": " ".join([summary.strip(), *hints]), "cause": cause}
    if table is not None:
        schema = [{"name": f["name"], "type": json.dumps(f["type"]), "metadata": json.dumps(f.get("metadata") or {})}
                  for f in table.get("fields", [])]
        return "Finished", results.table(rows[:row_limit], schema, truncated)
    return "Finished", results.text(body)


class Kernel:
    def __init__(self):
        self.repl = ScalaRepl(os.environ["KILN_SPARK_URL"], os.environ["KILN_SCALA_HOME"], os.environ.get("KILN_JAVA", "java"))
        ok, printed = self.repl.run(PREDEF.strip())
        if not ok or "Compilation Failed" in clean(printed):
            raise RuntimeError(f"the Scala context could not be prepared: {clean(printed)[-2000:]}")
        self.executing = False
        self.cancelled = False

    def execute(self, language, code, options):
        row_limit = int((options or {}).get("displayRowLimit") or 10000)
        if language == "sql":
            statements = [s for s in split_statements(code)]
            if not statements:
                return "Finished", results.text("")
            *first, last = statements
            code = "\n".join([f"spark.sql({scala_string(s)})" for s in first] + [f"display(spark.sql({scala_string(last)}))"])
        elif language not in ("scala", None):
            return "Error", {"resultType": "error", "summary": f"A Scala context runs Scala and SQL, not {language}",
                             "cause": f"A Scala context runs Scala and SQL, not {language}: create a {language} context."}
        code = "\n".join(line.rstrip() for line in code.strip("\n").split("\n"))
        if not code.strip():
            return "Finished", results.text("")
        incomplete = unbalanced(code)
        if incomplete:
            message = f"Incomplete command: {incomplete}"
            return "Error", {"resultType": "error", "summary": message, "cause": message}
        ok, printed = self.repl.run(f'sys.props("kiln.displayRowLimit") = "{row_limit}"\n{code}')
        if self.cancelled:
            return "Cancelled", results.cancelled()
        if not ok:
            return "Error", {"resultType": "error", "summary": "The Scala REPL did not answer", "cause": clean(printed)}
        return result_of(printed, row_limit)


def unbalanced(code):
    """Why the REPL would wait for more input (an unclosed bracket or
    string), or None. The REPL never answers such a command, so it is not sent."""
    closers = {"(": ")", "[": "]", "{": "}"}
    stack, i, n = [], 0, len(code)
    while i < n:
        if code.startswith("//", i):
            end = code.find("\n", i)
            i = n if end < 0 else end
            continue
        if code.startswith("/*", i):
            end = code.find("*/", i + 2)
            if end < 0:
                return "an unclosed /* comment"
            i = end + 2
            continue
        if code.startswith('"""', i):
            end = code.find('"""', i + 3)
            if end < 0:
                return 'an unclosed """ string'
            i = end + 3
            continue
        ch = code[i]
        if ch == '"':
            j = i + 1
            while j < n and code[j] != '"' and code[j] != "\n":
                j += 2 if code[j] == "\\" else 1
            if j >= n or code[j] != '"':
                return "an unclosed string"
            i = j + 1
            continue
        if ch == "'":  # a character literal: 'x' or '\\n'
            if code[i + 1:i + 2] == "\\" and code[i + 3:i + 4] == "'":
                i += 4
                continue
            if code[i + 2:i + 3] == "'":
                i += 3
                continue
        if ch in closers:
            stack.append(closers[ch])
        elif ch in ")]}":
            if not stack or stack.pop() != ch:
                return None  # the REPL reports a stray closer itself
        i += 1
    return f"an unclosed {' and '.join(repr(c) for c in reversed(stack))} (missing its closing bracket)" if stack else None


def scala_string(text):
    """A Scala string literal of `text` (triple-quoted, `$` not interpolated)."""
    if '"""' not in text:
        return '"""' + text + '"""'
    return json.dumps(text)


def split_statements(code):
    from kiln_kernel.kernel import split_sql

    return split_sql(code)


def main():
    channel = Channel()
    kernel = Kernel()

    def on_sigint(signum, frame):
        if kernel.executing:
            kernel.cancelled = True
            kernel.repl.interrupt()

    signal.signal(signal.SIGINT, on_sigint)
    channel.send({"event": "ready", "pid": os.getpid()})
    while True:
        message = channel.receive()
        if message is None or message.get("op") == "exit":
            return
        if message.get("op") != "execute":
            continue
        channel.send({"event": "started", "id": message["id"]})
        kernel.executing, kernel.cancelled = True, False
        try:
            status, payload = kernel.execute(message.get("language", "scala"), message.get("code", ""), message.get("options"))
        except Exception as exc:  # noqa: BLE001 - reported as the command's error
            status, payload = "Error", results.error(exc, with_traceback=False)
        finally:
            kernel.executing = False
        channel.send({"event": "done", "id": message["id"], "status": status, "results": payload})


if __name__ == "__main__":
    main()
