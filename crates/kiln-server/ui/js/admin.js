// Admin (admins only; the APIs refuse others): users (add, delete),
// groups, service principals, tokens (revoke), secret scopes and key names —
// never secret values.
import { get, post, api } from "./api.js";
import { h, replace, button, table, errorBox, section, time, act, field } from "./dom.js";

const SCIM = "/api/2.0/preview/scim/v2";

export async function render(ctx) {
  const users = h("div"), groups = h("div"), sps = h("div"), tokens = h("div"), secrets = h("div"), status = h("div");
  replace(ctx.el, h("h1", {}, "Admin"), status, users, groups, sps, tokens, secrets);
  const load = async (el, title, fn) => {
    try {
      replace(el, section(title, await fn()));
    } catch (err) {
      replace(el, section(title, errorBox(err)));
    }
  };
  const loadUsers = () => load(users, "Users", async () => {
    const list = (await get(`${SCIM}/Users`, { count: 1000 })).Resources || [];
    const name = h("input", { name: "userName", placeholder: "someone@example.com", "aria-label": "New user name" });
    const add = button("Add user", () => act(add, async () => {
      await post(`${SCIM}/Users`, { userName: name.value });
      await loadUsers();
    }, status));
    return [table([["User name", (u) => u.userName], ["Display name", (u) => u.displayName || ""],
      ["Active", (u) => (u.active === false ? "no" : "yes")], ["Groups", (u) => (u.groups || []).map((g) => g.display).join(", ")],
      ["", (u) => removeUser(u)]], list, { class: "list", "aria-label": "Users" }),
    h("div", { class: "inline" }, field("User name", name), add)];
  });
  const removeUser = (u) => {
    const b = button("Delete", () => {
      if (!confirm(`Delete the user ${u.userName}? Their tokens stop working.`)) return;
      act(b, async () => {
        await api("DELETE", `${SCIM}/Users/${encodeURIComponent(u.id)}`);
        await loadUsers();
      }, status);
    }, { class: "danger subtle", "aria-label": `Delete user ${u.userName}` });
    return b;
  };
  const loadTokens = () => load(tokens, "Tokens", async () => table([["Owner", (t) => t.created_by_username || ""],
    ["Comment", (t) => t.comment || ""], ["Created", (t) => time(t.creation_time)],
    ["Expires", (t) => (t.expiry_time > 0 ? time(t.expiry_time) : "never")],
    ["", (t) => { const b = button("Revoke", () => {
      if (!confirm(`Revoke the token "${t.comment || t.token_id}" of ${t.created_by_username}?`)) return;
      act(b, async () => { await api("DELETE", `/api/2.0/token-management/tokens/${encodeURIComponent(t.token_id)}`); await loadTokens(); }, status);
    }, { class: "danger subtle", "aria-label": `Revoke token ${t.comment || t.token_id}` }); return b; }]],
    (await get("/api/2.0/token-management/tokens")).token_infos || [], { class: "list", "aria-label": "Tokens" }));
  await Promise.all([
    loadUsers(),
    load(groups, "Groups", async () => table([["Group", (g) => g.displayName], ["Members", (g) => (g.members || []).map((m) => m.display).join(", ")]],
      (await get(`${SCIM}/Groups`, { count: 1000 })).Resources || [], { class: "list", "aria-label": "Groups" })),
    load(sps, "Service principals", async () => table([["Name", (s) => s.displayName || ""], ["Application id", (s) => s.applicationId]],
      (await get(`${SCIM}/ServicePrincipals`, { count: 1000 })).Resources || [], { class: "list" })),
    loadTokens(),
    load(secrets, "Secret scopes", async () => {
      const scopes = (await get("/api/2.0/secrets/scopes/list")).scopes || [];
      const rows = await Promise.all(scopes.map(async (s) => ({ scope: s.name,
        keys: ((await get("/api/2.0/secrets/list", { scope: s.name }).catch(() => ({}))).secrets || []).map((k) => k.key) })));
      return table([["Scope", (r) => r.scope], ["Keys (values are never shown)", (r) => r.keys.join(", ")]], rows, { class: "list" });
    }),
  ]);
}
