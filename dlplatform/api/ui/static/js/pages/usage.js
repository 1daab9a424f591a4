// Resource usage: CPU/GPU-hours, wall time and peak memory by user, run, deployment or dataset
// over a window (GET /usage), as a table of totals and charts of the series (uPlot, via
// metric_charts.js: one series per key, x = the bucket number from the window's start).

import * as api from "../api.js";
import { unavailable } from "../common.js";
import { fmtBytes, fmtDate, fmtNumber, h, notice, table } from "../dom.js";
import { metricPanel } from "../metric_charts.js";

const BY = ["user", "run", "deployment", "dataset"];
const CHARTED = 8; // the keys with the most CPU-hours get a series each

function hours(seconds) {
  return fmtNumber(Math.round((seconds / 3600) * 1000) / 1000);
}

function keyCell(by, key) {
  return by === "run" ? h("a", { href: `#/runs/${encodeURIComponent(key)}` }, key) : key;
}

function filterForm(values) {
  const by = h("select", { id: "usage-by", name: "by" },
    BY.map((b) => h("option", { value: b, selected: values.by === b }, b)));
  const inputs = [["since", "Since (7d, 12h, ISO time)"], ["until", "Until (default now)"], ["bucket", "Bucket (1h)"]]
    .map(([key, label]) => [
      h("label", { for: `usage-${key}` }, label),
      h("input", { id: `usage-${key}`, name: key, value: values[key] || "", autocomplete: "off", size: 12 }),
    ]);
  const form = h("form", { class: "inline-form", role: "search", "aria-label": "Usage window" },
    h("label", { for: "usage-by" }, "By"), by, inputs, h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    for (const el of form.querySelectorAll("input, select")) if (el.value.trim()) q.set(el.name, el.value.trim());
    window.location.hash = `#/usage?${q}`;
  });
  return form;
}

async function usagePage(_params, query) {
  const body = [h("h1", {}, "Usage")];
  if (!api.has("/usage")) {
    body.push(unavailable("Usage", "/usage"));
    return h("div", {}, body);
  }
  const values = { by: query.get("by") || "user", since: query.get("since") || "7d" };
  for (const key of ["until", "bucket"]) if (query.get(key)) values[key] = query.get(key);
  body.push(filterForm(values));
  let report;
  try {
    report = await api.get("/usage", values);
  } catch (err) {
    if (!(err instanceof api.ApiError) || err.status >= 500 || err.status === 401) throw err;
    body.push(notice("error", "Cannot show this window", err.message));
    return h("div", {}, body);
  }
  const by = report.by;
  body.push(h("p", { class: "help" },
    `${fmtDate(report.since)} to ${fmtDate(report.until)}; CPUs and GPUs as allocated by the scheduler and Serve, `
    + "peak memory as sampled on the head node. Admins see everyone's usage, others their own."));
  body.push(table(
    [
      { label: by[0].toUpperCase() + by.slice(1), render: (t) => keyCell(by, t.key) },
      { label: "CPU-hours", render: (t) => hours(t.cpu_seconds) },
      { label: "GPU-hours", render: (t) => hours(t.gpu_seconds) },
      { label: "Wall hours", render: (t) => hours(t.wall_seconds) },
      { label: "Peak memory", render: (t) => (t.peak_mem_bytes === null ? "—" : fmtBytes(t.peak_mem_bytes)) },
      { label: by === "user" || by === "dataset" ? "Runs and deployments" : "Intervals", render: (t) => String(t.subjects) },
    ],
    report.totals,
    { caption: `Usage by ${by}, most CPU-hours first`, empty: "Nothing held resources in this window." },
  ));
  const charted = new Set(report.totals.slice(0, CHARTED).map((t) => t.key));
  const since = Date.parse(report.since);
  const runs = [...charted].map((key) => ({
    label: key,
    points: report.series.filter((p) => p.key === key).flatMap((p) => {
      const step = Math.round((Date.parse(p.start) - since) / 1000 / report.bucket_s);
      return [
        { key: "cpu_hours", value: p.cpu_seconds / 3600, step },
        { key: "gpu_hours", value: p.gpu_seconds / 3600, step },
      ];
    }),
  }));
  if (runs.length) {
    body.push(h("section", { class: "usage-series", "aria-label": "Usage over time" },
      h("h2", {}, "Over time"),
      h("p", { class: "help" }, `Hours held per bucket of ${hours(report.bucket_s)} h; step 0 starts at ${fmtDate(report.since)}.`),
      metricPanel(runs)));
  }
  return h("div", {}, body);
}

export const routes = [{ path: ["usage"], section: "usage", render: usagePage }];
