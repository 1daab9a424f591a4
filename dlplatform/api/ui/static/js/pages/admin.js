// Alerts (everyone who sees models) and the audit log (admin).

import * as api from "../api.js";
import { actionButton, entityHref, fetchPage, pageOf, pager, unavailable } from "../common.js";
import { badge, fmtDate, h, table } from "../dom.js";

const RESOLVERS = new Set(["admin", "data-scientist"]);
const ENTITY = /^(dataset|commit|run|model_version|deployment|prediction|workflow_run):[A-Za-z0-9_.:@-]{1,200}$/;

async function alertsPage(_params, query, { session, rerender }) {
  const page = pageOf(query);
  const all = query.get("all") === "1";
  const body = [h("h1", {}, "Alerts")];
  if (!api.has("/alerts")) {
    body.push(unavailable("Alerts", "/alerts"));
    return h("div", {}, body);
  }
  body.push(h("nav", { class: "filters", "aria-label": "Which alerts" },
    h("a", { href: "#/alerts", class: "chip", "aria-current": all ? null : "true" }, "Open"),
    h("a", { href: "#/alerts?all=1", class: "chip", "aria-current": all ? "true" : null }, "All")));
  const result = await fetchPage("/alerts", query, page, all ? { include_resolved: true } : {});
  const canResolve = RESOLVERS.has(session.principal.role);
  body.push(table(
    [
      { label: "Severity", render: (a) => badge(a.severity) },
      { label: "Kind", render: (a) => a.kind },
      { label: "Target", render: (a) => (ENTITY.test(a.target) ? h("a", { href: entityHref(a.target) }, a.target) : h("code", {}, a.target)) },
      { label: "Message", render: (a) => a.message },
      { label: "Raised", render: (a) => fmtDate(a.at) },
      { label: "Resolved", render: (a) => (a.resolved_at ? fmtDate(a.resolved_at)
        : canResolve ? actionButton("Resolve", { run: () => api.post(`/alerts/${api.seg(a.id)}/resolve`), onDone: () => rerender() }) : "open") },
    ],
    result.rows,
    { caption: all ? "All alerts, newest first" : "Open alerts, newest first", empty: all ? "No alerts." : "No open alerts." },
  ), pager(result, (p) => `#/alerts?page=${p}${all ? "&all=1" : ""}`));
  return h("div", {}, body);
}

async function auditPage(_params, query) {
  const body = [h("h1", {}, "Audit log")];
  // the API decides (403 for non-admins, shown as a Forbidden page); the nav only hides the link
  if (!api.has("/audit")) {
    body.push(unavailable("Audit log", "/audit"));
    return h("div", {}, body);
  }
  const page = pageOf(query);
  const filters = {};
  for (const key of ["actor", "action", "outcome"]) if (query.get(key)) filters[key] = query.get(key);
  const fields = ["actor", "action"].map((key) => [
    h("label", { for: `audit-${key}` }, key[0].toUpperCase() + key.slice(1)),
    h("input", { id: `audit-${key}`, name: key, value: filters[key] || "", autocomplete: "off" }),
  ]);
  const outcome = h("select", { id: "audit-outcome", name: "outcome" },
    ["", "ok", "denied", "error"].map((o) => h("option", { value: o, selected: (filters.outcome || "") === o }, o || "any")));
  const form = h("form", { class: "inline-form", role: "search", "aria-label": "Filter the audit log" },
    fields, h("label", { for: "audit-outcome" }, "Outcome"), outcome, h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    for (const el of form.querySelectorAll("input, select")) if (el.value.trim()) q.set(el.name, el.value.trim());
    window.location.hash = `#/audit${q.toString() ? `?${q}` : ""}`;
  });
  const result = await fetchPage("/audit", query, page, filters);
  const keep = new URLSearchParams(filters).toString();
  body.push(form, table(
    [
      { label: "When", render: (e) => fmtDate(e.at) },
      { label: "Actor", render: (e) => e.actor },
      { label: "Action", render: (e) => h("code", {}, e.action) },
      { label: "Target", render: (e) => e.target },
      { label: "Outcome", render: (e) => badge(e.outcome) },
      { label: "Detail", render: (e) => e.detail || "" },
    ],
    result.rows,
    { caption: "Who did what, newest first", empty: "No entries match." },
  ), pager(result, (p) => `#/audit?page=${p}${keep ? `&${keep}` : ""}`));
  return h("div", {}, body);
}

export const routes = [
  { path: ["alerts"], section: "alerts", render: alertsPage },
  { path: ["audit"], section: "audit", render: auditPage },
];
