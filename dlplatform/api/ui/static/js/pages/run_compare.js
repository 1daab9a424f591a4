// Compare runs of any kind: params and final metrics side by side (differing values marked) and
// their curves overlaid, one chart per metric group with one series per run.

import * as api from "../api.js";
import { unavailable } from "../common.js";
import { isBookkeeping } from "../metric_charts.js";
import { badge, h } from "../dom.js";
import { distinctLabels, metricsSection, paramsOf, runHref, show } from "./run_parts.js";

const MAX_RUNS = 8;

function compareRow(key, cells, { group, mark = true } = {}) {
  const differs = mark && new Set(cells.map((c) => (typeof c === "string" ? c : c.textContent))).size > 1;
  return h("tr", { class: differs ? "differs" : null, "data-row": group ? `${group}.${key}` : key },
    h("th", { scope: "row" }, group ? h("span", { class: "row-group" }, `${group}.`) : null, key,
      differs ? h("span", { class: "differs-mark", title: "the runs differ here" }, " ≠") : null),
    cells.map((c) => h("td", {}, c)));
}

export async function comparePage(_params, query) {
  const ids = [...new Set((query.get("ids") || "").split(",").map((x) => x.trim()).filter(Boolean))].slice(0, MAX_RUNS);
  const body = [h("h1", {}, "Compare runs")];
  if (ids.length < 2) {
    body.push(h("p", {}, "Pick two or more runs on the ", h("a", { href: "#/runs" }, "runs page"), "."));
    return h("div", {}, body);
  }
  if (!api.has("/runs/{id}")) {
    body.push(unavailable("Runs", "/runs/{id}"));
    return h("div", {}, body);
  }
  const views = await Promise.all(ids.map((id) => api.get(`/runs/${api.seg(id)}`)));
  const runs = views.map((v) => v.run);
  const labels = distinctLabels(runs);
  const params = views.map(paramsOf);
  const paramKeys = [...new Set(params.flatMap((p) => Object.keys(p)))].sort();
  const metricKeys = [...new Set(views.flatMap((v) => Object.keys(v.metrics || {})))]
    .sort((a, b) => Number(isBookkeeping(a)) - Number(isBookkeeping(b)) || a.localeCompare(b));
  body.push(h("p", { class: "help" }, `${runs.length} runs. Rows where they differ are marked ≠.`));
  body.push(h("div", { class: "table-wrap" }, h("table", { class: "compare" },
    h("caption", {}, "Runs side by side: params, then final metric values (the point at the highest step)"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, ""),
      runs.map((r, i) => h("th", { scope: "col" }, h("a", { href: runHref(r.id) }, labels[i]))))),
    h("tbody", {},
      compareRow("status", runs.map((r) => badge(r.status)), { mark: false }),
      compareRow("kind", runs.map((r) => r.kind)),
      compareRow("owner", runs.map((r) => r.owner)),
      compareRow("dataset", views.map((v) => v.dataset || "—")),
      paramKeys.map((k) => compareRow(k, params.map((p) => show(p[k])), { group: "params" })),
      metricKeys.map((k) => compareRow(k, views.map((v) => show((v.metrics || {})[k])), { group: "metrics" })),
    ))));
  body.push(await metricsSection(runs.map((r, i) => ({ id: r.id, label: labels[i] }))));
  return h("div", {}, body);
}
