// Jobs: the list with each job's recent runs, a job's page (run now with
// parameters, schedule pause/unpause, runs, settings as JSON, permissions) and
// a run's page (its task graph with each task's state, outputs and errors,
// cancel, repair of failed tasks).
import { get, post, all } from "./api.js";
import { h, replace, button, badge, time, table, errorBox, act, section } from "./dom.js";
import { drawGraph } from "./graph.js";
import { permissions } from "./compute.js";

const J = "/api/2.2/jobs";

const resultOf = (s) => (s ? s.result_state || s.life_cycle_state : "");

export async function render(ctx) {
  if (ctx.params[0] === "runs" && ctx.params[1]) return runPage(ctx, ctx.params[1]);
  if (ctx.params[0]) return jobPage(ctx, ctx.params[0]);
  const list = h("div");
  replace(ctx.el, h("h1", {}, "Jobs"), list);
  const refresh = async () => {
    const jobs = await all(`${J}/list`, "jobs", { limit: 100 });
    const runs = await all(`${J}/runs/list`, "runs", { limit: 100 }, 3);
    const recent = (id) => runs.filter((r) => r.job_id === id).slice(0, 10).reverse();
    replace(list, jobs.length ? table([
      ["Name", (j) => h("a", { href: `#/jobs/${j.job_id}` }, j.settings?.name || String(j.job_id))],
      ["Schedule", (j) => (j.settings?.schedule ? `${j.settings.schedule.quartz_cron_expression} (${j.settings.schedule.timezone_id})${j.settings.schedule.pause_status === "PAUSED" ? " paused" : ""}` : "—")],
      ["Recent runs", (j) => h("span", { class: "strip", "aria-label": `Recent runs of ${j.settings?.name}` },
        recent(j.job_id).map((r) => h("a", { href: `#/jobs/runs/${r.run_id}`, class: `run-dot ${resultOf(r.state).toLowerCase()}`, title: `${r.run_id}: ${resultOf(r.state)}` }, "●")))],
      ["Creator", (j) => j.creator_user_name || ""]], jobs, { class: "list", "aria-label": "Jobs" })
      : h("p", { class: "muted" }, "No jobs yet. Create one with the Jobs API, the SDK or the CLI."));
  };
  await refresh().catch((err) => replace(list, errorBox(err)));
  ctx.poll(() => refresh().catch(() => {}), 3000);
}

async function jobPage(ctx, id) {
  const head = h("div"), status = h("div"), runs = h("div"), settings = h("div"), perms = h("div");
  replace(ctx.el, head, status, runs, settings, perms);
  const refresh = async () => {
    const job = await get(`${J}/get`, { job_id: id });
    const list = (await get(`${J}/runs/list`, { job_id: id, limit: 25 })).runs || [];
    replace(head, h("div", { class: "bar" }, h("h1", {}, job.settings?.name || id), controls(job, status, refresh)));
    replace(runs, section("Runs", list.length ? table([
      ["Run", (r) => h("a", { href: `#/jobs/runs/${r.run_id}` }, String(r.run_id))],
      ["State", (r) => badge(resultOf(r.state))], ["Started", (r) => time(r.start_time)],
      ["Duration", (r) => (r.run_duration ? `${(r.run_duration / 1000).toFixed(1)} s` : "")],
      ["Trigger", (r) => r.trigger || ""]], list, { class: "list", "aria-label": "Runs" }) : h("p", { class: "muted" }, "No runs yet.")));
    if (!settings.dataset.drawn) drawSettings(settings, id, job.settings || {}, status);
  };
  await refresh().catch((err) => replace(status, errorBox(err)));
  await permissions(perms, "jobs", id);
  ctx.poll(() => refresh().catch(() => {}), 2500);
}

function controls(job, status, refresh) {
  const params = h("input", { class: "params", placeholder: '{"name": "value"}', "aria-label": "Job parameters (JSON)" });
  const run = button("Run now", () => act(run, async () => {
    const job_parameters = params.value.trim() ? JSON.parse(params.value) : undefined;
    const r = await post(`${J}/run-now`, { job_id: job.job_id, job_parameters });
    location.hash = `#/jobs/runs/${r.run_id}`;
  }, status));
  const out = [params, run];
  const schedule = job.settings?.schedule;
  if (schedule) {
    const paused = schedule.pause_status === "PAUSED";
    const toggle = button(paused ? "Unpause schedule" : "Pause schedule", () => act(toggle, async () => {
      await post(`${J}/update`, { job_id: job.job_id, new_settings: { schedule: { ...schedule, pause_status: paused ? "UNPAUSED" : "PAUSED" } } });
      await refresh();
    }, status));
    out.push(toggle);
  }
  return h("span", { class: "actions" }, out);
}

function drawSettings(el, id, settings, status) {
  el.dataset.drawn = "1";
  const text = h("textarea", { class: "code", rows: 16, "aria-label": "Job settings (JSON)", spellcheck: "false" });
  text.value = JSON.stringify(settings, null, 2);
  const save = button("Save settings", () => act(save, async () => {
    let body;
    try {
      body = JSON.parse(text.value);
    } catch (err) {
      throw new Error(`Settings are not valid JSON: ${err.message}`);
    }
    await post(`${J}/reset`, { job_id: Number(id), new_settings: body });
  }, status));
  replace(el, section("Settings", text, save));
}

const graphStatus = (t) => {
  const s = resultOf(t.state);
  if (s === "SUCCESS" || s === "SUCCESS_WITH_FAILURES") return "completed";
  if (["FAILED", "TIMEDOUT", "UPSTREAM_FAILED", "INTERNAL_ERROR"].includes(s)) return "failed";
  if (["RUNNING", "PENDING", "BLOCKED", "QUEUED", "WAITING_FOR_RETRY", "TERMINATING"].includes(s)) return "running";
  return "external";
};

async function runPage(ctx, runId) {
  const head = h("div"), status = h("div"), graph = h("div"), tasks = h("div"), outputs = h("div");
  replace(ctx.el, head, status, graph, tasks, outputs);
  let shown = null;
  const refresh = async () => {
    const run = await get(`${J}/runs/get`, { run_id: runId });
    const done = ["TERMINATED", "SKIPPED", "INTERNAL_ERROR"].includes(run.state.life_cycle_state);
    const cancel = button("Cancel", () => act(cancel, async () => { await post(`${J}/runs/cancel`, { run_id: run.run_id }); await refresh(); }, status));
    const latest = (run.repair_history || []).filter((r) => r.id).map((r) => r.id).pop();
    const repair = button("Repair failed tasks", () => act(repair, async () => {
      await post(`${J}/runs/repair`, { run_id: run.run_id, rerun_all_failed_tasks: true, rerun_dependent_tasks: true, latest_repair_id: latest });
      await refresh();
    }, status));
    replace(head, h("div", { class: "bar" },
      h("h1", {}, `${run.run_name} — run ${run.run_id}`), badge(resultOf(run.state)),
      run.job_id ? h("a", { href: `#/jobs/${run.job_id}` }, "job") : null,
      h("span", { class: "actions" }, done ? (run.state.result_state !== "SUCCESS" ? repair : null) : cancel)),
      run.state.state_message ? h("p", { class: "note" }, run.state.state_message) : null);
    const list = run.tasks || [];
    const nodes = list.map((t) => ({ id: t.task_key, label: t.task_key, status: graphStatus(t),
      sub: `${resultOf(t.state).toLowerCase()}${t.attempt_number ? ` · retry ${t.attempt_number}` : ""}${t.run_duration ? ` · ${(t.run_duration / 1000).toFixed(1)} s` : ""}` }));
    const edges = list.flatMap((t) => (t.depends_on || []).map((d) => [d.task_key, t.task_key]));
    replace(graph, section("Tasks", nodes.length ? h("div", { class: "graph-wrap" }, drawGraph(nodes, edges)) : null));
    replace(tasks, table([
      ["Task", (t) => button(t.task_key, () => { shown = t.run_id; showOutput(outputs, t); }, { "aria-label": `Output of ${t.task_key}` })],
      ["State", (t) => badge(resultOf(t.state))], ["Attempt", (t) => String(t.attempt_number || 0)],
      ["Started", (t) => (t.start_time ? time(t.start_time) : "")],
      ["Duration", (t) => (t.run_duration ? `${(t.run_duration / 1000).toFixed(1)} s` : "")],
      ["Message", (t) => t.state.state_message || ""]], list, { class: "list", "aria-label": "Task runs" }));
    if (shown) {
      const t = list.find((x) => x.run_id === shown);
      if (t && done) showOutput(outputs, t);
    }
    if (done) ctx.done = true;
  };
  await refresh().catch((err) => replace(status, errorBox(err)));
  ctx.poll(() => (ctx.done ? null : refresh().catch(() => {})), 1500);
}

async function showOutput(el, task) {
  try {
    const out = await get(`${J}/runs/get-output`, { run_id: task.run_id });
    replace(el, section(`Output of ${task.task_key}`,
      out.notebook_output?.result !== undefined ? h("p", {}, "Notebook result: ", h("code", {}, out.notebook_output.result)) : null,
      out.logs ? h("pre", { class: "output" }, out.logs) : null,
      out.error ? h("p", { class: "error" }, out.error) : null,
      out.error_trace ? h("pre", { class: "output error-trace" }, out.error_trace) : null,
      !out.logs && !out.error && out.notebook_output?.result === undefined ? h("p", { class: "muted" }, "No output.") : null));
  } catch (err) {
    replace(el, errorBox(err));
  }
}
