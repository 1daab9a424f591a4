// Runs of every kind (tracked from any code, training, tuning, trials): search with the filter
// language of GET /runs, pick runs to compare; one run's page (params, tags, metric charts,
// artifacts, logs). A tuning run's page is the tuning page (tuning.js).

import * as api from "../api.js";
import { actionButton, entityHref, fetchPage, pageOf, pager, partError, unavailable } from "../common.js";
import { isBookkeeping } from "../metric_charts.js";
import { badge, facts, fmtBytes, fmtDate, fmtNumber, h, section, short, table } from "../dom.js";
import { artifactsLink } from "./artifacts.js";
import {
  FINAL, RUN_WRITERS, duration, metricsSection, paramsOf, runHref, runLabel, show,
} from "./run_parts.js";
import { comparePage } from "./run_compare.js";
import { tuningPage } from "./tuning.js";

const JOBS = "/training/jobs";
const LOG_POLL_MS = 3000;
const MAX_COLUMNS = 8;
const EXAMPLES = ['kind = "tracked"', 'kind = "tune"', 'status = "FAILED"', "metrics.val_accuracy > 0.9"];
const FIELD_REF = /\b(params|metrics)\.([A-Za-z0-9_][A-Za-z0-9_./-]*)/g;
// the filter names the kind itself: then trials are not left out
const KIND_CLAUSE = /(^|[\s(])kind\s*(=|!=|<>|\bnot\b|\bin\b|\bi?like\b)/i;

function listHref({ filter, sort, trials, cols, page }) {
  const q = new URLSearchParams();
  if (filter) q.set("filter", filter);
  if (sort) q.set("sort", sort);
  if (trials) q.set("trials", "1");
  if (cols) q.set("cols", cols.join(","));
  if (page && page > 1) q.set("page", String(page));
  const text = q.toString();
  return `#/runs${text ? `?${text}` : ""}`;
}

/** The extra columns: those the user picked, else the params and metrics the filter or sort
 * names and the metrics most runs on the page have. */
function columnsFor(state, rows) {
  if (state.cols) return state.cols;
  const named = [...`${state.filter} ${state.sort}`.matchAll(FIELD_REF)].map((m) => `${m[1]}.${m[2]}`);
  const counts = new Map();
  for (const r of rows) {
    for (const k of Object.keys(r.metrics || {})) {
      if (!isBookkeeping(k)) counts.set(k, (counts.get(k) || 0) + 1);
    }
  }
  const common = [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, 3).map(([k]) => `metrics.${k}`);
  return [...new Set([...named, ...common])].slice(0, MAX_COLUMNS);
}

function columnValue(row, col) {
  const at = col.indexOf(".");
  const [kind, key] = [col.slice(0, at), col.slice(at + 1)];
  const bag = kind === "metrics" ? row.metrics : row.params;
  return bag ? bag[key] : undefined;
}

function sortHeader(state, label, field) {
  const current = (state.sort || "").trim().split(/\s+/);
  const active = current[0] === field;
  const desc = !active || (current[1] || "ASC").toUpperCase() === "ASC";
  const next = `${field} ${desc ? "DESC" : "ASC"}`;
  return h("a", { href: listHref({ ...state, sort: next, page: 1 }), class: "sort-link", title: `Sort by ${field}` }, label, active ? (desc ? " ▲" : " ▼") : "");
}

function searchForm(state) {
  const filter = h("input", {
    id: "run-filter", name: "filter", type: "search", value: state.filter, spellcheck: "false", autocomplete: "off",
    placeholder: 'params.lr < 0.01 and metrics.val_accuracy > 0.9 and tags.team = "vision"',
    "aria-describedby": "run-filter-help run-filter-error",
  });
  const sort = h("input", { id: "run-sort", name: "sort", value: state.sort, spellcheck: "false", autocomplete: "off",
    placeholder: "created DESC", list: "run-sort-keys" });
  const trials = h("input", { id: "run-trials", name: "trials", type: "checkbox", checked: state.trials });
  const error = h("p", { class: "form-error", id: "run-filter-error", role: "alert" });
  const keys = h("datalist", { id: "run-sort-keys" });
  const form = h("form", { class: "run-search", id: "run-search", role: "search" },
    h("div", { class: "run-search-row" },
      h("label", { for: "run-filter" }, "Filter"), filter),
    h("div", { class: "run-search-row" },
      h("label", { for: "run-sort" }, "Sort"), sort, keys,
      h("label", { class: "check" }, trials, " Include trials"),
      h("button", { type: "submit", class: "primary" }, "Search"),
      state.filter || state.sort ? h("a", { href: "#/runs", class: "button" }, "Clear") : null),
    error,
    h("p", { class: "help", id: "run-filter-help" },
      "Clauses joined by ", h("code", {}, "and"), ": ", h("code", {}, "params.KEY"), ", ", h("code", {}, "metrics.KEY"),
      " (final value), ", h("code", {}, "tags.KEY"), ", status, kind, owner, dataset, created; operators = != < <= > >= LIKE IN. Try: ",
      EXAMPLES.map((ex, i) => [i ? " · " : "", h("a", { href: listHref({ filter: ex }) }, ex)])),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const target = listHref({ filter: filter.value.trim(), sort: sort.value.trim(), trials: trials.checked, cols: state.cols });
    if (window.location.hash === target) window.dispatchEvent(new HashChangeEvent("hashchange"));
    else window.location.hash = target;
  });
  return { form, error, keys };
}

function columnPicker(state, rows, shown) {
  const keys = new Set(shown);
  for (const r of rows) {
    for (const k of Object.keys(r.params || {})) keys.add(`params.${k}`);
    for (const k of Object.keys(r.metrics || {})) keys.add(`metrics.${k}`);
  }
  if (keys.size === 0) return null;
  const boxes = [...keys].sort().map((k) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "col", value: k, checked: shown.includes(k) }), ` ${k}`));
  const apply = h("button", { type: "button" }, "Show these columns");
  apply.addEventListener("click", () => {
    const cols = boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
    window.location.hash = listHref({ ...state, cols: cols.length ? cols : [""], page: 1 });
  });
  return h("details", { class: "column-picker" }, h("summary", {}, "Columns"), h("div", { class: "column-list" }, boxes), apply);
}

async function listPage(_params, query) {
  const state = {
    filter: query.get("filter") || "", sort: query.get("sort") || "", trials: query.get("trials") === "1",
    cols: query.has("cols") ? query.get("cols").split(",").filter(Boolean) : null,
  };
  const page = pageOf(query);
  const body = [h("h1", {}, "Runs")];
  if (!api.has("/runs")) {
    body.push(unavailable("Runs", "/runs"));
    return h("div", {}, body);
  }
  const search = searchForm(state);
  body.push(search.form);
  const leaveOutTrials = !state.trials && !KIND_CLAUSE.test(state.filter);
  const filter = leaveOutTrials ? [state.filter, 'kind != "trial"'].filter(Boolean).join(" and ") : state.filter;
  let result;
  try {
    result = await fetchPage("/runs", query, page, { filter, order_by: state.sort || null });
  } catch (err) {
    if (err.status !== 422 && err.status !== 400) throw err;
    // a malformed filter or sort: the message names the token (and its position in what the
    // user wrote, so ask again without the clause added here); the page stays usable
    const own = leaveOutTrials && state.filter
      ? await api.request("/runs", { query: { filter: state.filter, order_by: state.sort || null, limit: 1 } }).then(() => err, (e) => e)
      : err;
    search.error.textContent = `The search failed: ${own.message}`;
    const inSort = Boolean(state.sort) && /sort|order/i.test(own.message);
    search.form.querySelector(inSort ? "#run-sort" : "#run-filter").setAttribute("aria-invalid", "true");
    const at = /position (\d+)/.exec(own.message);
    if (at) {
      // point at the token: the text as written, a caret under the offending position
      const text = inSort ? state.sort : state.filter;
      const pos = Math.min(Number(at[1]), text.length);
      search.error.after(h("pre", { class: "filter-caret", "aria-hidden": "true" }, `${text}\n${" ".repeat(pos)}^`));
    }
    body.push(h("p", { class: "empty" }, "No runs shown: correct the filter or sort above."));
    return h("div", {}, body);
  }
  const rows = result.rows;
  const cols = columnsFor(state, rows);
  const metricKeys = [...new Set(rows.flatMap((r) => Object.keys(r.metrics || {})))].filter((k) => !isBookkeeping(k)).sort();
  search.keys.append(...["created DESC", "created ASC", "name ASC", ...metricKeys.flatMap((k) => [`metrics.${k} DESC`, `metrics.${k} ASC`])]
    .map((v) => h("option", { value: v })));
  const hrefFor = (p) => listHref({ ...state, page: p });
  const picker = columnPicker(state, rows, cols);
  if (picker) body.push(picker);
  body.push(pager(result, hrefFor));
  const form = h("form", { class: "compare-form", id: "compare-form" });
  const label = (r) => h("a", { href: runHref(r.run.id) }, runLabel(r.run));
  form.append(
    table(
      [
        { label: "Compare", render: (r) => h("input", { type: "checkbox", name: "run", value: r.run.id, "aria-label": `compare run ${r.run.id}` }) },
        { label: "Run", render: label },
        { label: "Kind", render: (r) => (r.run.kind === "trial" && r.run.parent_id
          ? ["trial of ", h("a", { href: runHref(r.run.parent_id) }, short(r.run.parent_id, 16))] : r.run.kind) },
        { label: "Status", render: (r) => badge(r.run.status) },
        { label: "Owner", render: (r) => r.run.owner || "—" },
        { label: "Dataset", render: (r) => (r.dataset ? short(r.dataset, 28) : "—") },
        ...cols.map((c) => ({
          label: sortHeader(state, c.replace(/^metrics\./, "").replace(/^params\./, "param "), c),
          numeric: c.startsWith("metrics."), render: (r) => show(columnValue(r, c)),
        })),
        { label: sortHeader(state, "Created", "created"), render: (r) => fmtDate(r.run.created_at) },
        { label: "Duration", render: (r) => duration(r.run) },
      ],
      rows,
      {
        caption: state.filter ? `Runs matching ${state.filter}` : "Runs of every kind, newest first",
        empty: state.filter ? "No run matches this filter." : "No runs yet.",
      },
    ),
    h("button", { type: "submit", id: "compare-button" }, "Compare selected"),
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

// --- one run -----------------------------------------------------------------------------------

async function detailPage(params, query, ctx) {
  const id = params.id;
  if (!api.has("/runs/{id}")) return h("div", {}, h("h1", {}, `Run ${id}`), unavailable("Run details", "/runs/{id}"));
  const view = await api.get(`/runs/${api.seg(id)}`);
  const run = view.run;
  if (run.kind === "tune") return tuningPage(view, ctx);
  const job = run.kind === "train" && api.has(`${JOBS}/{id}`) ? await api.get(`${JOBS}/${api.seg(id)}`) : null;
  const body = [h("h1", {}, `Run ${runLabel(run)}`)];
  const actions = h("div", { class: "actions" });
  const may = RUN_WRITERS.includes(ctx.session.principal.role);
  if (job && !FINAL.includes(run.status) && may && api.has(`${JOBS}/{id}/cancel`, "post")) {
    actions.append(actionButton("Cancel run", {
      kind: "danger", confirmText: `Cancel run ${run.id}?`,
      run: () => api.post(`${JOBS}/${api.seg(run.id)}/cancel`), onDone: () => ctx.rerender(),
    }));
  }
  if (job && FINAL.includes(run.status) && may && api.has(`${JOBS}/{id}/reproduce`, "post")) {
    actions.append(actionButton("Reproduce run", {
      confirmText: `Re-run ${run.id} exactly (its dataset commit, seed and code)?`,
      run: () => api.post(`${JOBS}/${api.seg(run.id)}/reproduce`, {}),
      onDone: (again) => { window.location.hash = runHref(again.run.id); },
    }));
  }
  const tags = Object.entries(view.tags || {});
  body.push(
    facts([
      ["Id", h("code", {}, run.id)], ["Status", badge(run.status)], ["Kind", run.kind], ["Owner", run.owner],
      run.kind === "trial" && run.parent_id ? ["Trial of", h("a", { href: runHref(run.parent_id) }, run.parent_id)] : null,
      run.kind !== "trial" && run.parent_id ? ["Parent run", h("a", { href: runHref(run.parent_id) }, run.parent_id)] : null,
      ["Created", fmtDate(run.created_at)], ["Started", fmtDate(run.started_at)],
      ["Ended", fmtDate(run.ended_at)], ["Duration", duration(run)],
      ["Dataset", run.dataset_commit ? h("a", { href: entityHref(`commit:${run.dataset_commit}`) }, view.dataset || short(run.dataset_commit, 20)) : "—"],
      run.code_version ? ["Code version", run.code_version] : null,
      tags.length ? ["Tags", tags.map(([k, v]) => h("span", { class: "badge badge-muted" }, v ? `${k}=${v}` : k))] : null,
      job && job.queue_position ? ["Queue position", `#${job.queue_position}`] : null,
      job && job.waiting_reason ? ["Waiting because", job.waiting_reason] : null,
      job && job.model_version ? ["Model version", h("a", { href: entityHref(`model_version:${job.model_version}`) }, job.model_version)] : null,
      job && job.usage ? ["Resources held", `${fmtNumber(job.usage.cpu_seconds / 3600)} CPU-hours, ${fmtNumber(job.usage.gpu_seconds / 3600)} GPU-hours`
        + (job.usage.peak_mem_bytes === null ? "" : `, peak memory ${fmtBytes(job.usage.peak_mem_bytes)}`)] : null,
    ]),
    h("p", {}, h("a", { href: entityHref(`run:${run.id}`) }, "Lineage of this run")),
    actions,
  );
  if (run.error) body.push(section("Error", h("pre", { class: "raw error-text" }, run.error)));
  if (job) {
    body.push(await reproductionSection(run));
    if (!FINAL.includes(run.status) && api.has(`${JOBS}/{id}/watch`)) body.push(liveProgress(run, ctx.rerender));
    const stages = Object.entries(job.startup || {}).filter(([k]) => k !== "total");
    if (stages.length) {
      body.push(section("Startup", [
        h("p", { class: "help" }, `${fmtNumber(job.startup.total)} s from submit to the first training step, by stage.`),
        table(
          [{ label: "Stage", render: ([k]) => h("code", {}, k) }, { label: "Seconds", render: ([, v]) => fmtNumber(v) }],
          stages,
          { empty: "Not started yet." },
        ),
      ]));
    }
  }
  body.push(section("Parameters", table(
    [{ label: "Parameter", render: ([k]) => h("code", {}, k) }, { label: "Value", render: ([, v]) => show(v) }],
    Object.entries(paramsOf(view)).sort(([a], [b]) => a.localeCompare(b)),
    { empty: "No parameters recorded." },
  )));
  body.push(await metricsSection([{ id: run.id, label: runLabel(run) }]));
  body.push(artifactsSection(view));
  if (job) body.push(await logsSection(run));
  if (!job && !FINAL.includes(run.status)) body.push(followTracked(view, ctx.rerender));
  return h("div", {}, body);
}

/** A run logged from user code (no platform job, so no watch route): while it runs, its view
 * is read again every ``LOG_POLL_MS`` and the page renders again when its status, final metrics
 * or artifacts changed (a new step logged, the run ended). */
function followTracked(view, rerender) {
  const note = h("p", { class: "help", "data-live": "tracked" },
    `This run is in progress: the page follows it (checked every ${LOG_POLL_MS / 1000} s).`);
  const signature = (v) => JSON.stringify([v.run.status, v.metrics, (v.artifacts || []).length]);
  const known = signature(view);
  const tick = async () => {
    if (!note.isConnected) return;
    try {
      const now = await api.get(`/runs/${api.seg(view.run.id)}`);
      if (signature(now) !== known) {
        rerender();
        return;
      }
    } catch {
      // a failed read (gateway restarting): try again at the next tick
    }
    setTimeout(tick, LOG_POLL_MS);
  };
  setTimeout(tick, LOG_POLL_MS);
  return note;
}

function artifactsSection(view) {
  const items = view.artifacts || [];
  if (items.length === 0 && view.run.kind !== "tracked") return null;
  return section("Artifacts",
    table(
      [{ label: "Path", render: (a) => h("code", {}, a.path) }, { label: "Size", numeric: true, render: (a) => fmtBytes(a.size_bytes) }],
      items.slice(0, 10),
      { empty: "No artifacts logged." },
    ),
    items.length ? artifactsLink(view.run.id, items.length) : null);
}

async function logsSection(run) {
  const logs = section("Logs");
  if (!api.has(`${JOBS}/{id}/logs`)) {
    logs.append(unavailable("Logs", `${JOBS}/{id}/logs`));
    return logs;
  }
  const path = `${JOBS}/${api.seg(run.id)}/logs`;
  const pre = h("pre", { class: "logs", tabindex: "0", "aria-label": "run logs" });
  const empty = h("p", { class: "empty" }, "No logs yet.");
  let chunk;
  try {
    chunk = await api.get(path);
  } catch (err) {
    logs.append(partError("Logs", err));
    return logs;
  }
  pre.append(chunk.text || "");
  empty.hidden = Boolean(chunk.text);
  logs.append(empty, pre);
  // The route answers a bounded chunk from a byte offset: read on at once while chunks come,
  // then poll a running job's output until the job is final.
  let offset = chunk.next_offset;
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
  if (chunk.final === false) setTimeout(follow, 0);
  return logs;
}

/** For a re-run, how its per-epoch metrics compare with the run it reproduces (the first
 * difference named); for any run, links to its re-runs. Null when there is neither. */
async function reproductionSection(run) {
  const base = `${JOBS}/${api.seg(run.id)}`;
  const parts = [];
  try {
    if (api.has(`${JOBS}/{id}/reproduced-by`)) {
      const jobs = await api.get(`${base}/reproduced-by`);
      if (jobs.length) {
        parts.push(h("p", { "data-reproduced-by": "" }, "Reproduced by ",
          jobs.map((j, i) => [i ? ", " : "", h("a", { href: runHref(j.run.id) }, j.run.id), " ", badge(j.run.status)])));
      }
    }
    if ((run.tags || []).some((t) => t.startsWith("reproduces:")) && api.has(`${JOBS}/{id}/reproduction`)) {
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
  const path = `${JOBS}/${api.seg(run.id)}`;
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

export const routes = [
  { path: ["runs"], section: "runs", render: listPage },
  { path: ["runs", "compare"], section: "runs", render: comparePage },
  { path: ["runs", ":id"], section: "runs", render: detailPage },
];
