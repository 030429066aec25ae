// SQL: the editor (pick a warehouse, run a statement through the Statement
// Execution API, a sortable result grid with its row count and timing, the
// query history) and the warehouses page (create, start/stop, delete,
// connection details for the SQL connector, JDBC and ODBC).
import { get, post, api } from "./api.js";
import { h, replace, button, badge, time, table, errorBox, act, section, field } from "./dom.js";

const W = "/api/2.0/sql/warehouses";
const S = "/api/2.0/sql/statements";

export async function render(ctx) {
  if (ctx.params[0] === "warehouses") return warehousesPage(ctx);
  return editorPage(ctx);
}

async function editorPage(ctx) {
  const status = h("div"), result = h("div"), history = h("div");
  const pick = h("select", { "aria-label": "Warehouse" });
  const text = h("textarea", { class: "code", rows: 8, spellcheck: "false", "aria-label": "SQL statement" }, "SELECT 1 AS one");
  const run = button("Run", () => act(run, async () => {
    replace(result, h("p", { class: "muted" }, "Running…"));
    const started = performance.now();
    let s = await post(S, { statement: text.value, warehouse_id: pick.value, wait_timeout: "30s", row_limit: 10000 });
    while (["PENDING", "RUNNING"].includes(s.status.state)) {
      await new Promise((r) => setTimeout(r, 500));
      s = await get(`${S}/${s.statement_id}`);
    }
    showResult(result, s, performance.now() - started);
    await refreshHistory();
  }, status));
  const refreshHistory = async () => {
    const q = await get("/api/2.0/sql/history/queries", { max_results: 20 });
    replace(history, section("Query history", (q.res || []).length ? table([
      ["Query", (r) => h("code", {}, r.query_text.length > 80 ? `${r.query_text.slice(0, 80)}…` : r.query_text)],
      ["Status", (r) => badge(r.status)], ["Started", (r) => time(r.query_start_time_ms)],
      ["Duration", (r) => (r.duration != null ? `${r.duration} ms` : "")], ["Rows", (r) => String(r.rows_produced ?? "")],
      ["Warehouse", (r) => r.warehouse_id]], q.res, { class: "list", "aria-label": "Query history" })
      : h("p", { class: "muted" }, "Nothing ran yet.")));
  };
  replace(ctx.el, h("div", { class: "bar" }, h("h1", {}, "SQL editor"), h("a", { href: "#/sql/warehouses" }, "Warehouses")),
    status, h("div", { class: "bar" }, field("Warehouse", pick), run), text, result, history);
  try {
    const list = (await get(W)).warehouses || [];
    replace(pick, list.map((w) => h("option", { value: w.id }, `${w.name} (${w.state})`)));
    if (!list.length) replace(status, h("p", { class: "muted" }, "No warehouse yet: create one on the Warehouses page."));
    await refreshHistory();
  } catch (err) {
    replace(status, errorBox(err));
  }
}

function showResult(el, s, ms) {
  if (s.status.state !== "SUCCEEDED") {
    replace(el, errorBox(s.status.error?.message || s.status.state));
    return;
  }
  const cols = s.manifest?.schema?.columns || [];
  const rows = [...(s.result?.data_array || [])];
  const total = s.manifest?.total_row_count ?? rows.length;
  const grid = h("div");
  let order = { col: -1, asc: true };
  const draw = () => {
    if (order.col >= 0) {
      const i = order.col, dir = order.asc ? 1 : -1;
      const num = (v) => (v !== null && v !== "" && !isNaN(Number(v)) ? Number(v) : null);
      rows.sort((a, b) => {
        const x = a[i], y = b[i];
        if (x === null || y === null) return (x === null) - (y === null);
        const nx = num(x), ny = num(y);
        return (nx !== null && ny !== null ? nx - ny : String(x).localeCompare(String(y))) * dir;
      });
    }
    replace(grid, h("table", { class: "list result", "aria-label": "Result" },
      h("thead", {}, h("tr", {}, cols.map((c, i) => h("th", { scope: "col", "aria-sort": order.col === i ? (order.asc ? "ascending" : "descending") : null },
        h("button", { class: "sort", title: c.type_text, onclick: () => { order = { col: i, asc: order.col === i ? !order.asc : true }; draw(); } },
          c.name))))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((v) => h("td", { class: v === null ? "muted" : "" }, v === null ? "null" : v)))))));
  };
  draw();
  replace(el, h("p", { class: "muted", "aria-label": "Result summary" },
    `${total} row${total === 1 ? "" : "s"}${s.manifest?.truncated ? " (truncated)" : ""} in ${Math.round(ms)} ms`), grid);
}

async function warehousesPage(ctx) {
  const status = h("div"), list = h("div"), details = h("div");
  const name = h("input", { "aria-label": "Warehouse name", placeholder: "name" });
  const size = h("select", { "aria-label": "Cluster size" },
    ["2X-Small", "X-Small", "Small", "Medium", "Large"].map((s) => h("option", { value: s }, s)));
  const create = button("Create warehouse", () => act(create, async () => {
    await post(W, { name: name.value, cluster_size: size.value, auto_stop_mins: 10 });
    name.value = "";
    await refresh();
  }, status));
  const refresh = async () => {
    const ws = (await get(W)).warehouses || [];
    replace(list, ws.length ? table([
      ["Name", (w) => w.name], ["State", (w) => badge(w.state)], ["Size", (w) => w.cluster_size],
      ["Engines", (w) => `${w.num_clusters} of ${w.min_num_clusters}–${w.max_num_clusters}`],
      ["Auto stop", (w) => (w.auto_stop_mins ? `${w.auto_stop_mins} min` : "never")],
      ["", (w) => h("span", { class: "actions" },
        button("Connection details", () => showDetails(details, w)),
        w.state === "STOPPED" ? action(`Start ${w.name}`, async () => { await post(`${W}/${w.id}/start`); await refresh(); }, status)
          : action(`Stop ${w.name}`, async () => { await post(`${W}/${w.id}/stop`); await refresh(); }, status),
        action(`Delete ${w.name}`, async () => { await api("DELETE", `${W}/${w.id}`); await refresh(); }, status))]],
      ws, { class: "list", "aria-label": "Warehouses" }) : h("p", { class: "muted" }, "No warehouses yet."));
  };
  replace(ctx.el, h("div", { class: "bar" }, h("h1", {}, "SQL warehouses"), h("a", { href: "#/sql" }, "SQL editor")),
    status, h("div", { class: "bar" }, field("Name", name), field("Size", size), create), list, details);
  await refresh().catch((err) => replace(status, errorBox(err)));
  ctx.poll(() => refresh().catch(() => {}), 2000);
}

// A button that runs `fn`, busy while it does, its error shown in `status`.
function action(label, fn, status) {
  const b = button(label, () => act(b, fn, status));
  return b;
}

function showDetails(el, w) {
  const p = w.odbc_params || {};
  replace(el, section(`Connection details of ${w.name}`, table([["Field", (r) => r[0]], ["Value", (r) => h("code", {}, String(r[1]))]], [
    ["Server hostname", p.hostname], ["Port", p.port], ["Protocol", p.protocol], ["HTTP path", p.path], ["JDBC URL", w.jdbc_url],
    ["Python", `sql.connect(server_hostname="${p.hostname}", _port=${p.port}, http_path="${p.path}", access_token=...)`]],
  { class: "list", "aria-label": "Connection details" })));
}
