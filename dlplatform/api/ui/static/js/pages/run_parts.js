// Pieces the run pages share (list, run, compare, tuning, artifacts): links, labels, durations,
// params of any kind of run, metric points.

import * as api from "../api.js";
import { fetchAll, partError, unavailable } from "../common.js";
import { metricPanel } from "../metric_charts.js";
import { fmtNumber, parseJSON, section, short } from "../dom.js";

export const FINAL = ["SUCCEEDED", "FAILED", "CANCELLED", "STOPPED"];
export const RUN_WRITERS = ["admin", "data-scientist", "researcher"];

export function runHref(id) {
  return `#/runs/${encodeURIComponent(id)}`;
}

/** A run's name when it has one of its own, else its id. */
export function runLabel(run) {
  return run.name && run.name !== run.id ? run.name : short(run.id, 24);
}

/** Distinct labels for runs shown side by side (a repeated name gets its id). */
export function distinctLabels(runs) {
  const labels = runs.map(runLabel);
  return labels.map((l, i) => (labels.indexOf(l) !== labels.lastIndexOf(l) ? `${l} (${short(runs[i].id, 14)})` : l));
}

export function duration(run) {
  if (!run.started_at) return "—";
  const end = run.ended_at ? new Date(run.ended_at) : new Date();
  const secs = Math.max(0, (end - new Date(run.started_at)) / 1000);
  if (secs < 60) return `${secs.toFixed(0)} s`;
  if (secs < 3600) return `${(secs / 60).toFixed(1)} min`;
  return `${(secs / 3600).toFixed(1)} h`;
}

/** A value as a table cell shows it: numbers formatted, objects as JSON, nothing as a dash. */
export function show(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "object") return JSON.stringify(v);
  if (typeof v === "number") return fmtNumber(v);
  return String(v);
}

const SPEC_PARAMS = ["model", "dataset", "label", "epochs", "batch_size", "lr", "workers", "seed", "validation_fraction", "use_gpu", "priority"];

/** A run's params: what it logged (RunView.params); a job that has not started logged none yet,
 * so its spec's training settings and params stand in. */
export function paramsOf(view) {
  if (view.params && Object.keys(view.params).length) return view.params;
  const parsed = parseJSON(view.run.spec_json, {}) || {};
  const spec = parsed.training || parsed;
  const out = {};
  for (const key of SPEC_PARAMS) if (spec[key] !== undefined && spec[key] !== null) out[key] = spec[key];
  if (spec.params && typeof spec.params === "object") Object.assign(out, spec.params);
  return out;
}

/** Every metric point of a run ({key, value, step, timestamp}), a bounded page at a time. */
export async function loadPoints(id) {
  return fetchAll(`/runs/${api.seg(id)}/metrics`, "/runs/{id}/metrics", {}, 10000);
}

/** The "Metrics" section: the charts of one run, or of several overlaid. runs: [{id, label}]. */
export async function metricsSection(runs) {
  const part = section("Metrics");
  if (!api.has("/runs/{id}/metrics")) {
    part.append(unavailable("Metrics", "/runs/{id}/metrics"));
    return part;
  }
  try {
    const points = await Promise.all(runs.map((r) => loadPoints(r.id)));
    part.append(metricPanel(runs.map((r, i) => ({ label: r.label, points: points[i] }))));
  } catch (err) {
    part.append(partError("Metrics", err));
  }
  return part;
}
