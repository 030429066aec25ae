// Pipelines: the list, and a pipeline's page — its dataflow graph from the
// selected update's flow definitions (row counts, expectations), update
// history, the event log with level filters, start / full refresh / stop and
// settings as JSON.
import { get, post, api, all } from "./api.js";
import { h, replace, button, badge, time, table, errorBox, act, section } from "./dom.js";
import { drawGraph } from "./graph.js";
import { permissions } from "./compute.js";

const P = "/api/2.0/pipelines";

export async function render(ctx) {
  if (ctx.params[0]) return pipelinePage(ctx, ctx.params[0]);
  const list = h("div");
  replace(ctx.el, h("h1", {}, "Pipelines"), list);
  const refresh = async () => {
    const statuses = await all(P, "statuses", { max_results: 100 });
    replace(list, statuses.length ? table([
      ["Name", (p) => h("a", { href: `#/pipelines/${encodeURIComponent(p.pipeline_id)}` }, p.name || p.pipeline_id)],
      ["State", (p) => badge(p.state)],
      ["Last update", (p) => { const u = (p.latest_updates || [])[0]; return u ? h("span", {}, badge(u.state), " ", time(u.creation_time)) : "—"; }],
      ["Creator", (p) => p.creator_user_name || ""]], statuses, { class: "list", "aria-label": "Pipelines" })
      : h("p", { class: "muted" }, "No pipelines yet. Create one with the Pipelines API or the SDK."));
  };
  await refresh().catch((err) => replace(list, errorBox(err)));
  ctx.poll(() => refresh().catch(() => {}), 3000);
}

async function pipelinePage(ctx, id) {
  const head = h("div"), graph = h("div"), updates = h("div"), events = h("div"), settings = h("div"), perms = h("div");
  const status = h("div");
  replace(ctx.el, head, status, graph, updates, events, settings, perms);
  let selected = null;
  let levels = new Set(["INFO", "WARN", "ERROR", "METRICS"]);
  const refresh = async () => {
    const p = await get(`${P}/${encodeURIComponent(id)}`);
    const ups = (await get(`${P}/${encodeURIComponent(id)}/updates`, { max_results: 25 })).updates || [];
    if (!selected && ups.length) selected = ups[0].update_id;
    const evs = await all(`${P}/${encodeURIComponent(id)}/events`, "events", { max_results: 100, order_by: "timestamp desc" }, 5);
    replace(head, h("div", { class: "bar" }, h("h1", {}, p.name || id), badge(p.state), controls(id, status, refresh)));
    drawUpdates(updates, ups, selected, (u) => { selected = u; refresh(); });
    drawGraphFor(graph, evs.filter((e) => e.origin?.update_id === selected), selected);
    drawEvents(events, evs, levels, (next) => { levels = next; refresh(); });
    if (!settings.dataset.drawn) drawSettings(settings, id, p.spec || {}, status);
  };
  await refresh().catch((err) => replace(status, errorBox(err)));
  await permissions(perms, "pipelines", id);
  ctx.poll(() => refresh().catch(() => {}), 2500);
}

function controls(id, status, refresh) {
  const start = (label, body) => {
    const b = button(label, () => act(b, async () => { await post(`${P}/${encodeURIComponent(id)}/updates`, body); await refresh(); }, status));
    return b;
  };
  const stop = button("Stop", () => act(stop, async () => { await post(`${P}/${encodeURIComponent(id)}/stop`, {}); await refresh(); }, status));
  return h("span", { class: "actions" }, start("Start", {}), start("Full refresh", { full_refresh: true }), stop);
}

function drawUpdates(el, ups, selected, choose) {
  replace(el, section("Updates", table([
    ["Update", (u) => button(u.update_id.slice(0, 8), () => choose(u.update_id),
      { class: u.update_id === selected ? "selected" : "", "aria-pressed": String(u.update_id === selected), "aria-label": `Show update ${u.update_id}` })],
    ["State", (u) => badge(u.state)], ["Started", (u) => time(u.creation_time)],
    ["Full refresh", (u) => (u.full_refresh ? "yes" : "")], ["Cause", (u) => u.cause || ""]], ups, { class: "list" })));
}

// The graph of one update: nodes from flow_definition events; status, rows
// and expectations from flow_progress events.
export function graphModel(events) {
  const nodes = new Map(), edges = [];
  const chrono = events.slice().sort((a, b) => String(a.timestamp).localeCompare(String(b.timestamp)));
  const node = (name, external) => {
    if (!nodes.has(name)) nodes.set(name, { id: name, label: name.split(".").pop(), sub: external ? "source" : "", status: external ? "external" : "none", rows: null, dq: null });
    return nodes.get(name);
  };
  for (const e of chrono) {
    const d = (e.details || {})[e.event_type] || {};
    if (e.event_type === "flow_definition") {
      const out = d.output_dataset || e.origin?.flow_name;
      node(out, false).status = node(out, false).status === "external" ? "none" : node(out, false).status;
      for (const input of d.input_datasets || []) {
        node(input, true);
        edges.push([input, out]);
      }
    }
  }
  for (const e of chrono) {
    const d = (e.details || {})[e.event_type] || {};
    if (e.event_type !== "flow_progress") continue;
    const n = nodes.get(e.origin?.flow_name) || nodes.get(d.output_dataset) || [...nodes.values()].find((x) => x.label === e.origin?.flow_name);
    if (!n) continue;
    n.status = d.status || n.status;
    if (d.metrics && d.metrics.num_output_rows !== undefined) n.rows = d.metrics.num_output_rows;
    if (d.data_quality) n.dq = d.data_quality;
  }
  for (const n of nodes.values()) {
    const bits = [];
    if (n.status !== "external") bits.push(n.status.toLowerCase());
    if (n.rows !== null) bits.push(`${n.rows} rows`);
    const exps = n.dq?.expectations || [];
    if (exps.length) {
      const failed = exps.reduce((a, x) => a + (x.failed_records || 0), 0);
      bits.push(failed ? `✗ ${failed} failed` : `✓ ${exps.length} expectations`);
    }
    if (n.status === "external") bits.push("source");
    n.sub = bits.join(" · ");
  }
  return { nodes: [...nodes.values()], edges };
}

function drawGraphFor(el, events, selected) {
  const { nodes, edges } = graphModel(events);
  const expectations = nodes.flatMap((n) => (n.dq?.expectations || []).map((x) => ({ ...x, dataset: x.dataset || n.id })));
  replace(el, section(`Dataflow graph${selected ? ` — update ${selected.slice(0, 8)}` : ""}`,
    nodes.length ? h("div", { class: "graph-wrap" }, drawGraph(nodes, edges)) : h("p", { class: "muted" }, "No update yet: start one to see the graph."),
    expectations.length ? table([["Dataset", (x) => x.dataset], ["Expectation", (x) => x.name],
      ["Passed", (x) => x.passed_records ?? ""], ["Failed", (x) => x.failed_records ?? ""]], expectations, { class: "list", "aria-label": "Expectations" }) : null));
}

function drawEvents(el, evs, levels, setLevels) {
  const boxes = ["INFO", "WARN", "ERROR", "METRICS"].map((lvl) => {
    const box = h("input", { type: "checkbox", checked: levels.has(lvl), onchange: () => {
      const next = new Set(levels);
      if (box.checked) next.add(lvl); else next.delete(lvl);
      setLevels(next);
    } });
    return h("label", { class: "check" }, box, lvl);
  });
  const shown = evs.filter((e) => levels.has(e.level)).slice(0, 200);
  replace(el, section("Event log", h("div", { class: "actions", role: "group", "aria-label": "Levels" }, boxes),
    table([["Time", (e) => time(e.timestamp)], ["Level", (e) => badge(e.level)], ["Type", (e) => e.event_type],
      ["Message", (e) => e.message]], shown, { class: "list events" })));
}

function drawSettings(el, id, spec, status) {
  el.dataset.drawn = "1";
  const text = h("textarea", { class: "code", rows: 14, "aria-label": "Pipeline settings (JSON)", spellcheck: "false" });
  text.value = JSON.stringify(spec, null, 2);
  const save = button("Save settings", () => act(save, async () => {
    let body;
    try {
      body = JSON.parse(text.value);
    } catch (err) {
      throw new Error(`Settings are not valid JSON: ${err.message}`);
    }
    await api("PUT", `${P}/${encodeURIComponent(id)}`, { ...body, pipeline_id: id });
  }, status));
  replace(el, section("Settings", text, save));
}
