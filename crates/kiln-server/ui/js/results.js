// Renders a REST 1.2 `results` object: text, tables (sortable), errors with
// their traceback, images, and displayHTML in a sandboxed frame (no scripts,
// no same-origin access).
import { get } from "./api.js";
import { h, button } from "./dom.js";

export function renderResult(results, rowLimit) {
  if (!results) return h("div", { class: "muted" }, "No output.");
  switch (results.resultType) {
    case "table":
      return resultTable(results, rowLimit);
    case "error":
      return h("div", { class: "result error-result", role: "alert" },
        h("div", { class: "summary" }, plain(results.summary || "Error")),
        results.cause ? h("pre", { class: "traceback" }, results.cause) : null);
    case "image":
      return images([results.fileName]);
    case "images":
      return images(results.fileNames || []);
    default: {
      const out = [];
      if (results.html) out.push(htmlFrame(results.html));
      const text = results.html ? String(results.data || "").replace(results.html, "").trim() : results.data;
      if (text || !results.html) out.push(h("pre", { class: "text-result" }, text ?? ""));
      if (results.truncated) out.push(h("p", { class: "muted" }, "Output truncated."));
      return h("div", { class: "result" }, out);
    }
  }
}

// Summaries may carry Databricks' ANSI markup; show its text only.
function plain(markup) {
  return new DOMParser().parseFromString(String(markup), "text/html").body.textContent;
}

function htmlFrame(html) {
  const frame = h("iframe", { sandbox: "", class: "html-result", title: "displayHTML output", referrerpolicy: "no-referrer" });
  frame.srcdoc = html;
  return frame;
}

function resultTable(results, rowLimit) {
  const schema = results.schema || [];
  let rows = (results.data || []).slice();
  const body = h("tbody");
  const draw = () => body.replaceChildren(...rows.map((r) => h("tr", {}, r.map((v) => h("td", {}, cell(v))))));
  let sortCol = -1, asc = true;
  const heads = schema.map((c, i) => {
    const b = button(`${c.name}`, () => {
      asc = sortCol === i ? !asc : true;
      sortCol = i;
      rows.sort((x, y) => compare(x[i], y[i]) * (asc ? 1 : -1));
      heads.forEach((th, j) => th.setAttribute("aria-sort", j === i ? (asc ? "ascending" : "descending") : "none"));
      draw();
    }, { class: "sort", title: typeName(c.type) });
    return h("th", { scope: "col", "aria-sort": "none" }, b);
  });
  draw();
  const note = `${rows.length} row${rows.length === 1 ? "" : "s"}` +
    (results.truncated ? ` (truncated at the row limit${rowLimit ? ` of ${rowLimit}` : ""})` : "");
  return h("div", { class: "result" }, h("div", { class: "table-wrap" },
    h("table", { class: "data" }, h("thead", {}, h("tr", {}, heads)), body)), h("p", { class: "muted" }, note));
}

function typeName(t) {
  if (typeof t !== "string") return JSON.stringify(t);
  try {
    return JSON.parse(t);
  } catch {
    return t;
  }
}

function cell(v) {
  if (v === null || v === undefined) return h("span", { class: "null" }, "null");
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return -1;
  if (b === null || b === undefined) return 1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

function images(names) {
  return h("div", { class: "result" }, names.map((name) => {
    const img = h("img", { alt: `Figure ${name}`, class: "figure" });
    get("/api/2.0/dbfs/read", { path: `/FileStore${name}`, length: 1 << 20 })
      .then((r) => { img.src = `data:image/png;base64,${r.data}`; })
      .catch(() => { img.alt = `Could not load ${name}`; });
    return img;
  }));
}
