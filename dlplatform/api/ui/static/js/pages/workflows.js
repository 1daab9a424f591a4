// Workflows: runs, a step timeline, errors with their messages, resume and cancel.

import * as api from "../api.js";
import { actionButton, entityHref, fetchPage, pageOf, pager, unavailable } from "../common.js";
import { PALETTE } from "../charts.js";
import { badge, facts, fmtDate, h, parseJSON, s, section, short, table } from "../dom.js";

const LIST = "/workflows/runs";
const RUNNERS = new Set(["admin", "data-engineer", "data-scientist"]);
const FINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED", "STOPPED"]);

async function listPage(_params, query) {
  const page = pageOf(query);
  const body = [h("h1", {}, "Workflows")];
  if (!api.has(LIST)) {
    body.push(unavailable("Workflow runs", LIST));
    return h("div", {}, body);
  }
  const result = await fetchPage(LIST, query, page);
  body.push(table(
    [
      { label: "Run", render: (r) => h("a", { href: `#/workflows/${encodeURIComponent(r.id)}` }, short(r.id, 24)) },
      { label: "Workflow", render: (r) => h("code", {}, r.workflow) },
      { label: "Status", render: (r) => badge(r.status) },
      { label: "Owner", render: (r) => r.owner || "—" },
      { label: "Created", render: (r) => fmtDate(r.created_at) },
      { label: "Error", render: (r) => (r.error ? short(r.error, 60) : "") },
    ],
    result.rows,
    { caption: "Workflow runs, newest first", empty: "No workflow runs yet." },
  ), pager(result, (p) => `#/workflows?page=${p}`));
  return h("div", {}, body);
}

const STATUS_COLOR = { SUCCEEDED: "#15803d", FAILED: "#b91c1c", RUNNING: "#1d4ed8", QUEUED: "#6b7280", CANCELLED: "#6b7280", STOPPED: "#6b7280" };

/** A Gantt-style timeline of steps (SVG): one bar per step from start to end. */
function stepTimeline(steps) {
  const timed = steps.filter((st) => st.started_at);
  if (timed.length === 0) return h("p", { class: "empty" }, "No step has started yet.");
  const now = Date.now();
  const start = Math.min(...timed.map((st) => new Date(st.started_at).getTime()));
  const end = Math.max(...timed.map((st) => (st.ended_at ? new Date(st.ended_at).getTime() : now)), start + 1);
  const rowH = 26;
  const labelW = 170;
  const width = 640;
  const barW = width - labelW - 70;
  const height = steps.length * rowH + 24;
  const x = (t) => labelW + ((t - start) / (end - start)) * barW;
  return h("div", { class: "graph-scroll" }, s("svg", {
    viewBox: `0 0 ${width} ${height}`, class: "timeline-svg", role: "img",
    "aria-label": `step timeline: ${steps.map((st) => `${st.name} ${st.status}`).join(", ")}`,
  },
  steps.map((st, i) => {
    const y = 8 + i * rowH;
    const t0 = st.started_at ? new Date(st.started_at).getTime() : null;
    const t1 = st.ended_at ? new Date(st.ended_at).getTime() : now;
    const secs = t0 === null ? null : (t1 - t0) / 1000;
    return s("g", { class: "step-row" },
      s("text", { x: 4, y: y + 15, class: "tick" }, short(st.name || st.step_id, 24)),
      t0 === null ? s("text", { x: labelW, y: y + 15, class: "tick" }, "not started")
        : s("rect", { x: x(t0), y, width: Math.max(2, x(t1) - x(t0)), height: rowH - 8, rx: 3, fill: STATUS_COLOR[st.status] || PALETTE[7] },
          s("title", {}, `${st.name}: ${st.status}, ${secs.toFixed(1)} s, attempts ${st.attempts}`)),
      t0 === null ? null : s("text", { x: Math.min(x(t1) + 4, width - 60), y: y + 15, class: "tick" }, `${secs.toFixed(1)} s`));
  })));
}

/** A step's error: its last line (the message) with the full text (traceback) folded below. */
function errorCell(error) {
  if (!error) return "";
  const lines = String(error).trim().split("\n");
  const message = lines.filter((l) => l.trim()).pop() || String(error);
  if (lines.length <= 1) return h("span", { class: "error-inline" }, message);
  return h("details", { class: "error-details" },
    h("summary", {}, message),
    h("pre", { class: "error-text inline-pre" }, String(error)));
}

async function detailPage(params, _query, { session, rerender }) {
  const id = params.id;
  if (!api.has(`${LIST}/{id}`)) return h("div", {}, h("h1", {}, `Workflow run ${id}`), unavailable("Workflow run", `${LIST}/{id}`));
  const data = await api.get(`${LIST}/${api.seg(id)}`);
  const run = data.run || data;
  const steps = data.steps || run.steps || [];
  const body = [h("h1", {}, `Workflow run ${run.id}`)];
  const actions = [];
  if (RUNNERS.has(session.principal.role)) {
    if (["FAILED", "CANCELLED", "STOPPED"].includes(run.status) && api.has(`${LIST}/{id}/resume`, "post")) {
      actions.push(actionButton("Resume", { kind: "primary", run: () => api.post(`${LIST}/${api.seg(run.id)}/resume`), onDone: () => rerender() }));
    }
    if (!FINAL.has(run.status) && api.has(`${LIST}/{id}/cancel`, "post")) {
      actions.push(actionButton("Cancel", { kind: "danger", confirmText: `Cancel workflow run ${run.id}?`, run: () => api.post(`${LIST}/${api.seg(run.id)}/cancel`), onDone: () => rerender() }));
    }
  }
  const wfParams = parseJSON(run.params_json, {});
  body.push(facts([
    ["Workflow", h("code", {}, run.workflow)], ["Status", badge(run.status)], ["Owner", run.owner],
    ["Created", fmtDate(run.created_at)], ["Started", fmtDate(run.started_at)], ["Ended", fmtDate(run.ended_at)],
    ["Parameters", Object.keys(wfParams || {}).length ? h("code", {}, JSON.stringify(wfParams)) : "—"],
  ]), h("p", {}, h("a", { href: entityHref(`workflow_run:${run.id}`) }, "Lineage of this run")), h("div", { class: "actions" }, actions));
  if (run.error) body.push(section("Error", h("pre", { class: "raw error-text", role: "alert" }, run.error)));
  body.push(section("Step timeline", stepTimeline(steps)));
  body.push(section("Steps", table(
    [
      { label: "Step", render: (st) => st.name || st.step_id },
      { label: "Status", render: (st) => badge(st.status) },
      { label: "Attempts", numeric: true, render: (st) => String(st.attempts ?? 0) },
      { label: "Started", render: (st) => fmtDate(st.started_at) },
      { label: "Ended", render: (st) => fmtDate(st.ended_at) },
      { label: "Error", render: (st) => errorCell(st.error) },
    ],
    steps,
    { empty: "No steps recorded yet." },
  )));
  return h("div", {}, body);
}

export const routes = [
  { path: ["workflows"], section: "workflows", render: listPage },
  { path: ["workflows", ":id"], section: "workflows", render: detailPage },
];
