// A tuning run (hyperparameter search on Ray Tune): its search space, the trials table sorted by
// the objective (early-stopped trials marked) and parallel coordinates of params vs objective.

import * as api from "../api.js";
import { actionButton, entityHref, unavailable } from "../common.js";
import { parallelCoordinates } from "../charts.js";
import { badge, facts, fmtDate, fmtNumber, h, section, short, table } from "../dom.js";
import { FINAL, RUN_WRITERS, duration, runHref, runLabel, show } from "./run_parts.js";

const COMPARE_BEST = 5;

/** Trials best first by the objective; trials without a value last. */
export function sortTrials(trials, mode) {
  const sign = mode === "max" ? -1 : 1;
  const has = (t) => typeof t.metric === "number" && Number.isFinite(t.metric);
  return trials.slice().sort((a, b) => Number(!has(a)) - Number(!has(b))
    || (has(a) ? sign * (a.metric - b.metric) : 0) || a.id.localeCompare(b.id));
}

function isEarlyStopped(trial) {
  return trial.status === "STOPPED";
}

function axisKind(distribution, values) {
  if (/^\s*loguniform\b/i.test(distribution || "")) return "log";
  return values.every((v) => v === null || v === undefined || typeof v === "number") ? "linear" : "category";
}

function parallelView(job, trials) {
  const spec = job.spec;
  const keys = Object.keys(spec.space || {});
  const ranked = trials.filter((t) => typeof t.metric === "number" && Number.isFinite(t.metric));
  const dims = [
    ...keys.map((k) => ({ key: k, label: k, kind: axisKind(spec.space[k], trials.map((t) => t.params[k])), note: short(spec.space[k], 24) })),
    { key: "\u0000objective", label: spec.metric, kind: "linear", invert: spec.mode === "min", note: "best at the top" },
  ];
  const items = trials.map((t) => {
    const rank = ranked.indexOf(t);
    return {
      id: t.id,
      values: { ...t.params, "\u0000objective": t.metric },
      rank: rank < 0 ? null : ranked.length > 1 ? rank / (ranked.length - 1) : 0,
      dashed: isEarlyStopped(t),
      title: `${t.id} (${t.status}): ${keys.map((k) => `${k}=${show(t.params[k])}`).join(", ")} → ${spec.metric} ${show(t.metric)}`,
    };
  });
  return [
    parallelCoordinates({ title: `Trials: params against ${spec.metric}`, dims, items }),
    h("p", { class: "help" }, `One line per trial, from its params to its ${spec.metric}. Colour by rank: dark blue the best, `
      + "through green, to orange the worst; dashed: stopped early; grey dotted: no value. Hover a line for the trial."),
  ];
}

/** The page of a tuning run (`view` is its GET /runs/{id}). */
export async function tuningPage(view, { session, rerender }) {
  const run = view.run;
  const body = [h("h1", {}, `Tuning run ${runLabel(run)}`)];
  if (!api.has("/tuning/jobs/{id}")) {
    body.push(unavailable("Tuning jobs", "/tuning/jobs/{id}"));
    return h("div", {}, body);
  }
  const job = await api.get(`/tuning/jobs/${api.seg(run.id)}`);
  const spec = job.spec;
  const trials = sortTrials(job.trials || [], spec.mode);
  const stopped = trials.filter(isEarlyStopped).length;
  const better = spec.mode === "min" ? "lower is better" : "higher is better";
  body.push(facts([
    ["Id", h("code", {}, run.id)], ["Status", badge(run.status)], ["Owner", run.owner],
    ["Objective", `${spec.metric} (${better})`],
    ["Scheduler", spec.scheduler === "asha" ? `ASHA (grace period ${spec.grace_period}, reduction factor ${spec.reduction_factor})` : spec.scheduler],
    ["Trials", `${trials.length} (${spec.samples} samples, ${spec.concurrency} at once${stopped ? `; ${stopped} stopped early` : ""})`],
    ["Model", spec.training.model],
    ["Dataset", run.dataset_commit ? h("a", { href: entityHref(`commit:${run.dataset_commit}`) }, view.dataset || short(run.dataset_commit, 20)) : "—"],
    job.best_trial ? ["Best trial", [h("a", { href: runHref(job.best_trial) }, job.best_trial), ` (${spec.metric} ${show(job.best_metric)})`]] : null,
    job.model_version ? ["Model version", h("a", { href: entityHref(`model_version:${job.model_version}`) }, job.model_version)] : null,
    job.waiting_reason ? ["Waiting because", job.waiting_reason] : null,
    ["Created", fmtDate(run.created_at)], ["Duration", duration(run)],
  ]));
  if (!FINAL.includes(run.status) && RUN_WRITERS.includes(session.principal.role) && api.has("/tuning/jobs/{id}/cancel", "post")) {
    body.push(h("div", { class: "actions" }, actionButton("Cancel search", {
      kind: "danger", confirmText: `Cancel tuning run ${run.id} and all its trials?`,
      run: () => api.post(`/tuning/jobs/${api.seg(run.id)}/cancel`), onDone: () => rerender(),
    })));
  }
  if (run.error) body.push(section("Error", h("pre", { class: "raw error-text" }, run.error)));
  body.push(section("Search space", table(
    [{ label: "Param", render: ([k]) => h("code", {}, k) }, { label: "Distribution", render: ([, d]) => h("code", {}, d) }],
    Object.entries(spec.space || {}),
  )));
  const keys = Object.keys(spec.space || {});
  const best = trials.filter((t) => typeof t.metric === "number").slice(0, COMPARE_BEST).map((t) => t.id);
  body.push(section("Trials",
    h("p", { class: "help" }, `Sorted by ${spec.metric}, ${better}. A trial ASHA stopped early is marked.`),
    table(
      [
        { label: "Rank", numeric: true, render: (t) => (typeof t.metric === "number" ? String(trials.indexOf(t) + 1) : "—") },
        { label: "Trial", render: (t) => h("a", { href: runHref(t.id) }, short(t.id, 28)) },
        { label: "Status", render: (t) => [badge(t.status), isEarlyStopped(t) ? h("span", { class: "badge badge-warn early-stop" }, "stopped early") : null] },
        ...keys.map((k) => ({ label: k, numeric: true, render: (t) => show(t.params[k]) })),
        { label: spec.metric, numeric: true, render: (t) => h("strong", {}, show(t.metric)) },
        { label: "Epochs", numeric: true, render: (t) => fmtNumber(t.epochs) },
        { label: "Note", render: (t) => t.error || "" },
      ],
      trials,
      { caption: `Trials of ${run.id}, best first`, empty: "No trials have started yet." },
    ),
    best.length > 1 ? h("p", {}, h("a", { href: `#/runs/compare?ids=${best.map(encodeURIComponent).join(",")}`, class: "button" },
      `Compare the best ${best.length} trials`)) : null,
  ));
  body[body.length - 1].querySelectorAll("tbody tr").forEach((row, i) => {
    row.dataset.trial = trials[i].id;
    if (isEarlyStopped(trials[i])) row.classList.add("early-stopped");
  });
  body.push(section("Params against the objective", trials.length ? parallelView(job, trials) : h("p", { class: "empty" }, "No trials yet.")));
  return h("div", {}, body);
}
