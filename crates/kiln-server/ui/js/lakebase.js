// Lakebase: projects → branches (a tree from each branch's source) →
// endpoints with their state, a psql connection string, credentials,
// branch creation (now or at a point in time), suspend and delete.
import { get, post, api, all, session } from "./api.js";
import { h, replace, button, badge, table, errorBox, act, section, field } from "./dom.js";

const PG = "/api/2.0/postgres";

export async function render(ctx) {
  if (ctx.params[0]) return projectPage(ctx, ctx.params[0]);
  const list = h("div"), status = h("div");
  const name = h("input", { name: "project_id", placeholder: "my-app", "aria-label": "Project id" });
  const create = button("Create project", () => act(create, async () => {
    await api("POST", `${PG}/projects?project_id=${encodeURIComponent(name.value)}`, { spec: { display_name: name.value } });
    location.hash = `#/lakebase/${encodeURIComponent(name.value)}`;
  }, status));
  replace(ctx.el, h("h1", {}, "Lakebase"), h("div", { class: "inline" }, field("New project", name), create), status, list);
  const projects = await all(`${PG}/projects`, "projects").catch((err) => { replace(list, errorBox(err)); return null; });
  if (!projects) return;
  replace(list, projects.length ? table([
    ["Project", (p) => h("a", { href: `#/lakebase/${encodeURIComponent(idOf(p.name))}` }, (p.status || {}).display_name || idOf(p.name))],
    ["Postgres", (p) => (p.status || {}).pg_version || ""], ["Owner", (p) => (p.status || {}).owner || ""],
    ["Default branch", (p) => idOf((p.status || {}).default_branch || "")]], projects, { class: "list", "aria-label": "Projects" })
    : h("p", { class: "muted" }, "No projects yet."));
}

const idOf = (name) => String(name).split("/").pop();

async function projectPage(ctx, project) {
  const status = h("div"), tree = h("div"), form = h("div"), cred = h("div", { "aria-live": "polite" });
  const del = button("Delete project", () => {
    if (!confirm(`Delete project ${project} and all its branches?`)) return;
    act(del, async () => { await api("DELETE", `${PG}/projects/${encodeURIComponent(project)}`); location.hash = "#/lakebase"; }, status);
  }, { class: "danger" });
  replace(ctx.el, h("div", { class: "bar" }, h("h1", {}, project), h("a", { href: "#/lakebase" }, "All projects"), del),
    status, cred, tree, form);
  const refresh = async () => {
    const branches = await all(`${PG}/projects/${encodeURIComponent(project)}/branches`, "branches");
    const withEndpoints = await Promise.all(branches.map(async (b) => ({
      branch: b, endpoints: await all(`${PG}/${b.name}/endpoints`, "endpoints").catch(() => []) })));
    replace(tree, section("Branches", branchTree(withEndpoints, { status, cred, refresh })));
    if (!form.firstChild) replace(form, createBranch(project, branches, status, refresh));
  };
  await refresh().catch((err) => replace(status, errorBox(err)));
  ctx.poll(() => refresh().catch(() => {}), 3000);
}

function branchTree(items, page) {
  const byParent = new Map();
  const names = new Set(items.map((i) => i.branch.name));
  for (const item of items) {
    const parent = (item.branch.status || {}).source_branch || "";
    const key = names.has(parent) ? parent : "";
    (byParent.get(key) || byParent.set(key, []).get(key)).push(item);
  }
  const draw = (key) => {
    const children = byParent.get(key) || [];
    if (!children.length) return null;
    return h("ul", { class: "tree" }, children.map((item) => h("li", {}, branchCard(item, page), draw(item.branch.name))));
  };
  return draw("");
}

function branchCard({ branch, endpoints }, page) {
  const { status, refresh } = page;
  const st = branch.status || {};
  const from = st.source_branch ? `from ${idOf(st.source_branch)}${st.source_branch_time ? ` at ${st.source_branch_time}` : ""}` : "root";
  const del = button("Delete branch", () => {
    if (!confirm(`Delete branch ${idOf(branch.name)}?`)) return;
    act(del, async () => { await api("DELETE", `${PG}/${branch.name}`); await refresh(); }, status);
  }, { class: "danger subtle", "aria-label": `Delete branch ${idOf(branch.name)}` });
  return h("div", { class: "branch card" },
    h("div", { class: "bar" }, h("strong", {}, idOf(branch.name)), st.default ? h("span", { class: "badge" }, "default") : null,
      badge(st.current_state), h("span", { class: "muted" }, from), st.default ? null : del),
    endpoints.length ? endpoints.map((e) => endpointRow(e, page)) : h("p", { class: "muted" }, "No endpoint."));
}

function endpointRow(e, { status, cred, refresh }) {
  const st = e.status || {};
  const host = st.host || (st.hosts || {}).host || "";
  const conn = `psql "host=${host} port=${session.lakebasePort} dbname=databricks_postgres user=${session.user} sslmode=require"`;
  const gen = button("Generate credential", () => act(gen, async () => {
    const c = await post(`${PG}/credentials`, { endpoint: e.name });
    const secret = h("input", { readonly: true, value: c.token, "aria-label": "Credential (PGPASSWORD)", class: "secret" });
    replace(cred, section(`Credential for ${idOf(e.name)}`, h("p", {}, "PGPASSWORD (expires ", c.expire_time, "):"), secret));
    secret.select();
  }, status));
  const suspend = button("Suspend", () => act(suspend, async () => { // spec.disabled: stopped, refuses connections
    await api("PATCH", `${PG}/${e.name}?update_mask=spec.disabled`, { spec: { disabled: true } });
    await refresh();
  }, status));
  const resume = button("Resume", () => act(resume, async () => {
    await api("PATCH", `${PG}/${e.name}?update_mask=spec.disabled`, { spec: { disabled: false } });
    await refresh();
  }, status));
  return h("div", { class: "endpoint" },
    h("div", { class: "bar" }, h("span", {}, "Endpoint ", h("strong", {}, idOf(e.name))), badge(st.current_state),
      h("span", { class: "muted" }, st.endpoint_type || "", ` ${st.autoscaling_limit_min_cu ?? ""}–${st.autoscaling_limit_max_cu ?? ""} CU`),
      st.disabled ? resume : suspend, gen),
    h("code", { class: "copy", "aria-label": "psql connection string" }, conn));
}

function createBranch(project, branches, status, refresh) {
  const id = h("input", { name: "branch_id", placeholder: "dev", "aria-label": "Branch id" });
  const source = h("select", { "aria-label": "Source branch" }, branches.map((b) => h("option", { value: b.name }, idOf(b.name))));
  const at = h("input", { type: "datetime-local", "aria-label": "Point in time (empty: now)" });
  const create = button("Create branch", () => act(create, async () => {
    const spec = { source_branch: source.value };
    if (at.value) spec.source_branch_time = new Date(at.value).toISOString();
    await api("POST", `${PG}/projects/${encodeURIComponent(project)}/branches?branch_id=${encodeURIComponent(id.value)}`, { spec });
    id.value = "";
    await refresh();
  }, status));
  return section("Create branch", h("div", { class: "inline wrap" }, field("Branch id", id), field("From", source),
    field("At (optional)", at), create));
}
