// Admin (admins only; the APIs refuse others): users, groups, service
// principals, tokens, secret scopes and key names — never secret values.
import { get } from "./api.js";
import { h, replace, table, errorBox, section, time } from "./dom.js";

const SCIM = "/api/2.0/preview/scim/v2";

export async function render(ctx) {
  const users = h("div"), groups = h("div"), sps = h("div"), tokens = h("div"), secrets = h("div");
  replace(ctx.el, h("h1", {}, "Admin"), users, groups, sps, tokens, secrets);
  const load = async (el, title, fn) => {
    try {
      replace(el, section(title, await fn()));
    } catch (err) {
      replace(el, section(title, errorBox(err)));
    }
  };
  await Promise.all([
    load(users, "Users", async () => table([["User name", (u) => u.userName], ["Display name", (u) => u.displayName || ""],
      ["Active", (u) => (u.active === false ? "no" : "yes")], ["Groups", (u) => (u.groups || []).map((g) => g.display).join(", ")]],
      (await get(`${SCIM}/Users`, { count: 1000 })).Resources || [], { class: "list", "aria-label": "Users" })),
    load(groups, "Groups", async () => table([["Group", (g) => g.displayName], ["Members", (g) => (g.members || []).length]],
      (await get(`${SCIM}/Groups`, { count: 1000 })).Resources || [], { class: "list", "aria-label": "Groups" })),
    load(sps, "Service principals", async () => table([["Name", (s) => s.displayName || ""], ["Application id", (s) => s.applicationId]],
      (await get(`${SCIM}/ServicePrincipals`, { count: 1000 })).Resources || [], { class: "list" })),
    load(tokens, "Tokens", async () => table([["Owner", (t) => t.created_by_username || ""], ["Comment", (t) => t.comment || ""],
      ["Created", (t) => time(t.creation_time)], ["Expires", (t) => (t.expiry_time > 0 ? time(t.expiry_time) : "never")]],
      (await get("/api/2.0/token-management/tokens")).token_infos || [], { class: "list" })),
    load(secrets, "Secret scopes", async () => {
      const scopes = (await get("/api/2.0/secrets/scopes/list")).scopes || [];
      const rows = await Promise.all(scopes.map(async (s) => ({ scope: s.name,
        keys: ((await get("/api/2.0/secrets/list", { scope: s.name }).catch(() => ({}))).secrets || []).map((k) => k.key) })));
      return table([["Scope", (r) => r.scope], ["Keys (values are never shown)", (r) => r.keys.join(", ")]], rows, { class: "list" });
    }),
  ]);
}
