// Metric charts on uPlot (vendored in vendor/uplot, loaded by index.html as the global uPlot).
//
// One chart per metric group: keys that differ only by a val_/train_/test_ prefix share a chart
// (loss with val_loss). Bookkeeping keys (epoch, restarts, samples, step/*, timings) are hidden
// until asked for. The x axis is the step, the epoch or the wall time since the run's first point;
// the y axis is linear or logarithmic; an EMA smooths noisy curves. The legend reads the values
// under the mouse; dragging across a chart zooms into that range, a double-click zooms out.
// Each chart's figure carries data-x-min / data-x-max (the shown x range) and data-x-ticks /
// data-y-ticks (the ticks drawn) for tests and tools.

import { PALETTE } from "./charts.js";
import { fmtNumber, h } from "./dom.js";

const SPLIT = /^(val|valid|validation|train|training|test|eval)_(.+)$/;
const BOOKKEEPING = new Set([
  "epoch", "restarts", "samples", "step", "global_step", "iteration", "training_iteration",
  "time", "timestamp", "epoch_time_s", "data_wait_s", "throughput_samples_per_s",
]);
const HEIGHT = 220;
const INTEGER_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 2.5e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 1e7, 1e8, 1e9];
const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];
const X_MODES = { step: "step", epoch: "epoch", time: "wall time" };
const DASHES = [undefined, [6, 4], [2, 3], [8, 3, 2, 3]];

/** The chart a key belongs to: the key without a val_/train_/test_ prefix. */
export function groupOf(key) {
  const match = SPLIT.exec(key);
  return match ? match[2] : key;
}

/** Keys that count the work rather than measure the model; hidden unless asked for. */
export function isBookkeeping(key) {
  return BOOKKEEPING.has(key) || key.startsWith("step/") || key.startsWith("system/")
    || key.endsWith("_time_s") || key.endsWith("_per_s");
}

/** Exponential moving average, debiased as TensorBoard's (so the first points are not pulled
 * towards 0). Missing values stay missing. */
export function smooth(values, weight) {
  if (!(weight > 0)) return values;
  let last = 0;
  let count = 0;
  return values.map((v) => {
    if (v === null || v === undefined) return v;
    last = last * weight + (1 - weight) * v;
    count += 1;
    return last / (1 - weight ** count);
  });
}

// --- a run's points, by key ------------------------------------------------------------------

/** A sorted lookup step -> value, answering the last value at or before a step. */
function stepTable(points) {
  if (!points || points.length === 0) return null;
  const steps = points.map((p) => p.step);
  const values = points.map((p) => p.value);
  return (step) => {
    let lo = 0;
    let hi = steps.length - 1;
    if (step < steps[0]) return null;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (steps[mid] <= step) lo = mid;
      else hi = mid - 1;
    }
    return Number.isFinite(values[lo]) ? values[lo] : null;
  };
}

/** {label, points: [{key, value, step, timestamp}]} -> the run's keys, epochs and start time.
 * NaN and infinities arrive as the strings "NaN", "Infinity" (JSON has no such numbers). */
function prepare(run) {
  const keys = new Map();
  let t0 = Infinity;
  for (const p of run.points || []) {
    const key = p.key ?? p.name;
    if (!key) continue;
    if (!keys.has(key)) keys.set(key, []);
    const t = Number(p.timestamp ?? 0);
    if (t > 0 && t < t0) t0 = t;
    keys.get(key).push({ step: Number(p.step ?? 0), value: Number(p.value), t });
  }
  for (const list of keys.values()) list.sort((a, b) => a.step - b.step || a.t - b.t);
  return {
    ...run, keys, t0,
    epochOf: stepTable(keys.get("epoch")),
    stepEpochOf: stepTable(keys.get("step/epoch")),
  };
}

function xOf(run, key, point, mode) {
  if (mode === "time") return point.t > 0 ? point.t - run.t0 : null;
  if (mode === "epoch") {
    const table = key.startsWith("step/") ? run.stepEpochOf : run.epochOf;
    return table ? table(point.step) : null;
  }
  return point.step;
}

/** One key of one run: data [xs, ys] sorted by x, one value per x (the last); NaN and
 * infinities are gaps, kept by x in `odd` for the readout; values <= 0 dropped on a log scale;
 * smoothed. */
function seriesData(run, key, { mode, log, smoothing }) {
  const rows = [];
  for (const p of run.keys.get(key) || []) {
    const x = xOf(run, key, p, mode);
    if (x === null || !Number.isFinite(x)) continue;
    let y = Number.isFinite(p.value) ? p.value : null;
    if (log && y !== null && y <= 0) y = undefined;
    rows.push([x, y, p.value]);
  }
  rows.sort((a, b) => a[0] - b[0]);
  const xs = [];
  const ys = [];
  const odd = new Map();
  for (const [x, y, raw] of rows) {
    if (xs.length && xs[xs.length - 1] === x) ys[ys.length - 1] = y;
    else {
      xs.push(x);
      ys.push(y);
    }
    if (y === null) odd.set(x, String(raw));
    else odd.delete(x);
  }
  return { data: [xs, smooth(ys, smoothing)], odd };
}

// --- one chart ---------------------------------------------------------------------------------

function fmtDuration(seconds) {
  const s = Math.round(seconds);
  if (Math.abs(s) < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

function yRange(_u, min, max) {
  if (min === null || max === null || !Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (min === max) {
    // a constant series: zero gets 0..1, anything else ±10 % around it
    if (min === 0) return [0, 1];
    const pad = Math.abs(min) * 0.1;
    return [min - pad, max + pad];
  }
  return window.uPlot.rangeNum(min, max, 0.05, true);
}

function yLogRange(_u, min, max) {
  if (!(min > 0 && max > 0 && Number.isFinite(min) && Number.isFinite(max))) return [1, 10];
  const [lo, hi] = window.uPlot.rangeLog(min, max, 10, true);
  return hi > lo ? [lo, hi] : [lo / 10, hi * 10]; // one value: the decades around it
}

function xRange(_u, min, max) {
  if (min === null || max === null) return [0, 1];
  return min === max ? [min - 1, max + 1] : [min, max];
}

function axisSize(_u, values) {
  const longest = Math.max(3, ...(values || []).map((v) => String(v ?? "").length));
  return 16 + longest * 7;
}

function showLast(u) {
  const n = u.data[0].length;
  if (n > 0) u.setLegend({ idx: n - 1 });
}

/** A chart of `series` ([{label, color, dash, data: [xs, ys], odd: Map x -> "NaN"}]) as a
 * <figure>. */
function chartFigure({ title, group, series, mode, log, charts }) {
  const uPlot = window.uPlot;
  const figure = h("figure", { class: "chart metric-chart", "data-group": group, "data-series": series.length, "data-x-mode": mode },
    h("figcaption", {}, title));
  const fmtX = mode === "time" ? fmtDuration : (v) => fmtNumber(v);
  // the ticks drawn (on the canvas) are also kept on the figure: data-x-ticks, data-y-ticks
  // (a log axis leaves minor ticks unlabelled: null)
  const ticks = (axis, splits, fmt) => {
    figure.dataset[`${axis}Ticks`] = splits.filter((v) => v !== null && v !== undefined).join(",");
    return splits.map((v) => (v === null || v === undefined ? null : fmt(v)));
  };
  const data = uPlot.join(series.map((s) => s.data));
  const points = series.reduce((n, s) => n + s.data[1].filter((v) => v !== null && v !== undefined).length, 0);
  figure.append(h("p", { class: "visually-hidden" }, `${title}: ${series.length} series, ${points} points, x axis ${X_MODES[mode]}.`));
  const opts = {
    width: 480,
    height: HEIGHT,
    scales: {
      x: { time: false, range: xRange },
      y: log ? { distr: 3, log: 10, range: yLogRange } : { range: yRange },
    },
    axes: [
      { label: X_MODES[mode], labelSize: 18, incrs: mode === "time" ? TIME_INCRS : INTEGER_INCRS,
        values: (_u, splits) => ticks("x", splits, fmtX), stroke: "#374151", grid: { stroke: "#e5e7eb" } },
      { values: (_u, splits) => ticks("y", splits, fmtNumber), size: axisSize, stroke: "#374151",
        grid: { stroke: "#e5e7eb" } },
    ],
    series: [
      { label: X_MODES[mode], value: (_u, v) => (v === null || v === undefined ? "—" : fmtX(v)) },
      ...series.map((s) => ({
        label: s.label, stroke: s.color, width: 2, dash: s.dash,
        value: (u, v, _si, idx) => (v === null || v === undefined ? s.odd.get(u.data[0][idx]) ?? "—" : fmtNumber(v)),
        points: { size: 6 },
      })),
    ],
    cursor: { drag: { x: true, y: false, setScale: true } },
    legend: { live: true },
    hooks: {
      // away from the plot, the legend shows the last values
      ready: [showLast],
      setCursor: [(u) => { if (u.cursor.idx === null || u.cursor.idx === undefined) showLast(u); }],
      setScale: [(u, key) => {
        if (key !== "x") return;
        figure.dataset.xMin = String(u.scales.x.min);
        figure.dataset.xMax = String(u.scales.x.max);
      }],
    },
  };
  const plot = new uPlot(opts, data, figure);
  let alive = true;
  const dispose = () => {
    if (!alive) return;
    alive = false;
    observer.disconnect();
    plot.destroy();
  };
  charts.push(dispose);
  // Fit the plot to its cell; once the figure has left the page, free the plot (uPlot listens on
  // the window while it lives). Chrome reports a figure not yet on the page too (the page is
  // built before it is shown): that is no leaving.
  let shown = false;
  const observer = new ResizeObserver(() => {
    if (!figure.isConnected) {
      if (shown) dispose();
      return;
    }
    shown = true;
    const width = Math.floor(figure.clientWidth - 16);
    if (width > 0 && width !== plot.width) plot.setSize({ width, height: HEIGHT });
  });
  observer.observe(figure);
  return figure;
}

// --- a panel: controls and a grid of charts -----------------------------------------------------

// what the user chose stays for the session's next charts (a page that renders again keeps it)
const prefs = { x: null, log: false, smoothing: 0, bookkeeping: false };

/**
 * Metric charts of one run or several (compare). runs: [{label, points}] with MetricPoints.
 * Returns an element with the controls and one chart per metric group; with several runs, each
 * chart has one series per run and key (the run's colour; val_ keys dashed).
 */
export function metricPanel(runs) {
  const prepared = runs.map(prepare);
  const compare = prepared.length > 1;
  const allKeys = [...new Set(prepared.flatMap((r) => [...r.keys.keys()]))];
  const hidden = allKeys.filter(isBookkeeping);
  const hasEpoch = prepared.some((r) => r.epochOf || r.stepEpochOf);
  const hasTime = prepared.some((r) => Number.isFinite(r.t0));
  const root = h("div", { class: "metric-panel" });
  if (allKeys.length === 0) {
    root.append(h("p", { class: "empty" }, "No metrics logged yet."));
    return root;
  }
  const state = { ...prefs };
  if (!state.x || (state.x === "epoch" && !hasEpoch) || (state.x === "time" && !hasTime)) {
    state.x = hasEpoch && prepared.every((r) => r.epochOf || r.stepEpochOf) ? "epoch" : "step";
  }
  const xSelect = h("select", { id: "chart-x", name: "x" },
    Object.entries(X_MODES).map(([value, label]) => h("option", {
      value, selected: value === state.x,
      disabled: (value === "epoch" && !hasEpoch) || (value === "time" && !hasTime),
    }, label)));
  const logBox = h("input", { type: "checkbox", id: "chart-log", checked: state.log });
  const smoothing = h("input", { type: "range", id: "chart-smoothing", min: 0, max: 0.99, step: 0.01, value: state.smoothing });
  const smoothingOut = h("output", { for: "chart-smoothing", id: "chart-smoothing-value" }, String(state.smoothing));
  const bookBox = h("input", { type: "checkbox", id: "chart-bookkeeping", checked: state.bookkeeping, disabled: hidden.length === 0 });
  const note = h("p", { class: "help chart-note" });
  const grid = h("div", { class: "chart-grid" });
  root.append(
    h("div", { class: "chart-controls", role: "group", "aria-label": "Chart options" },
      h("label", { for: "chart-x" }, "X axis "), xSelect,
      h("label", { class: "check" }, logBox, " Log scale"),
      h("label", { for: "chart-smoothing" }, "Smoothing "), smoothing, smoothingOut,
      h("label", { class: "check" }, bookBox, ` Show bookkeeping metrics (${hidden.length})`)),
    note, grid,
  );
  let charts = [];
  const draw = () => {
    for (const dispose of charts) dispose();
    charts = [];
    grid.replaceChildren();
    Object.assign(prefs, state);
    const keys = allKeys.filter((k) => state.bookkeeping || !isBookkeeping(k));
    const groups = new Map();
    for (const key of keys.sort()) {
      const g = groupOf(key);
      if (!groups.has(g)) groups.set(g, []);
      groups.get(g).push(key);
    }
    const order = [...groups.keys()].sort((a, b) =>
      Number(groups.get(a).every(isBookkeeping)) - Number(groups.get(b).every(isBookkeeping)) || a.localeCompare(b));
    let dropped = 0;
    for (const g of order) {
      const members = groups.get(g).sort((a, b) => Number(a !== g) - Number(b !== g) || a.localeCompare(b));
      const series = [];
      prepared.forEach((run, ri) => {
        members.forEach((key, ki) => {
          if (!run.keys.has(key)) return;
          const { data, odd } = seriesData(run, key, { mode: state.x, log: state.log, smoothing: state.smoothing });
          if (state.log) dropped += data[1].filter((v) => v === undefined).length;
          series.push({
            odd,
            label: compare ? (members.length > 1 ? `${run.label} ${key}` : run.label) : key,
            color: PALETTE[(compare ? ri : ki) % PALETTE.length],
            dash: DASHES[ki % DASHES.length],
            data,
          });
        });
      });
      const drawn = series.filter((s) => s.data[0].length > 0);
      if (drawn.length === 0) continue;
      grid.append(chartFigure({ title: members.join(" · "), group: g, series: drawn, mode: state.x, log: state.log, charts }));
    }
    if (grid.childElementCount === 0) grid.append(h("p", { class: "empty" }, `No points on the ${X_MODES[state.x]} axis.`));
    note.textContent = [
      hidden.length && !state.bookkeeping ? `${hidden.length} bookkeeping metric(s) hidden.` : "",
      dropped ? `${dropped} value(s) ≤ 0 not drawn on the log scale.` : "",
      "Drag across a chart to zoom in, double-click to zoom out; the legend shows the values under the mouse.",
    ].filter(Boolean).join(" ");
  };
  xSelect.addEventListener("change", () => { state.x = xSelect.value; draw(); });
  logBox.addEventListener("change", () => { state.log = logBox.checked; draw(); });
  bookBox.addEventListener("change", () => { state.bookkeeping = bookBox.checked; draw(); });
  smoothing.addEventListener("input", () => {
    state.smoothing = Number(smoothing.value);
    smoothingOut.textContent = String(state.smoothing);
    draw();
  });
  draw();
  return root;
}
