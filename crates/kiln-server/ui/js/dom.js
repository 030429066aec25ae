// DOM helpers. Text from the server is only ever set as text (never parsed
// as HTML), so a cluster name or command output cannot inject markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value") el.value = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export const button = (label, onclick, attrs = {}) => h("button", { type: "button", onclick, ...attrs }, label);

export function link(label, href, attrs = {}) {
  return h("a", { href, ...attrs }, label);
}

export function badge(state) {
  const s = String(state || "UNKNOWN");
  return h("span", { class: `badge state-${s.toLowerCase().replace(/[^a-z_]/g, "")}` }, s);
}

export function time(ms) {
  if (!ms) return "";
  const d = new Date(typeof ms === "string" && !/^\d+$/.test(ms) ? ms : Number(ms));
  return isNaN(d) ? String(ms) : d.toLocaleString();
}

// A table of plain values; `columns` are [label, row => value or Node].
export function table(columns, rows, attrs = {}) {
  return h("table", attrs,
    h("thead", {}, h("tr", {}, columns.map(([label]) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, get]) => h("td", {}, get(row)))))));
}

export function field(label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

export function errorBox(err) {
  return h("div", { class: "error", role: "alert" }, err && err.message ? err.message : String(err));
}

// Runs an action from a button: disables it, shows the error next to it.
export async function act(btn, fn, status) {
  btn.disabled = true;
  const old = btn.textContent;
  btn.setAttribute("aria-busy", "true");
  try {
    await fn();
    if (status) replace(status);
  } catch (err) {
    if (status) replace(status, errorBox(err));
    else alert(err.message || err);
  } finally {
    btn.disabled = false;
    btn.removeAttribute("aria-busy");
    btn.textContent = old;
  }
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), children);
}

export function download(name, bytes, type = "application/octet-stream") {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function b64encode(text) {
  const bytes = new TextEncoder().encode(text);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function b64decode(b64) {
  const s = atob(b64 || "");
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}
