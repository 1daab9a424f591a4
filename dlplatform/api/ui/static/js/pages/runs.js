// Runs: queue and history, one run (params, metric charts, logs), compare runs side by side.

import * as api from "../api.js";
import { actionButton, entityHref, fetchAll, fetchPage, pageOf, pager, partError, unavailable } from "../common.js";
import { lineChart } from "../charts.js";
import { badge, facts, fmtDate, fmtNumber, h, parseJSON, section, short, table } from "../dom.js";

const LIST = "/training/jobs";
const LOG_POLL_MS = 3000;
const FILTERS = [
  ["", "All"], ["QUEUED", "Queued"], ["RUNNING", "Running"], ["SUCCEEDED", "Succeeded"], ["FAILED", "Failed"], ["CANCELLED", "Cancelled"],
];

function runHref(id) {
  return `#/runs/${encodeURIComponent(id)}`;
}

function duration(run) {
  if (!run.started_at) return "—";
  const end = run.ended_at ? new Date(run.ended_at) : new Date();
  const secs = Math.max(0, (end - new Date(run.started_at)) / 1000);
  if (secs < 60) return `${secs.toFixed(0)} s`;
  if (secs < 3600) return `${(secs / 60).toFixed(1)} min`;
  return `${(secs / 3600).toFixed(1)} h`;
}

async function listPage(_params, query) {
  const page = pageOf(query);
  const status = query.get("status") || "";
  const body = [h("h1", {}, "Runs")];
  if (!api.has(LIST)) {
    body.push(unavailable("Training runs", LIST));
    return h("div", {}, body);
  }
  const filterable = api.paramsOf(LIST).includes("status");
  if (filterable) {
    body.push(h("nav", { class: "filters", "aria-label": "Filter by status" },
      FILTERS.map(([value, label]) => h("a", {
        href: `#/runs${value ? `?status=${value}` : ""}`, class: "chip", "aria-current": value === status ? "true" : null,
      }, label))));
  }
  const result = await fetchPage(LIST, query, page, filterable && status ? { status } : {});
  result.rows = result.rows.map((job) => (job && job.run ? { ...job.run, job } : job));
  const hrefFor = (p) => `#/runs?page=${p}${status ? `&status=${status}` : ""}`;
  body.push(pager(result, hrefFor));
  const form = h("form", { class: "compare-form", id: "compare-form" });
  form.append(
    table(
      [
        { label: "Compare", render: (r) => h("input", { type: "checkbox", name: "run", value: r.id, "aria-label": `compare run ${r.id}` }) },
        { label: "Run", render: (r) => h("a", { href: runHref(r.id) }, r.name ? `${r.name}` : short(r.id, 16)) },
        { label: "Status", render: (r) => badge(r.status) },
        { label: "Kind", render: (r) => r.kind || "train" },
        { label: "Owner", render: (r) => r.owner || "—" },
        { label: "Priority", numeric: true, render: (r) => fmtNumber(r.priority ?? 0) },
        { label: "Queue", render: (r) => (r.job && r.job.queue_position ? `#${r.job.queue_position}` : "—") },
        { label: "Created", render: (r) => fmtDate(r.created_at) },
        { label: "Duration", render: (r) => duration(r) },
      ],
      result.rows,
      { caption: status ? `Runs with status ${status}` : "Queue and history, newest first", empty: "No runs yet." },
    ),
    h("button", { type: "submit" }, "Compare selected"),
    h("span", { class: "form-error", role: "alert", id: "compare-error" }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const ids = [...form.querySelectorAll('input[name="run"]:checked')].map((i) => i.value);
    if (ids.length < 2) {
      form.querySelector("#compare-error").textContent = "Select two or more runs to compare.";
      return;
    }
    window.location.hash = `#/runs/compare?ids=${ids.map(encodeURIComponent).join(",")}`;
  });
  body.push(form, pager(result, hrefFor));
  return h("div", {}, body);
}

/** Metrics as {key: [[step, value], ...]} from a list of points or a {key: [...]} object. */
function seriesByKey(data) {
  const out = {};
  const add = (key, step, value) => {
    (out[key] = out[key] || []).push([Number(step ?? 0), Number(value)]);
  };
  const points = Array.isArray(data) ? data : data && Array.isArray(data.points) ? data.points : null;
  if (points) {
    for (const p of points) add(p.key ?? p.name, p.step, p.value);
  } else if (data && typeof data === "object") {
    const obj = data.metrics && typeof data.metrics === "object" ? data.metrics : data;
    for (const [key, values] of Object.entries(obj)) {
      if (!Array.isArray(values)) continue;
      values.forEach((v, i) => (Array.isArray(v) ? add(key, v[0], v[1]) : typeof v === "object" ? add(key, v.step ?? i, v.value) : add(key, i, v)));
    }
  }
  for (const list of Object.values(out)) list.sort((a, b) => a[0] - b[0]);
  return out;
}

async function loadMetrics(id) {
  return seriesByKey(await fetchAll(`${LIST}/${api.seg(id)}/metrics`, `${LIST}/{id}/metrics`, {}, 10000));
}

const SPEC_PARAMS = ["model", "dataset", "label", "epochs", "batch_size", "lr", "workers", "seed", "validation_fraction", "use_gpu", "priority"];

/** Hyperparameters: the job spec's params plus its training settings (or a run's spec_json). */
function paramsOf(run, detail) {
  const explicit = detail && detail.params;
  if (explicit && typeof explicit === "object") return explicit;
  const spec = (detail && detail.spec) || parseJSON(run.spec_json, {}) || {};
  const out = {};
  for (const key of SPEC_PARAMS) if (spec[key] !== undefined && spec[key] !== null) out[key] = spec[key];
  if (spec.params && typeof spec.params === "object") Object.assign(out, spec.params);
  return out;
}

function show(v) {
  return v === null || v === undefined ? "—" : typeof v === "object" ? JSON.stringify(v) : typeof v === "number" ? fmtNumber(v) : String(v);
}

async function detailPage(params, _query, { session, rerender }) {
  const id = params.id;
  if (!api.has(`${LIST}/{id}`)) return h("div", {}, h("h1", {}, `Run ${id}`), unavailable("Run details", `${LIST}/{id}`));
  const detail = await api.get(`${LIST}/${api.seg(id)}`);
  const run = detail.run || detail;
  const body = [h("h1", {}, `Run ${run.name || run.id}`)];
  const actions = [];
  if (!["SUCCEEDED", "FAILED", "CANCELLED", "STOPPED"].includes(run.status) && api.has(`${LIST}/{id}/cancel`, "post")
      && ["admin", "data-scientist", "researcher"].includes(session.principal.role)) {
    actions.push(actionButton("Cancel run", {
      kind: "danger", confirmText: `Cancel run ${run.id}?`,
      run: () => api.post(`${LIST}/${api.seg(run.id)}/cancel`), onDone: () => rerender(),
    }));
  }
  body.push(
    facts([
      ["Id", h("code", {}, run.id)], ["Status", badge(run.status)], ["Kind", run.kind], ["Owner", run.owner],
      ["Priority", fmtNumber(run.priority ?? 0)], ["Created", fmtDate(run.created_at)], ["Started", fmtDate(run.started_at)],
      ["Ended", fmtDate(run.ended_at)], ["Duration", duration(run)],
      ["Dataset commit", run.dataset_commit ? h("a", { href: entityHref(`commit:${run.dataset_commit}`) }, short(run.dataset_commit, 20)) : "—"],
      ["Code version", run.code_version || "—"],
      detail.queue_position ? ["Queue position", `#${detail.queue_position}`] : null,
      detail.waiting_reason ? ["Waiting because", detail.waiting_reason] : null,
      detail.model_version ? ["Model version", h("a", { href: entityHref(`model_version:${detail.model_version}`) }, detail.model_version)] : null,
      run.parent_id ? ["Parent run", h("a", { href: runHref(run.parent_id) }, run.parent_id)] : null,
    ]),
    h("p", {}, h("a", { href: entityHref(`run:${run.id}`) }, "Lineage of this run")),
    actions,
  );
  if (FINAL.includes(run.status) && api.has(`${LIST}/{id}/reproduce`, "post")
      && ["admin", "data-scientist", "researcher"].includes(session.principal.role)) {
    actions.push(actionButton("Reproduce run", {
      confirmText: `Re-run ${run.id} exactly (its dataset commit, seed and code)?`,
      run: () => api.post(`${LIST}/${api.seg(run.id)}/reproduce`, {}),
      onDone: (job) => { location.hash = runHref(job.run.id); },
    }));
  }
  if (run.error) body.push(section("Error", h("pre", { class: "raw error-text" }, run.error)));
  body.push(await reproductionSection(run));
  if (!FINAL.includes(run.status) && api.has(`${LIST}/{id}/watch`)) body.push(liveProgress(run, rerender));
  const stages = Object.entries(detail.startup || {}).filter(([k]) => k !== "total");
  if (stages.length) {
    body.push(section("Startup", [
      h("p", { class: "help" }, `${fmtNumber(detail.startup.total)} s from submit to the first training step, by stage.`),
      table(
        [{ label: "Stage", render: ([k]) => h("code", {}, k) }, { label: "Seconds", render: ([, v]) => fmtNumber(v) }],
        stages,
        { empty: "Not started yet." },
      ),
    ]));
  }
  const p = paramsOf(run, detail);
  body.push(section("Parameters", table(
    [{ label: "Parameter", render: ([k]) => h("code", {}, k) }, { label: "Value", render: ([, v]) => show(v) }],
    Object.entries(p || {}),
    { empty: "No parameters recorded." },
  )));
  const charts = section("Metrics");
  body.push(charts);
  if (!api.has(`${LIST}/{id}/metrics`)) {
    charts.append(unavailable("Metrics", `${LIST}/{id}/metrics`));
  } else {
    try {
      const series = await loadMetrics(run.id);
      const keys = Object.keys(series).sort();
      if (keys.length === 0) charts.append(h("p", { class: "empty" }, "No metrics logged yet."));
      charts.append(h("div", { class: "chart-grid" }, keys.map((k) => lineChart({ title: k, series: [{ name: k, points: series[k] }], xLabel: "epoch / step" }))));
    } catch (err) {
      charts.append(partError("Metrics", err));
    }
  }
  const logs = section("Logs");
  body.push(logs);
  if (!api.has(`${LIST}/{id}/logs`)) {
    logs.append(unavailable("Logs", `${LIST}/{id}/logs`));
  } else {
    try {
      const path = `${LIST}/${api.seg(run.id)}/logs`;
      const data = await api.get(path);
      let text = data;
      if (data && typeof data === "object") text = Array.isArray(data.lines) ? data.lines.join("\n") : data.logs ?? data.text ?? JSON.stringify(data, null, 2);
      const pre = h("pre", { class: "logs", tabindex: "0", "aria-label": "run logs" }, String(text || ""));
      const empty = h("p", { class: "empty" }, "No logs yet.");
      empty.hidden = Boolean(text);
      logs.append(empty, pre);
      // The route answers a bounded chunk from a byte offset: read on at once while chunks
      // come, then poll a running job's output until the job is final.
      if (data && typeof data.next_offset === "number" && data.final === false) {
        let offset = data.next_offset;
        const follow = async () => {
          if (!logs.isConnected) return;
          try {
            const more = await api.get(path, { offset });
            if (more.text) {
              pre.append(more.text);
              empty.hidden = true;
            }
            const advanced = more.next_offset > offset;
            offset = more.next_offset;
            if (!more.final) setTimeout(follow, advanced ? 0 : LOG_POLL_MS);
          } catch {
            // stop following; what was read stays shown
          }
        };
        setTimeout(follow, 0);
      }
    } catch (err) {
      logs.append(partError("Logs", err));
    }
  }
  return h("div", {}, body);
}

const FINAL = ["SUCCEEDED", "FAILED", "CANCELLED", "STOPPED"];

/** For a re-run, how its per-epoch metrics compare with the run it reproduces (the first
 * difference named); for any run, links to its re-runs. Null when there is neither. */
async function reproductionSection(run) {
  const base = `${LIST}/${api.seg(run.id)}`;
  const parts = [];
  try {
    if (api.has(`${LIST}/{id}/reproduced-by`)) {
      const jobs = await api.get(`${base}/reproduced-by`);
      if (jobs.length) {
        parts.push(h("p", { "data-reproduced-by": "" }, "Reproduced by ",
          jobs.map((j, i) => [i ? ", " : "", h("a", { href: runHref(j.run.id) }, j.run.id), " ", badge(j.run.status)])));
      }
    }
    if ((run.tags || []).some((t) => t.startsWith("reproduces:")) && api.has(`${LIST}/{id}/reproduction`)) {
      const r = await api.get(`${base}/reproduction`);
      const d = r.first_difference;
      parts.push(facts([
        ["Reproduces", h("a", { href: runHref(r.original) }, r.original)],
        ["Result", badge(r.status)],
        ["Compared", `${r.epochs} epochs, ${r.keys.length} metrics${r.tolerance ? `, relative tolerance ${r.tolerance}` : " (bitwise)"}`],
        d ? ["First difference", `epoch ${d.epoch} ${d.key}: ${show(d.original)} vs ${show(d.reproduced)}`] : null,
        r.code_changed ? ["Code", "differed from the original's (allowed)"] : null,
        r.reason ? ["Reason", r.reason] : null,
      ]));
    }
  } catch (err) {
    return partError("Reproduction", err);
  }
  return parts.length ? section("Reproduction", parts) : null;
}

/** A running job's live line: the latest step-level progress (``step/...`` metrics), refreshed
 * each time the job changes (the ``watch`` long poll answers at once on a new metric point or
 * status); a new epoch or the end of the job renders the page again. */
function liveProgress(run, rerender) {
  const line = h("p", { class: "live-progress", "data-live": "progress" }, "Waiting for the first training step…");
  const path = `${LIST}/${api.seg(run.id)}`;
  let version = null;
  let epochs = null;
  const latest = (points) => points.reduce((a, b) => (!a || b.timestamp >= a.timestamp ? b : a), null);
  const tick = async () => {
    if (!line.isConnected && version !== null) return;
    try {
      const change = await api.get(`${path}/watch`, version === null ? { timeout_s: 25 } : { known: version, timeout_s: 25 });
      version = change.version;
      const detail = await api.get(path);
      const done = await api.get(`${path}/metrics`, { key: "epoch_time_s" });
      if (epochs === null) epochs = done.length;
      if (FINAL.includes((detail.run || detail).status) || done.length > epochs) {
        if (line.isConnected) rerender();
        return;
      }
      const loss = latest(await api.get(`${path}/metrics`, { key: "step/loss", limit: 10000 }));
      const rate = latest(await api.get(`${path}/metrics`, { key: "step/samples_per_s", limit: 10000 }));
      if (loss) line.textContent = `Epoch ${epochs + 1}, step ${loss.step}: loss ${fmtNumber(loss.value)}` + (rate ? `, ${fmtNumber(rate.value)} samples/s` : "");
      setTimeout(tick, 0);
    } catch {
      setTimeout(tick, LOG_POLL_MS);
    }
  };
  setTimeout(tick, 0);
  return section("Progress", line);
}

async function comparePage(_params, query) {
  const ids = (query.get("ids") || "").split(",").map((x) => x.trim()).filter(Boolean).slice(0, 8);
  const body = [h("h1", {}, "Compare runs")];
  if (ids.length < 2) {
    body.push(h("p", {}, "Pick two or more runs on the ", h("a", { href: "#/runs" }, "runs page"), "."));
    return h("div", {}, body);
  }
  const details = await Promise.all(ids.map((id) => api.get(`${LIST}/${api.seg(id)}`)));
  const runs = details.map((d) => d.run || d);
  const params = details.map((d, i) => paramsOf(runs[i], d) || {});
  let metrics = runs.map(() => ({}));
  if (api.has(`${LIST}/{id}/metrics`)) metrics = await Promise.all(runs.map((r) => loadMetrics(r.id).catch(() => ({}))));
  const label = (r) => r.name || short(r.id, 16);
  const paramKeys = [...new Set(params.flatMap((p) => Object.keys(p)))].sort();
  const metricKeys = [...new Set(metrics.flatMap((m) => Object.keys(m)))].sort();
  const last = (m, k) => (m[k] && m[k].length ? m[k][m[k].length - 1][1] : null);
  const rows = [
    { key: "Status", cells: runs.map((r) => badge(r.status)) },
    { key: "Owner", cells: runs.map((r) => r.owner) },
    { key: "Dataset commit", cells: runs.map((r) => (r.dataset_commit ? short(r.dataset_commit, 14) : "—")) },
    ...paramKeys.map((k) => {
      const values = params.map((p) => show(p[k]));
      return { key: k, group: "param", differs: new Set(values).size > 1, cells: values };
    }),
    ...metricKeys.map((k) => ({ key: k, group: "metric (last)", cells: metrics.map((m) => fmtNumber(last(m, k))) })),
  ];
  body.push(h("div", { class: "table-wrap" }, h("table", { class: "compare" },
    h("caption", {}, "Runs side by side; differing parameters are marked"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, ""), runs.map((r) => h("th", { scope: "col" }, h("a", { href: runHref(r.id) }, label(r)))))),
    h("tbody", {}, rows.map((row) => h("tr", { class: row.differs ? "differs" : null },
      h("th", { scope: "row" }, row.group ? `${row.key} (${row.group})` : row.key, row.differs ? h("span", { class: "differs-mark" }, " ≠") : null),
      row.cells.map((c) => h("td", {}, c)))))),
  ));
  const charts = h("div", { class: "chart-grid" });
  for (const k of metricKeys) {
    charts.append(lineChart({ title: k, xLabel: "epoch / step", series: runs.map((r, i) => ({ name: label(r), points: metrics[i][k] || [] })) }));
  }
  body.push(section("Metrics", metricKeys.length ? charts : h("p", { class: "empty" }, "No metrics to compare.")));
  return h("div", {}, body);
}

export const routes = [
  { path: ["runs"], section: "runs", render: listPage },
  { path: ["runs", "compare"], section: "runs", render: comparePage },
  { path: ["runs", ":id"], section: "runs", render: detailPage },
];
