// User settings → Developer → Access tokens (seed 003): the signed-in user's
// personal access tokens — generate one (comment, lifetime; its value is shown
// once, here only), list them, revoke one.
import { get, post } from "./api.js";
import { h, replace, button, table, errorBox, section, time, act, field } from "./dom.js";

const LIFETIMES = [["90 days", 90], ["30 days", 30], ["7 days", 7], ["1 day", 1], ["No expiry", 0]];

export async function render(ctx) {
  const list = h("div"), made = h("div"), status = h("div");
  const comment = h("input", { name: "comment", placeholder: "What is it for?", "aria-label": "Token comment" });
  const lifetime = h("select", { name: "lifetime", "aria-label": "Token lifetime" },
    LIFETIMES.map(([label, days]) => h("option", { value: String(days) }, label)));
  const generate = button("Generate", () => act(generate, async () => {
    const days = Number(lifetime.value);
    const body = { comment: comment.value.trim() };
    if (days > 0) body.lifetime_seconds = days * 86400;
    const out = await post("/api/2.0/token/create", body);
    const value = h("input", { value: out.token_value, readonly: true, "aria-label": "New token value", size: 44 });
    replace(made, h("div", { class: "card note", role: "status" },
      h("p", {}, "Copy this token now: it is not shown again."), value,
      button("Done", () => replace(made))));
    value.select();
    comment.value = "";
    await load();
  }, status), { class: "primary" });
  const revoke = (t) => {
    const b = button("Revoke", () => {
      if (!confirm(`Revoke the token "${t.comment || t.token_id}"? Clients using it stop working.`)) return;
      act(b, async () => { await post("/api/2.0/token/delete", { token_id: t.token_id }); await load(); }, status);
    }, { class: "danger subtle", "aria-label": `Revoke token ${t.comment || t.token_id}` });
    return b;
  };
  const load = async () => {
    try {
      const tokens = (await get("/api/2.0/token/list")).token_infos || [];
      tokens.sort((a, b) => (b.creation_time || 0) - (a.creation_time || 0));
      replace(list, tokens.length
        ? table([["Comment", (t) => t.comment || ""], ["Created", (t) => time(t.creation_time)],
          ["Expires", (t) => (t.expiry_time > 0 ? time(t.expiry_time) : "never")], ["", revoke]],
        tokens, { class: "list", "aria-label": "Access tokens" })
        : h("p", { class: "note" }, "No access tokens yet."));
    } catch (err) {
      replace(list, errorBox(err));
    }
  };
  replace(ctx.el, h("h1", {}, "User settings"),
    section("Developer: access tokens",
      h("p", { class: "note" }, "Personal access tokens sign in the REST APIs, the SDKs, Databricks Connect and the CLI as you."),
      h("div", { class: "inline" }, field("Comment", comment), field("Lifetime", lifetime), generate),
      made, status, list));
  await load();
}
