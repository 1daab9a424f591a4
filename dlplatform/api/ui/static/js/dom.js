// DOM building with text nodes only (never HTML strings): data cannot become markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      el.setAttribute("class", value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
}

/** h("a", {href: "#/x"}, "text", child...) — an HTML element. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** s("path", {d: "..."}) — an SVG element. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function fmtDate(value) {
  if (!value) return "—";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

export function fmtNumber(value) {
  if (value === null || value === undefined || value === "") return "—";
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  if (Number.isInteger(n)) return n.toLocaleString("en-US");
  const abs = Math.abs(n);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return n.toExponential(3).replace(/\.?0+e/, "e");
  if (abs >= 999.5) return n.toLocaleString("en-US", { maximumFractionDigits: 1 });
  const text = n.toPrecision(4); // below 1000: four significant digits, trailing zeros dropped
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function parseJSON(text, fallback) {
  if (text === null || text === undefined || text === "") return fallback;
  if (typeof text !== "string") return text;
  try {
    return JSON.parse(text);
  } catch {
    return fallback;
  }
}

export function short(text, n = 12) {
  const value = String(text ?? "");
  return value.length > n ? `${value.slice(0, n)}…` : value;
}

/** A status badge; the class is picked from a fixed list, never from data. */
export function badge(status) {
  const value = String(status ?? "unknown");
  const known = {
    QUEUED: "queued", RUNNING: "running", SUCCEEDED: "ok", FAILED: "bad", CANCELLED: "muted",
    STOPPED: "muted", ok: "ok", denied: "bad", error: "bad", critical: "bad", warning: "warn",
    info: "queued", RUNNING_: "running", HEALTHY: "ok", DEPLOYING: "running", UNHEALTHY: "bad",
    PROMOTED: "ok", ROLLED_BACK: "bad", ABORTED: "muted", pass: "ok", fail: "bad",
  };
  return h("span", { class: `badge badge-${known[value] || "muted"}` }, value);
}

/** A table: columns [{label, render(row) -> node|string, numeric?}], rows. */
export function table(columns, rows, { caption, empty = "Nothing here yet." } = {}) {
  if (!rows || rows.length === 0) return h("p", { class: "empty" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.numeric ? "num" : null }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h("tr", {}, columns.map((c) => h("td", { class: c.numeric ? "num" : null }, c.render(row)))),
        ),
      ),
    ),
  );
}

/** A definition list from [[term, value], ...]. */
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(Boolean).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value ?? "—")]),
  );
}

export function section(title, ...children) {
  return h("section", { class: "panel" }, h("h2", {}, title), ...children);
}

export function notice(kind, title, message) {
  return h(
    "div",
    { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "note" },
    h("strong", {}, title),
    message ? h("p", {}, message) : null,
  );
}

export function announce(text) {
  const live = document.getElementById("live");
  if (live) live.textContent = text;
}
