// Inline SVG charts: a layered graph for lineage and parallel coordinates for tuning trials.
// Metric line charts are uPlot's: metric_charts.js.

import { fmtNumber, h, s, short } from "./dom.js";

export const PALETTE = ["#1d4ed8", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#374151"];

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

/** Where a value sits on one axis of the parallel coordinates, from 0 (bottom) to 1 (top). */
function axisScale(dim, values) {
  if (dim.kind === "category") {
    const cats = [...new Set(values.filter((v) => v !== null && v !== undefined).map(String))].sort();
    const at = (v) => (cats.length < 2 ? 0.5 : cats.indexOf(String(v)) / (cats.length - 1));
    return { at, ticks: cats.map((c) => [at(c), c]) };
  }
  const log = dim.kind === "log";
  const f = (v) => (log ? Math.log10(v) : v);
  const nums = values.map(Number).filter((v) => Number.isFinite(v) && (!log || v > 0));
  let lo = nums.length ? Math.min(...nums.map(f)) : 0;
  let hi = nums.length ? Math.max(...nums.map(f)) : 1;
  if (lo === hi) [lo, hi] = [lo - 1, hi + 1];
  const raw = (v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || (log && n <= 0)) return null;
    return (f(n) - lo) / (hi - lo);
  };
  const at = dim.invert ? (v) => { const t = raw(v); return t === null ? null : 1 - t; } : raw;
  const back = (t) => (log ? 10 ** (lo + t * (hi - lo)) : lo + t * (hi - lo));
  const ticks = [0, 0.5, 1].map((t) => [dim.invert ? 1 - t : t, fmtNumber(Number(back(t).toPrecision(3)))]);
  return { at, ticks };
}

/**
 * Parallel coordinates: one vertical axis per dimension (a parameter, then the objective), one
 * line per item (a trial). dims: [{key, label, kind: "linear"|"log"|"category", invert}];
 * items: [{id, values: {key: value}, rank: 0 (best) .. 1, dashed, title}]; an item without a
 * rank is drawn grey and dotted. Lines are <path class="pc-line" data-item=id>.
 */
export function parallelCoordinates({ title, dims, items }) {
  const gap = 150;
  const pad = { left: 80, right: 80, top: 46, bottom: 24 };
  const innerH = 220;
  const width = pad.left + pad.right + Math.max(1, dims.length - 1) * gap;
  const height = pad.top + innerH + pad.bottom;
  const scales = dims.map((d) => axisScale(d, items.map((it) => it.values[d.key])));
  const xOf = (i) => pad.left + i * gap;
  const yOf = (t) => pad.top + (1 - t) * innerH;
  const colour = (rank) => `hsl(${Math.round(222 - 190 * rank)}, 75%, ${Math.round(32 + 18 * rank)}%)`;
  const ordered = items.slice().sort((a, b) => (b.rank ?? 2) - (a.rank ?? 2)); // best drawn last
  const svg = s(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "pc-svg", "aria-label": title },
    s("title", {}, title),
    ordered.map((it) => {
      let d = "";
      let pen = false;
      dims.forEach((dim, i) => {
        const t = scales[i].at(it.values[dim.key]);
        if (t === null || t === undefined || Number.isNaN(t)) {
          pen = false;
          return;
        }
        d += `${pen ? "L" : "M"}${xOf(i).toFixed(1)},${yOf(t).toFixed(1)} `;
        pen = true;
      });
      const ranked = it.rank !== null && it.rank !== undefined;
      return s("path", {
        d: d.trim(), class: `pc-line${it.dashed ? " pc-dashed" : ""}${ranked ? "" : " pc-unranked"}`,
        stroke: ranked ? colour(it.rank) : "#9ca3af", fill: "none", "data-item": it.id,
      }, s("title", {}, it.title || it.id));
    }),
    dims.map((dim, i) => s(
      "g",
      { class: "pc-axis", "data-key": dim.key },
      s("line", { x1: xOf(i), x2: xOf(i), y1: pad.top, y2: pad.top + innerH, class: "axis" }),
      s("text", { x: xOf(i), y: pad.top - 26, class: "pc-label", "text-anchor": "middle" }, short(dim.label, 22)),
      dim.note ? s("text", { x: xOf(i), y: pad.top - 12, class: "tick", "text-anchor": "middle" }, dim.note) : null,
      scales[i].ticks.map(([t, label]) => [
        s("line", { x1: xOf(i) - 4, x2: xOf(i), y1: yOf(t), y2: yOf(t), class: "axis" }),
        s("text", { x: xOf(i) - 7, y: yOf(t) + 4, class: "tick", "text-anchor": "end" }, short(label, 12)),
      ]),
    )),
  );
  return h("div", { class: "graph-scroll pc-scroll", tabindex: "0", "aria-label": title }, svg);
}
