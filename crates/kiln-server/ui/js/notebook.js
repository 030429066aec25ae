// A notebook: cells in Databricks SOURCE format, attached to a cluster through
// REST 1.2 execution contexts; run a cell, run all, cancel; save through the
// Workspace API.
import { get, post } from "./api.js";
import { h, replace, button, errorBox, b64decode, b64encode, field } from "./dom.js";
import { renderResult } from "./results.js";
import { runningClusters } from "./compute.js";
import { wsHref } from "./workspace.js";

const ROW_LIMIT = 1000;
let editorLoad = null;
// CodeMirror (bundled in vendor/editor.js), loaded once, only on notebook pages.
const editorModule = () => (editorLoad ||= import("../vendor/editor.js"));
const SEP = { PYTHON: "# COMMAND ----------", SQL: "-- COMMAND ----------" };
const MAGIC = { PYTHON: "# MAGIC", SQL: "-- MAGIC" };
const HEADER = { PYTHON: "# Databricks notebook source", SQL: "-- Databricks notebook source" };

export function parseSource(text, language) {
  const lang = SEP[language] ? language : "PYTHON";
  let body = text.replace(/\r\n/g, "\n");
  if (body.startsWith(HEADER[lang])) body = body.slice(HEADER[lang].length);
  const chunks = body.split(new RegExp(`\\n\\s*${escape(SEP[lang])}\\s*\\n`));
  return chunks.map((chunk) => {
    const lines = chunk.replace(/^\n+|\n+$/g, "").split("\n");
    const magic = lines.length > 0 && lines.every((l) => l.startsWith(MAGIC[lang]));
    return magic ? lines.map((l) => l.slice(MAGIC[lang].length).replace(/^ /, "")).join("\n") : lines.join("\n");
  }).filter((c, i, all) => c.trim() !== "" || all.length === 1);
}

export function toSource(cells, language) {
  const lang = SEP[language] ? language : "PYTHON";
  const parts = cells.map((c) => (c.trimStart().startsWith("%")
    ? c.split("\n").map((l) => (l ? `${MAGIC[lang]} ${l}` : MAGIC[lang])).join("\n") : c));
  return `${HEADER[lang]}\n` + parts.join(`\n\n${SEP[lang]}\n\n`) + "\n";
}

function escape(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// The language a cell runs in, and its code without the magic line.
// Markdown as DOM nodes (text only: nothing in it is parsed as HTML):
// headings, paragraphs, lists, fenced code, **bold**, *italic*, `code`.
function inline(text) {
  const parts = [];
  const re = /(\*\*[^*]+\*\*|\*[^*]+\*|`[^`]+`)/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) parts.push(text.slice(last, m.index));
    const t = m[0];
    if (t.startsWith("**")) parts.push(h("strong", {}, t.slice(2, -2)));
    else if (t.startsWith("`")) parts.push(h("code", {}, t.slice(1, -1)));
    else parts.push(h("em", {}, t.slice(1, -1)));
    last = m.index + t.length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}

export function markdownView(source) {
  const root = h("div", { class: "markdown" });
  let para = [], list = null, code = null;
  const flush = () => {
    if (para.length) root.append(h("p", {}, ...inline(para.join(" "))));
    para = [];
    list = null;
  };
  for (const line of source.split("\n")) {
    const t = line.trim();
    if (code) {
      if (t.startsWith("```")) { root.append(h("pre", {}, h("code", {}, code.join("\n")))); code = null; } else code.push(line);
      continue;
    }
    const heading = t.match(/^(#{1,6})\s+(.*)$/);
    if (t.startsWith("```")) { flush(); code = []; }
    else if (heading) { flush(); root.append(h(`h${heading[1].length}`, {}, ...inline(heading[2]))); }
    else if (/^[-*+]\s+/.test(t)) {
      if (para.length) flush();
      if (!list) { list = h("ul"); root.append(list); }
      list.append(h("li", {}, ...inline(t.replace(/^[-*+]\s+/, ""))));
    } else if (!t) flush();
    else para.push(t);
  }
  if (code) root.append(h("pre", {}, h("code", {}, code.join("\n"))));
  flush();
  return root;
}

// `%md` renders here and `%scala` goes to a Scala context; every other cell
// (its magic included: %sql, %pip, %sh, %fs, %run, …) goes whole to the
// notebook's context, whose kernel handles the magics as on Databricks.
export function cellCommand(source, language) {
  const m = source.match(/^\s*%(\w+)[ \t]*\n?/);
  const lang = language === "SQL" ? "sql" : "python";
  if (m && (m[1] === "md" || m[1] === "scala")) return { language: m[1], code: source.slice(m[0].length) };
  return { language: lang, code: source };
}

export async function render(ctx) {
  const path = "/" + ctx.params.join("/");
  const status = h("div");
  let language = "PYTHON";
  let cells = [""];
  try {
    const info = await get("/api/2.0/workspace/get-status", { path });
    language = info.language || "PYTHON";
    const res = await get("/api/2.0/workspace/export", { path, format: "SOURCE" });
    cells = parseSource(b64decode(res.content), language);
  } catch (err) {
    return replace(ctx.el, errorBox(err));
  }
  const state = { cluster: "", context: "", running: null, cancelled: false, path };
  const clusterSel = h("select", { name: "cluster", "aria-label": "Attach to cluster" }, h("option", { value: "" }, "Detached"));
  runningClusters().then((cs) => cs.forEach((c) => clusterSel.append(h("option", { value: c.cluster_id }, `${c.cluster_name} (${c.state})`))))
    .catch(() => {});
  clusterSel.addEventListener("change", () => { state.cluster = clusterSel.value; state.context = ""; state.scalaContext = ""; });
  const list = h("div", { class: "cells" });
  const views = [];
  const addCell = (source, at = views.length) => {
    const view = cellView(source, state, language, status, () => remove(view));
    views.splice(at, 0, view);
    list.insertBefore(view.el, list.children[at] || null);
    return view;
  };
  const remove = (view) => {
    views.splice(views.indexOf(view), 1);
    view.el.remove();
  };
  cells.forEach((c) => addCell(c));
  const runAll = button("Run all", async () => {
    state.cancelled = false;
    runAll.disabled = true;
    try {
      for (const v of views) {
        if (state.cancelled || !ctx.live()) break;
        if (!(await v.run())) break;
      }
    } finally {
      runAll.disabled = false;
    }
  });
  const cancel = button("Cancel", () => { state.cancelled = true; cancelRunning(state); });
  const save = button("Save", async () => {
    try {
      await post("/api/2.0/workspace/import", { path, format: "SOURCE", language, overwrite: true,
        content: b64encode(toSource(views.map((v) => v.source()), language)) });
      replace(status, h("p", { class: "ok" }, "Saved."));
    } catch (err) {
      replace(status, errorBox(err));
    }
  }, { class: "primary" });
  const dir = path.split("/").slice(0, -1).join("/");
  replace(ctx.el,
    h("div", { class: "bar" }, h("h1", {}, path.split("/").pop()), h("span", { class: "muted" }, language.toLowerCase())),
    h("p", {}, h("a", { href: wsHref(dir) }, `← ${dir}`)),
    h("div", { class: "actions wrap toolbar" }, field("Cluster", clusterSel), runAll, cancel, save,
      button("Add cell", () => addCell("").focus())),
    status, list);
}

function cellView(source, state, language, status, onRemove) {
  const host = h("div", { class: "editor" });
  let editor = null;
  const value = () => (editor ? editor.getValue() : source);
  const output = h("div", { class: "output", "aria-live": "polite" });
  const run = async () => {
    const cmd = cellCommand(value(), language);
    if (cmd.language === "md") {
      replace(output, markdownView(cmd.code));
      return true;
    }
    if (!state.cluster) {
      replace(output, errorBox("Attach the notebook to a running cluster first."));
      return false;
    }
    replace(output, h("p", { class: "muted running" }, "Running…"));
    try {
      const results = await execute(state, cmd);
      replace(output, renderResult(results.results, ROW_LIMIT));
      return results.status === "Finished";
    } catch (err) {
      replace(output, errorBox(err));
      return false;
    }
  };
  const lang = /^\s*%sql\b/.test(source) || (language === "SQL" && !/^\s*%python\b/.test(source)) ? "sql" : "python";
  editorModule().then(({ createEditor }) => {
    const nonce = document.querySelector('meta[name="csp-nonce"]')?.content || "";
    editor = createEditor(host, { doc: source, language: lang, onRun: () => run(), label: "Cell source", nonce });
  });
  const runBtn = button("Run", () => run(), { "aria-label": "Run cell", title: "Run cell (Shift+Enter)" });
  const del = button("Delete", onRemove, { "aria-label": "Delete cell", class: "subtle" });
  const el = h("div", { class: "cell" }, h("div", { class: "cell-bar" }, runBtn, del), host, output);
  return { el, run, source: value, focus: () => editorModule().then(() => editor && editor.focus()) };
}

// Python and SQL cells share the notebook's Python context; `%scala` cells
// run in a Scala context of their own (its REPL keeps their values).
async function execute(state, cmd) {
  const key = cmd.language === "scala" ? "scalaContext" : "context";
  if (!state[key]) {
    const ctx = await post("/api/1.2/contexts/create", { clusterId: state.cluster, language: cmd.language === "scala" ? "scala" : "python" });
    state[key] = ctx.id;
  }
  const contextId = state[key];
  const started = await post("/api/1.2/commands/execute", { clusterId: state.cluster, contextId,
    language: cmd.language, command: cmd.code, options: { displayRowLimit: ROW_LIMIT, notebookPath: state.path } });
  state.running = started.id;
  state.runningContext = contextId;
  try {
    for (;;) {
      const res = await get("/api/1.2/commands/status", { clusterId: state.cluster, contextId, commandId: started.id });
      if (["Finished", "Error", "Cancelled"].includes(res.status)) return res;
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    state.running = null;
  }
}

async function cancelRunning(state) {
  if (!state.running) return;
  await post("/api/1.2/commands/cancel", { clusterId: state.cluster, contextId: state.runningContext || state.context, commandId: state.running }).catch(() => {});
}
