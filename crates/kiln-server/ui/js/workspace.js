// Workspace: folders and notebooks through the Workspace API.
import { get, post, session } from "./api.js";
import { h, replace, button, table, errorBox, act, download, b64decode, field } from "./dom.js";

const W = "/api/2.0/workspace";

export async function render(ctx) {
  const path = ctx.params.length ? ("/" + ctx.params.join("/")).replace(/\/+$/, "") || "/" : `/Users/${session.user}`;
  const status = h("div"), list = h("div");
  const crumbs = h("nav", { class: "crumbs", "aria-label": "Folder" }, crumbLinks(path));
  replace(ctx.el, h("h1", {}, "Workspace"), toolbar(path, status, () => load()),
    h("div", { class: "quick" }, h("a", { href: wsHref(`/Users/${session.user}`) }, "Home"), " · ",
      h("a", { href: wsHref("/Shared") }, "Shared"), " · ", h("a", { href: wsHref("/Users") }, "Users")),
    crumbs, status, list);
  const load = async () => {
    try {
      const res = await get(`${W}/list`, { path });
      const objects = (res.objects || []).sort((a, b) =>
        (a.object_type === "DIRECTORY" ? 0 : 1) - (b.object_type === "DIRECTORY" ? 0 : 1) || a.path.localeCompare(b.path));
      replace(list, objects.length ? table([
        ["Name", (o) => h("a", { href: objectHref(o) }, o.path.split("/").pop())],
        ["Type", (o) => (o.language ? `${o.object_type.toLowerCase()} (${o.language.toLowerCase()})` : o.object_type.toLowerCase())],
        ["", (o) => rowActions(o, status, load)]], objects, { class: "list", "aria-label": "Workspace objects" })
        : h("p", { class: "muted" }, "This folder is empty."));
    } catch (err) {
      replace(list, errorBox(err));
    }
  };
  await load();
}

export const wsHref = (path) => "#/workspace" + path.split("/").map(encodeURIComponent).join("/");

function objectHref(o) {
  if (o.object_type === "DIRECTORY") return wsHref(o.path);
  return "#/notebook" + o.path.split("/").map(encodeURIComponent).join("/");
}

function crumbLinks(path) {
  const parts = path.split("/").filter(Boolean);
  const out = [h("a", { href: "#/workspace/" }, "/")];
  parts.forEach((p, i) => out.push(" ", h("a", { href: wsHref("/" + parts.slice(0, i + 1).join("/")) }, p), " /"));
  return out;
}

function toolbar(path, status, reload) {
  const name = h("input", { name: "name", placeholder: "Name", "aria-label": "New item name" });
  const lang = h("select", { name: "language", "aria-label": "Notebook language" },
    h("option", { value: "PYTHON" }, "Python"), h("option", { value: "SQL" }, "SQL"));
  const newNotebook = button("Create notebook", () => act(newNotebook, async () => {
    const header = lang.value === "SQL" ? "-- Databricks notebook source\n" : "# Databricks notebook source\n";
    await post(`${W}/import`, { path: `${path}/${name.value}`, format: "SOURCE", language: lang.value,
      content: btoa(header) });
    location.hash = "#/notebook" + `${path}/${name.value}`.split("/").map(encodeURIComponent).join("/");
  }, status));
  const newFolder = button("Create folder", () => act(newFolder, async () => {
    await post(`${W}/mkdirs`, { path: `${path}/${name.value}` });
    name.value = "";
    await reload();
  }, status));
  const file = h("input", { type: "file", "aria-label": "File to import", accept: ".py,.sql,.ipynb,.scala,.r" });
  const importBtn = button("Import", () => act(importBtn, async () => {
    const f = file.files[0];
    if (!f) throw new Error("Choose a file to import.");
    const bytes = new Uint8Array(await f.arrayBuffer());
    let s = "";
    for (const b of bytes) s += String.fromCharCode(b);
    const base = f.name.replace(/\.(py|sql|ipynb|scala|r)$/i, "");
    await post(`${W}/import`, { path: `${path}/${base}`, format: f.name.endsWith(".ipynb") ? "JUPYTER" : "AUTO",
      content: btoa(s), overwrite: false });
    await reload();
  }, status));
  return h("div", { class: "inline card" }, field("Name", name), lang, newNotebook, newFolder, file, importBtn);
}

function rowActions(o, status, reload) {
  const out = [];
  if (o.object_type !== "DIRECTORY") {
    const exp = button("Export", () => act(exp, async () => {
      const res = await get(`${W}/export`, { path: o.path, format: "SOURCE" });
      const ext = { PYTHON: ".py", SQL: ".sql", SCALA: ".scala", R: ".r" }[o.language] || "";
      download(o.path.split("/").pop() + ext, b64decode(res.content), "text/plain");
    }, status), { "aria-label": `Export ${o.path}` });
    out.push(exp);
    if (o.object_type === "NOTEBOOK") {
      const mv = button("Move", () => {
        const to = prompt(`Move ${o.path} to:`, o.path);
        if (!to || to === o.path) return;
        act(mv, () => moveNotebook(o, to).then(reload), status);
      }, { "aria-label": `Move ${o.path}` });
      out.push(mv);
    }
  }
  const del = button("Delete", () => {
    if (!confirm(`Delete ${o.path}?`)) return;
    act(del, async () => { await post(`${W}/delete`, { path: o.path, recursive: true }); await reload(); }, status);
  }, { class: "danger", "aria-label": `Delete ${o.path}` });
  out.push(del);
  return h("span", { class: "actions" }, out);
}

// The Workspace API has no move: export the notebook's source, import it at
// the new path (refused if something is there), then delete the old one.
async function moveNotebook(o, to) {
  const res = await get(`${W}/export`, { path: o.path, format: "SOURCE" });
  await post(`${W}/import`, { path: to, format: "SOURCE", language: o.language, content: res.content, overwrite: false });
  await post(`${W}/delete`, { path: o.path, recursive: false });
}
