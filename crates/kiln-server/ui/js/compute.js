// Compute: the cluster list (live), create, and a cluster's page.
import { get, post, all } from "./api.js";
import { h, replace, button, badge, time, table, field, errorBox, act, section } from "./dom.js";

const C = "/api/2.1/clusters";

export async function render(ctx) {
  if (ctx.params[0] === "new") return createPage(ctx);
  if (ctx.params[0]) return clusterPage(ctx, ctx.params[0]);
  return listPage(ctx);
}

async function listPage(ctx) {
  const status = h("div");
  const body = h("tbody");
  const count = h("span", { class: "muted" });
  replace(ctx.el,
    h("div", { class: "bar" }, h("h1", {}, "Compute"), h("a", { href: "#/compute/new", class: "button primary" }, "Create compute")),
    status, count,
    h("table", { class: "list", "aria-label": "Clusters" },
      h("thead", {}, h("tr", {}, ["Name", "State", "Runtime", "Workers", "Creator", ""].map((c) => h("th", { scope: "col" }, c)))),
      body));
  const rows = new Map();
  const refresh = async () => {
    let clusters;
    try {
      clusters = await all(`${C}/list`, "clusters", { page_size: 1000 });
    } catch (err) {
      return replace(status, errorBox(err));
    }
    replace(status);
    count.textContent = `${clusters.length} cluster${clusters.length === 1 ? "" : "s"}`;
    const seen = new Set();
    for (const c of clusters) {
      seen.add(c.cluster_id);
      let row = rows.get(c.cluster_id);
      if (!row) {
        row = h("tr", { dataset: { clusterId: c.cluster_id } });
        rows.set(c.cluster_id, row);
      }
      if (row.dataset.state !== c.state || row.dataset.name !== c.cluster_name) {
        row.dataset.state = c.state;
        row.dataset.name = c.cluster_name;
        replace(row,
          h("td", {}, h("a", { href: `#/compute/${encodeURIComponent(c.cluster_id)}` }, c.cluster_name || c.cluster_id)),
          h("td", { class: "state" }, badge(c.state)),
          h("td", {}, c.spark_version), h("td", {}, c.num_workers ?? 0),
          h("td", {}, c.creator_user_name || ""),
          h("td", {}, actions(c, refresh, true)));
      }
      body.append(row);
    }
    for (const [id, row] of rows) if (!seen.has(id)) { row.remove(); rows.delete(id); }
  };
  await refresh();
  ctx.poll(refresh, 2000);
}

function actions(c, refresh, compact) {
  const id = { cluster_id: c.cluster_id };
  const out = [];
  const run = (label, path) => {
    const b = button(label, () => act(b, async () => { await post(`${C}/${path}`, id); await refresh(); }), {
      "aria-label": `${label} ${c.cluster_name}`,
    });
    out.push(b);
  };
  if (c.state === "TERMINATED" || c.state === "ERROR") run("Start", "start");
  if (c.state === "RUNNING") run("Restart", "restart");
  if (!["TERMINATED", "TERMINATING", "ERROR"].includes(c.state)) run("Terminate", "delete");
  if (!compact) {
    const del = button("Delete", () => {
      if (!confirm(`Delete ${c.cluster_name} permanently?`)) return;
      act(del, async () => { await post(`${C}/permanent-delete`, id); location.hash = "#/compute"; });
    }, { class: "danger" });
    out.push(del);
  }
  return h("span", { class: "actions" }, out);
}

async function createPage(ctx) {
  const versions = (await get(`${C}/spark-versions`)).versions || [];
  const name = h("input", { name: "cluster_name", required: true });
  const version = h("select", { name: "spark_version" }, versions.map((v) => h("option", { value: v.key }, v.name || v.key)));
  const workers = h("input", { name: "num_workers", type: "number", min: 0, value: 0 });
  const auto = h("input", { name: "autotermination_minutes", type: "number", min: 0, value: 120 });
  const status = h("div");
  const submit = async (ev) => {
    ev.preventDefault();
    try {
      const res = await post(`${C}/create`, {
        cluster_name: name.value, spark_version: version.value,
        num_workers: Number(workers.value), autotermination_minutes: Number(auto.value),
      });
      location.hash = `#/compute/${encodeURIComponent(res.cluster_id)}`;
    } catch (err) {
      replace(status, errorBox(err));
    }
  };
  replace(ctx.el, h("h1", {}, "Create compute"),
    h("form", { class: "card form", onsubmit: submit },
      field("Name", name), field("Runtime version", version), field("Workers", workers),
      field("Terminate after (minutes idle, 0 = never)", auto),
      h("button", { type: "submit", class: "primary" }, "Create"), status));
  name.focus();
}

async function clusterPage(ctx, id) {
  const head = h("div"), config = h("div"), events = h("div"), libs = h("div"), perms = h("div");
  replace(ctx.el, head, config, libs, events, perms);
  const refresh = async () => {
    const c = await get(`${C}/get`, { cluster_id: id });
    const url = (c.default_tags || {}).KilnSparkConnectUrl || "";
    replace(head, h("div", { class: "bar" }, h("h1", {}, c.cluster_name), badge(c.state), actions(c, refresh, false)),
      c.state_message ? h("p", { class: "muted" }, c.state_message) : null);
    replace(config, section("Configuration", h("dl", { class: "kv" },
      ...kv("Cluster ID", c.cluster_id), ...kv("Runtime", c.spark_version), ...kv("Workers", c.num_workers ?? 0),
      ...kv("Auto-termination", `${c.autotermination_minutes ?? 0} min`), ...kv("Creator", c.creator_user_name),
      ...kv("Spark Connect", h("span", {}, h("code", { class: "copy" }, url),
        url ? button("Copy", () => navigator.clipboard && navigator.clipboard.writeText(url), { "aria-label": "Copy Spark Connect URL" }) : null)))));
    const ev = await post(`${C}/events`, { cluster_id: id, limit: 25, order: "DESC" }).catch(() => ({ events: [] }));
    replace(events, section("Event timeline", table([
      ["Time", (e) => time(e.timestamp)], ["Event", (e) => e.type],
      ["Details", (e) => summary(e.details)]], ev.events || [], { class: "list" })));
  };
  await refresh();
  await libraries(libs, id);
  await permissions(perms, "clusters", id);
  ctx.poll(refresh, 2000);
}

function kv(k, v) {
  return [h("dt", {}, k), h("dd", {}, v ?? "")];
}

function summary(details) {
  if (!details) return "";
  const parts = [];
  for (const [k, v] of Object.entries(details)) parts.push(`${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
  return parts.join(", ");
}

function libName(lib) {
  if (lib.pypi) return `PyPI ${lib.pypi.package}`;
  if (lib.whl) return `Wheel ${lib.whl}`;
  if (lib.requirements) return `Requirements ${lib.requirements}`;
  return JSON.stringify(lib);
}

async function libraries(el, id) {
  const status = h("div");
  const pkg = h("input", { name: "package", placeholder: "package==1.0", "aria-label": "PyPI package" });
  const load = async () => {
    const res = await get("/api/2.0/libraries/cluster-status", { cluster_id: id });
    replace(list, table([
      ["Library", (s) => libName(s.library)], ["Status", (s) => badge(s.status)],
      ["", (s) => { const b = button("Uninstall", () => act(b, async () => {
        await post("/api/2.0/libraries/uninstall", { cluster_id: id, libraries: [s.library] }); await load(); }, status)); return b; }],
    ], res.library_statuses || [], { class: "list" }));
  };
  const list = h("div");
  const install = button("Install", () => act(install, async () => {
    await post("/api/2.0/libraries/install", { cluster_id: id, libraries: [{ pypi: { package: pkg.value } }] });
    pkg.value = "";
    await load();
  }, status));
  replace(el, section("Libraries", list, h("div", { class: "inline" }, pkg, install), status));
  await load().catch((err) => replace(status, errorBox(err)));
}

export async function permissions(el, type, id) {
  try {
    const acl = await get(`/api/2.0/permissions/${type}/${encodeURIComponent(id)}`);
    const rows = (acl.access_control_list || []).flatMap((a) =>
      (a.all_permissions || []).map((p) => ({ who: a.user_name || a.group_name || a.service_principal_name, level: p.permission_level, inherited: p.inherited })));
    replace(el, section("Permissions", table([["Principal", (r) => r.who], ["Permission", (r) => r.level],
      ["", (r) => (r.inherited ? "inherited" : "")]], rows, { class: "list" })));
  } catch (err) {
    replace(el, section("Permissions", h("p", { class: "muted" }, err.message)));
  }
}

export async function runningClusters() {
  const clusters = await all(`${C}/list`, "clusters", { page_size: 1000 });
  return clusters.filter((c) => c.state === "RUNNING" || c.state === "PENDING" || c.state === "RESIZING");
}

