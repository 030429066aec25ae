// The workspace shell: sign-in, navigation, and a hash router. Each page
// module exports `render(ctx)`; `ctx.poll` registers refreshes that stop when
// the page changes.
import { session, loadSession, signIn, signOut, whenSignedOut } from "./api.js";
import { h, replace, button, errorBox, field } from "./dom.js";

const pages = {
  compute: () => import("./compute.js"),
  workspace: () => import("./workspace.js"),
  notebook: () => import("./notebook.js"),
  pipelines: () => import("./pipelines.js"),
  jobs: () => import("./jobs.js"),
  sql: () => import("./sql.js"),
  catalog: () => import("./catalog.js"),
  lakebase: () => import("./lakebase.js"),
  admin: () => import("./admin.js"),
  settings: () => import("./settings.js"),
};

const nav = [
  ["Compute", "#/compute"],
  ["Workspace", "#/workspace"],
  ["Jobs", "#/jobs"],
  ["SQL", "#/sql"],
  ["Pipelines", "#/pipelines"],
  ["Catalog", "#/catalog"],
  ["Lakebase", "#/lakebase"],
];

const root = document.getElementById("app");
let current = { timers: [], generation: 0 };

function stopPage() {
  for (const t of current.timers) clearInterval(t);
  current = { timers: [], generation: current.generation + 1 };
}

function signInPage(message) {
  stopPage();
  const status = h("div");
  const user = h("input", { name: "user_name", autocomplete: "username" });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password" });
  const token = h("input", { name: "token", type: "password", autocomplete: "off", placeholder: "dapi…" });
  const submit = async (ev) => {
    ev.preventDefault();
    replace(status);
    const body = token.value.trim() ? { token: token.value.trim() } : { user_name: user.value, password: password.value };
    try {
      await signIn(body);
      if (!location.hash || location.hash === "#/signin") location.hash = "#/compute";
      route();
    } catch (err) {
      replace(status, errorBox(err));
    }
  };
  replace(root, h("main", { class: "signin" },
    h("h1", {}, "Sign in to Kiln"),
    message ? h("p", { class: "note" }, message) : null,
    h("form", { onsubmit: submit, "aria-label": "Sign in" },
      h("fieldset", {}, h("legend", {}, "Personal access token"), field("Token", token)),
      h("p", { class: "or" }, "or"),
      h("fieldset", {}, h("legend", {}, "User name and password"), field("User name", user), field("Password", password)),
      h("button", { type: "submit", class: "primary" }, "Sign in"),
      status)));
  token.focus();
}

function shell(active) {
  const main = h("main", { id: "page", tabindex: "-1" });
  const links = nav.map(([label, href]) =>
    h("a", { href, class: href.slice(2) === active ? "active" : "", "aria-current": href.slice(2) === active ? "page" : false }, label));
  if (session.admin) links.push(h("a", { href: "#/admin", class: active === "admin" ? "active" : "" }, "Admin"));
  const out = button("Sign out", async () => {
    await signOut().catch(() => {});
    location.hash = "";
    signInPage("You are signed out.");
  });
  replace(root,
    h("header", { class: "top" },
      h("a", { href: "#/compute", class: "brand" }, "Kiln"),
      h("nav", { "aria-label": "Main" }, links),
      h("a", { href: "#/settings", class: "who", title: "User settings", "aria-label": "User settings" },
        session.user, session.admin ? " (admin)" : ""), out),
    main);
  return main;
}

async function route() {
  if (!session.user && !(await loadSession())) return signInPage();
  stopPage();
  const hash = location.hash.replace(/^#\/?/, "") || "compute";
  const [name, ...rest] = hash.split("/");
  const load = pages[name] || pages.compute;
  const el = shell(pages[name] ? name : "compute");
  const generation = current.generation;
  const ctx = {
    el,
    params: rest.map(decodeURIComponent),
    live: () => generation === current.generation,
    // A refresh that fails (the resource was deleted, the network blinked)
    // leaves the page as it was; the next one tries again.
    poll(fn, ms) {
      const t = setInterval(() => {
        if (ctx.live()) Promise.resolve().then(fn).catch((err) => console.warn("refresh failed:", err.message || err));
      }, ms);
      current.timers.push(t);
    },
  };
  try {
    const mod = await load();
    if (ctx.live()) await mod.render(ctx);
  } catch (err) {
    if (ctx.live()) replace(el, errorBox(err));
  }
}

whenSignedOut(() => signInPage("Your session has ended: sign in again."));
window.addEventListener("hashchange", route);
route();
