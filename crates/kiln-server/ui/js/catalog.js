// Catalog: catalogs → schemas → tables, a table's columns and a sample of
// rows (run as a SQL command on a cluster the user picks).
import { get, post, all } from "./api.js";
import { h, replace, button, table, errorBox, act, section, field } from "./dom.js";
import { renderResult } from "./results.js";
import { runningClusters } from "./compute.js";

const UC = "/api/2.1/unity-catalog";
const href = (...parts) => "#/catalog/" + parts.map(encodeURIComponent).join("/");

export async function render(ctx) {
  const [catalog, schema, tbl] = ctx.params;
  const crumbs = h("nav", { class: "crumbs", "aria-label": "Catalog path" }, h("a", { href: "#/catalog" }, "Catalogs"),
    catalog ? [" / ", h("a", { href: href(catalog) }, catalog)] : null,
    schema ? [" / ", h("a", { href: href(catalog, schema) }, schema)] : null, tbl ? [" / ", tbl] : null);
  const body = h("div");
  replace(ctx.el, h("h1", {}, "Catalog"), crumbs, body);
  try {
    if (tbl) return await tablePage(body, `${catalog}.${schema}.${tbl}`);
    if (schema) {
      const tables = await all(`${UC}/tables`, "tables", { catalog_name: catalog, schema_name: schema, max_results: 1000 });
      const volumes = await all(`${UC}/volumes`, "volumes", { catalog_name: catalog, schema_name: schema }).catch(() => []);
      return replace(body, section("Tables", listOf(tables, (t) => href(catalog, schema, t.name), (t) => t.table_type)),
        volumes.length ? section("Volumes", table([["Volume", (v) => v.name], ["Type", (v) => v.volume_type],
          ["Path", (v) => `/Volumes/${catalog}/${schema}/${v.name}`]], volumes, { class: "list" })) : null);
    }
    if (catalog) {
      const schemas = await all(`${UC}/schemas`, "schemas", { catalog_name: catalog, max_results: 1000 });
      return replace(body, section("Schemas", listOf(schemas, (s) => href(catalog, s.name), (s) => s.comment || "")));
    }
    const catalogs = await all(`${UC}/catalogs`, "catalogs", { max_results: 1000 });
    replace(body, section("Catalogs", listOf(catalogs, (c) => href(c.name), (c) => c.comment || "")));
  } catch (err) {
    replace(body, errorBox(err));
  }
}

function listOf(items, link, detail) {
  if (!items.length) return h("p", { class: "muted" }, "Nothing here yet.");
  return table([["Name", (x) => h("a", { href: link(x) }, x.name)], ["", detail], ["Owner", (x) => x.owner || ""]], items, { class: "list" });
}

async function tablePage(el, fullName) {
  const t = await get(`${UC}/tables/${encodeURIComponent(fullName)}`);
  const clusters = h("select", { "aria-label": "Cluster for the sample" });
  (await runningClusters().catch(() => [])).forEach((c) => clusters.append(h("option", { value: c.cluster_id }, c.cluster_name)));
  const out = h("div");
  const sample = button("Show sample rows", () => act(sample, async () => {
    if (!clusters.value) throw new Error("Start a cluster to read sample rows.");
    const c = await post("/api/1.2/contexts/create", { clusterId: clusters.value, language: "sql" });
    try {
      const cmd = await post("/api/1.2/commands/execute", { clusterId: clusters.value, contextId: c.id, language: "sql",
        command: `SELECT * FROM ${fullName.split(".").map((p) => "`" + p.replace(/`/g, "``") + "`").join(".")} LIMIT 20` });
      for (;;) {
        const res = await get("/api/1.2/commands/status", { clusterId: clusters.value, contextId: c.id, commandId: cmd.id });
        if (["Finished", "Error", "Cancelled"].includes(res.status)) { replace(out, renderResult(res.results, 20)); break; }
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      post("/api/1.2/contexts/destroy", { clusterId: clusters.value, contextId: c.id }).catch(() => {});
    }
  }, out));
  replace(el, section(fullName,
    h("p", { class: "muted" }, `${t.table_type || ""} ${t.data_source_format || ""}`, t.comment ? ` — ${t.comment}` : ""),
    table([["Column", (c) => c.name], ["Type", (c) => c.type_text || c.type_name], ["Nullable", (c) => (c.nullable === false ? "no" : "yes")],
      ["Comment", (c) => c.comment || ""]], t.columns || [], { class: "list", "aria-label": "Columns" })),
    section("Sample", h("div", { class: "inline" }, field("Cluster", clusters), sample), out));
}
