"""Notebook magic commands, handled in the kernel so that every path that runs a command
(REST 1.2, notebook cells from the web UI, `%run`) has them: a command whose first line is
`%<name>` runs as that magic.

  %python / %sql   the rest of the command in that language (`_sqldf` holds %sql's DataFrame)
  %md              rendered as HTML, nothing runs
  %pip             install|uninstall|list|show|freeze into the context's own library directory,
                   which comes first on sys.path (other contexts are unaffected)
  %sh              a shell command, as the context's identity inside its sandbox
  %fs              the dbutils.fs verbs (`%fs ls /path`)
  %run             another notebook's cells into this context's namespace
"""

import html
import os
import re
import shlex
import subprocess
import sys

_MAGIC = re.compile(r"^[ \t]*%([A-Za-z_]\w*)(?:[ \t]+(.*))?$")

LANGUAGES = {"python", "sql", "md", "pip", "sh", "fs", "run"}
OTHER_LANGUAGES = {"scala", "r"}


class MagicError(Exception):
    """A magic command this context cannot run (shown as the command's error)."""


def split(code):
    """`(name, arguments, body)` when the command's first non-blank line is a magic."""
    lines = code.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return None
    match = _MAGIC.match(lines[first])
    if match is None:
        return None
    return match.group(1).lower(), (match.group(2) or "").strip(), "\n".join(lines[first + 1:])


def check(name, language):
    if name in LANGUAGES:
        return
    if name in OTHER_LANGUAGES:
        raise MagicError(f"%{name} cannot run in a {language} context: create a {name} context for it")
    raise MagicError(f"Magic command %{name} is not supported (supported: {', '.join('%' + m for m in sorted(LANGUAGES))})")


# ---- %pip --------------------------------------------------------------------------------

def pip_dir():
    """The context's own library directory (in its private home, so no other context sees it)."""
    path = os.path.join(os.environ.get("HOME") or "/tmp", ".kiln-pip")
    os.makedirs(path, exist_ok=True)
    if path not in sys.path:
        sys.path.insert(0, path)
    return path


def pip(arguments, body):
    words = shlex.split((arguments + " " + body).strip())
    if not words:
        raise MagicError("%pip needs a command: install, uninstall, list, show or freeze")
    verb, rest = words[0], words[1:]
    target = pip_dir()
    base = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([target] + [p for p in sys.path if p and p != target]))
    if verb == "install":
        command = base + ["install", "--target", target, "--upgrade"] + rest
    elif verb == "uninstall":
        return uninstall(target, [w for w in rest if not w.startswith("-")])
    elif verb in ("list", "show", "freeze"):
        command = base + [verb] + rest
    else:
        raise MagicError(f"%pip {verb} is not supported here (install, uninstall, list, show, freeze)")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    print(done.stdout, end="")
    if done.returncode != 0:
        raise MagicError(f"%pip {verb} failed:\n{done.stderr.strip() or done.stdout.strip()}")
    import importlib

    importlib.invalidate_caches()
    if verb == "install":
        print("Note: you may need to restart the kernel using dbutils.library.restartPython() to use updated packages.")


def uninstall(target, names):
    """Removes packages installed into this context (never the cluster's or the runtime's)."""
    from importlib import metadata

    if not names:
        raise MagicError("%pip uninstall needs a package name")
    by_name = {(d.metadata["Name"] or "").lower().replace("_", "-"): d for d in metadata.distributions(path=[target])}
    for name in names:
        dist = by_name.get(name.lower().replace("_", "-"))
        if dist is None:
            print(f"WARNING: Skipping {name} as it is not installed in this notebook's environment.")
            continue
        for file in dist.files or []:
            path = os.path.realpath(os.path.join(target, str(file)))
            if path.startswith(os.path.realpath(target) + os.sep) and os.path.isfile(path):
                os.remove(path)
        for root, dirs, files in os.walk(target, topdown=False):
            if root != target and not os.listdir(root):
                os.rmdir(root)
        for module in [m for m in sys.modules if getattr(sys.modules[m], "__file__", "") and str(sys.modules[m].__file__).startswith(target)]:
            del sys.modules[module]
        print(f"Successfully uninstalled {dist.metadata['Name']}-{dist.version}")


def forget_pip_modules():
    """Modules loaded from the context's library directory: forgotten on restartPython()."""
    target = pip_dir()
    for module in [m for m in list(sys.modules) if str(getattr(sys.modules[m], "__file__", "") or "").startswith(target)]:
        del sys.modules[module]
    import importlib

    importlib.invalidate_caches()


# ---- %sh ---------------------------------------------------------------------------------

def sh(arguments, body):
    script = (arguments + "\n" + body).strip()
    done = subprocess.run(["/bin/bash", "-c", script], capture_output=True, text=True, cwd=os.environ.get("HOME") or None)
    print((done.stdout + done.stderr).rstrip("\n"))
    if done.returncode != 0:
        raise MagicError(f"%sh exited with status {done.returncode}")


# ---- %fs ---------------------------------------------------------------------------------

FS_VERBS = {"ls", "cp", "mv", "rm", "mkdirs", "head", "put", "mounts"}


def fs(dbutils, arguments, body):
    words = shlex.split((arguments + " " + body).strip())
    if not words or words[0] not in FS_VERBS:
        raise MagicError(f"%fs needs one of: {', '.join(sorted(FS_VERBS))}")
    verb, args = words[0], words[1:]
    flags = {a for a in args if a.startswith("-")}
    args = [a for a in args if not a.startswith("-")]
    recurse = bool(flags & {"-r", "--recurse", "-R"})
    if verb in ("cp", "mv"):
        return getattr(dbutils.fs, verb)(*args[:2], recurse=recurse)
    if verb == "rm":
        return dbutils.fs.rm(args[0], recurse=recurse)
    if verb == "put":
        return dbutils.fs.put(args[0], args[1] if len(args) > 1 else "", overwrite="--overwrite" in flags or "-f" in flags)
    return getattr(dbutils.fs, verb)(*args)


# ---- %md ---------------------------------------------------------------------------------

def _inline(text):
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<!\*)\*([^*]+)\*(?!\*)", r"<em>\1</em>", text)
    return re.sub(r"\[([^\]]+)\]\((https?://[^)\s]+)\)", r'<a href="\2">\1</a>', text)


def markdown(source):
    """A small Markdown renderer: headings, paragraphs, lists, code blocks, emphasis, links."""
    out, paragraph, items, code = [], [], [], None
    def flush():
        if paragraph:
            out.append("<p>" + _inline(" ".join(paragraph)) + "</p>")
            paragraph.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()
    for line in source.split("\n"):
        if code is not None:
            if line.strip().startswith("```"):
                out.append("<pre><code>" + html.escape("\n".join(code)) + "</code></pre>")
                code = None
            else:
                code.append(line)
            continue
        stripped = line.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if stripped.startswith("```"):
            flush()
            code = []
        elif heading:
            flush()
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif re.match(r"^[-*+]\s+", stripped):
            if paragraph:
                flush()
            items.append(re.sub(r"^[-*+]\s+", "", stripped))
        elif not stripped:
            flush()
        else:
            paragraph.append(stripped)
    if code is not None:
        out.append("<pre><code>" + html.escape("\n".join(code)) + "</code></pre>")
    flush()
    return "\n".join(out)


# ---- %run --------------------------------------------------------------------------------

def notebook_cells(source):
    """The cells of a notebook exported as SOURCE: `(language, code)` each, `MAGIC` lines unwrapped."""
    lines = source.split("\n")
    language = "python"
    if lines and lines[0].startswith("-- Databricks notebook source"):
        language = "sql"
    if lines and "Databricks notebook source" in lines[0]:
        lines = lines[1:]
    cells, current = [], []
    separator = re.compile(r"^\s*(#|--|//)\s*COMMAND -+\s*$")
    for line in lines + ["# COMMAND ----------"]:
        if separator.match(line):
            text = "\n".join(current).strip("\n")
            if text.strip():
                magic_lines = [re.sub(r"^\s*(#|--|//)\s*MAGIC ?", "", l) for l in text.split("\n")]
                if all(re.match(r"^\s*(#|--|//)\s*MAGIC", l) or not l.strip() for l in text.split("\n")):
                    text = "\n".join(magic_lines)
                cells.append((language, text))
            current = []
        else:
            current.append(line)
    return cells


def resolve_notebook(path, current):
    """`./other` and `../x/y` against the running notebook's folder; absolute paths as given."""
    path = path.strip().strip('"').strip("'")
    if path.startswith("/"):
        return os.path.normpath(path)
    if not current:
        raise MagicError("%run with a relative path needs the notebook's own path; give an absolute workspace path")
    return os.path.normpath(os.path.join(os.path.dirname(current), path))
