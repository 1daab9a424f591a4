// Inline SVG charts: line charts for metrics and a layered graph for lineage. No dependencies.

import { fmtNumber, h, s, short } from "./dom.js";

export const PALETTE = ["#1d4ed8", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#374151"];

function niceTicks(min, max, count = 5) {
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    return niceTicks(min - pad, max + pad, count);
  }
  const span = max - min;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((v) => span / v <= count) || 10 * mag;
  const start = Math.floor(min / step) * step;
  const ticks = [];
  for (let v = start; v <= max + step * 0.5; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

/**
 * A line chart. series: [{name, points: [[x, y], ...]}]. Returns a <figure> with an SVG whose
 * lines are <path class="series-line"> elements, a legend, and an accessible summary.
 */
export function lineChart({ title, series, xLabel = "step", width = 560, height = 260 }) {
  const drawn = series.filter((ser) => ser.points.length > 0);
  const margin = { top: 12, right: 16, bottom: 36, left: 60 };
  const innerW = width - margin.left - margin.right;
  const innerH = height - margin.top - margin.bottom;
  const xs = drawn.flatMap((ser) => ser.points.map((p) => p[0]));
  const ys = drawn.flatMap((ser) => ser.points.map((p) => p[1])).filter(Number.isFinite);
  const figure = h("figure", { class: "chart" });
  if (title) figure.append(h("figcaption", {}, title));
  if (ys.length === 0) {
    figure.append(h("p", { class: "empty" }, "No values recorded."));
    return figure;
  }
  const xTicks = niceTicks(Math.min(...xs), Math.max(...xs));
  const yTicks = niceTicks(Math.min(...ys), Math.max(...ys));
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const sx = (x) => margin.left + ((x - x0) / (x1 - x0 || 1)) * innerW;
  const sy = (y) => margin.top + innerH - ((y - y0) / (y1 - y0 || 1)) * innerH;
  const summary = drawn
    .map((ser) => {
      const last = ser.points[ser.points.length - 1];
      return `${ser.name}: ${ser.points.length} points, last ${fmtNumber(last[1])} at ${xLabel} ${last[0]}`;
    })
    .join("; ");
  const svg = s(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${title || "chart"}. ${summary}`, class: "chart-svg" },
    s("title", {}, `${title || "chart"}. ${summary}`),
    // grid and axes
    yTicks.map((t) => [
      s("line", { x1: margin.left, x2: width - margin.right, y1: sy(t), y2: sy(t), class: "grid" }),
      s("text", { x: margin.left - 6, y: sy(t) + 4, class: "tick", "text-anchor": "end" }, fmtNumber(t)),
    ]),
    xTicks.map((t) => [
      s("line", { x1: sx(t), x2: sx(t), y1: margin.top + innerH, y2: margin.top + innerH + 4, class: "axis" }),
      s("text", { x: sx(t), y: margin.top + innerH + 16, class: "tick", "text-anchor": "middle" }, fmtNumber(t)),
    ]),
    s("line", { x1: margin.left, x2: width - margin.right, y1: margin.top + innerH, y2: margin.top + innerH, class: "axis" }),
    s("line", { x1: margin.left, x2: margin.left, y1: margin.top, y2: margin.top + innerH, class: "axis" }),
    s("text", { x: margin.left + innerW / 2, y: height - 4, class: "axis-label", "text-anchor": "middle" }, xLabel),
    drawn.map((ser, i) => {
      const color = PALETTE[i % PALETTE.length];
      const pts = ser.points.filter((p) => Number.isFinite(p[1]));
      const d = pts.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
      return s(
        "g",
        { class: "series" },
        s("path", { d, class: "series-line", stroke: color, fill: "none", "data-series": ser.name }),
        pts.length <= 60
          ? pts.map((p) => s("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: color },
              s("title", {}, `${ser.name} ${xLabel} ${p[0]}: ${fmtNumber(p[1])}`)))
          : null,
      );
    }),
  );
  figure.append(svg);
  if (drawn.length > 1 || (drawn[0] && drawn[0].name)) {
    figure.append(
      h("ul", { class: "legend" },
        drawn.map((ser, i) => h("li", {}, h("span", { class: `swatch swatch-${i % PALETTE.length}`, "aria-hidden": "true" }), ser.name))),
    );
  }
  return figure;
}

/**
 * A layered left-to-right graph. nodes: [{id, label, sub, layer, href, current}],
 * edges: [{src, dst, relation}]. Nodes are SVG links (focusable, Enter follows them).
 */
export function layeredGraph({ nodes, edges, title }) {
  const nodeW = 180;
  const nodeH = 48;
  const colGap = 70;
  const rowGap = 18;
  const pad = 16;
  const layers = [...new Set(nodes.map((n) => n.layer))].sort((a, b) => a - b);
  const byLayer = new Map(layers.map((l) => [l, nodes.filter((n) => n.layer === l)]));
  // one barycentre pass per direction keeps edges from crossing in the common chains
  const order = new Map();
  const neighbours = new Map(nodes.map((n) => [n.id, []]));
  for (const e of edges) {
    if (neighbours.has(e.src) && neighbours.has(e.dst)) {
      neighbours.get(e.src).push(e.dst);
      neighbours.get(e.dst).push(e.src);
    }
  }
  for (const l of layers) {
    const list = byLayer.get(l);
    list.sort((a, b) => a.id.localeCompare(b.id));
    const score = (n) => {
      const placed = neighbours.get(n.id).filter((m) => order.has(m)).map((m) => order.get(m));
      return placed.length ? placed.reduce((x, y) => x + y, 0) / placed.length : Number.MAX_SAFE_INTEGER;
    };
    list.sort((a, b) => score(a) - score(b));
    list.forEach((n, i) => order.set(n.id, i));
  }
  const tallest = Math.max(...layers.map((l) => byLayer.get(l).length));
  const width = pad * 2 + layers.length * nodeW + (layers.length - 1) * colGap;
  const height = pad * 2 + tallest * nodeH + (tallest - 1) * rowGap;
  const pos = new Map();
  layers.forEach((l, col) => {
    const list = byLayer.get(l);
    const offset = ((tallest - list.length) * (nodeH + rowGap)) / 2;
    list.forEach((n, row) => {
      pos.set(n.id, { x: pad + col * (nodeW + colGap), y: pad + offset + row * (nodeH + rowGap) });
    });
  });
  const svg = s(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, width, height, role: "group", "aria-label": title || "lineage graph", class: "graph-svg" },
    s("defs", {},
      s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow-head" }))),
    edges
      .filter((e) => pos.has(e.src) && pos.has(e.dst))
      .map((e) => {
        const a = pos.get(e.src);
        const b = pos.get(e.dst);
        const [ax, ay, bx, by] = [a.x + nodeW, a.y + nodeH / 2, b.x, b.y + nodeH / 2];
        const mid = (ax + bx) / 2;
        return s("path", {
          d: `M${ax},${ay} C${mid},${ay} ${mid},${by} ${bx - 2},${by}`,
          class: "edge", "marker-end": "url(#arrow)", "data-src": e.src, "data-dst": e.dst,
        }, s("title", {}, `${e.src} ${e.relation} → ${e.dst}`));
      }),
    nodes.map((n) => {
      const p = pos.get(n.id);
      return s(
        "a",
        { href: n.href, class: `node node-${n.kind}${n.current ? " node-current" : ""}`, "data-entity": n.id, "aria-label": `${n.kind} ${n.label}${n.current ? " (current)" : ""}` },
        s("rect", { x: p.x, y: p.y, width: nodeW, height: nodeH, rx: 6 }),
        s("text", { x: p.x + 10, y: p.y + 18, class: "node-kind" }, n.kind.replace("_", " ")),
        s("text", { x: p.x + 10, y: p.y + 36, class: "node-label" }, short(n.label, 22)),
        s("title", {}, n.id),
      );
    }),
  );
  return h("div", { class: "graph-scroll", tabindex: "-1" }, svg);
}
