// The files of a run or of a model version: a list with sizes and hashes, a preview of the one
// picked (the first KiB of text, an image, the first rows of a CSV/TSV table) and a download
// checked against its SHA-256. Files are fetched with the token (an <img> or a plain link could
// not send it) and shown from a blob: URL.

import * as api from "../api.js";
import { partError, unavailable } from "../common.js";
import { fmtBytes, fmtDate, fmtNumber, h, section, short, table } from "../dom.js";
import { runHref } from "./run_parts.js";

const TEXT_PREVIEW_BYTES = 1024;
const TABLE_PREVIEW_BYTES = 64 * 1024;
const TABLE_PREVIEW_ROWS = 20;
const IMAGE_PREVIEW_MAX_BYTES = 8 * 1024 * 1024;
const TEXT = /\.(txt|log|md|rst|json|jsonl|ya?ml|toml|ini|cfg|conf|py|sh|r|sql|xml|html?|js|css|ipynb|out|err)$/i;
const IMAGE = /\.(png|jpe?g|gif|webp)$/i;
const TABLE = /\.(csv|tsv)$/i;

/** How to preview a file: by its media type when the list gives one, else by its name. */
function kindOf(item) {
  const type = String(item.media_type || "");
  const path = item.path;
  if (/^image\/(png|jpeg|gif|webp)$/.test(type) || IMAGE.test(path)) return "image";
  if (/^text\/(csv|tab-separated-values)$/.test(type) || TABLE.test(path)) return "table";
  if (type.startsWith("text/") || /[/+](json|xml|yaml|x-yaml|javascript)$/.test(type) || TEXT.test(path)) return "text";
  return /\.[A-Za-z0-9]{1,8}$/.test(path.split("/").pop()) ? "binary" : "text";
}

/** A link to the artifacts page of a run. */
export function artifactsLink(runId, count) {
  return h("p", {}, h("a", { href: `#/runs/${encodeURIComponent(runId)}/artifacts`, class: "button" },
    `Browse and preview ${count} artifact${count === 1 ? "" : "s"}`));
}

/** Rows of a CSV/TSV text (quotes and doubled quotes as RFC 4180), at most `limit` rows; a
 * last line cut by the byte limit is left out. */
export function parseDelimited(text, sep, limit, cut) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  let i = 0;
  for (; i < text.length && rows.length < limit; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 1;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === "") quoted = true;
    else if (c === sep) {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i += 1;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += c;
  }
  if (!cut && rows.length < limit && (field !== "" || row.length)) rows.push([...row, field]);
  return rows;
}

function sha256Hex(buffer) {
  return crypto.subtle.digest("SHA-256", buffer).then((d) => [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join(""));
}

function saveAs(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function downloadButton(item, fileUrl) {
  const status = h("span", { class: "action-status", role: "status" });
  const button = h("button", { type: "button", "data-path": item.path }, "Download");
  button.addEventListener("click", async () => {
    button.disabled = true;
    status.textContent = "Downloading…";
    try {
      const { blob, sha256 } = await api.download(fileUrl(item.path));
      const expected = item.sha256 || sha256;
      if (expected && globalThis.crypto && crypto.subtle) {
        const actual = await sha256Hex(await blob.arrayBuffer());
        if (actual !== expected) throw new Error(`its SHA-256 is ${short(actual, 12)}, not ${short(expected, 12)}: not saved`);
        status.textContent = "Saved (SHA-256 checked).";
      } else {
        status.textContent = "Saved.";
      }
      saveAs(blob, item.path.split("/").pop());
    } catch (err) {
      status.textContent = `Failed: ${err.message}`;
    } finally {
      button.disabled = false;
    }
  });
  return h("span", { class: "action" }, button, status);
}

async function preview(item, fileUrl) {
  const kind = kindOf(item);
  const part = h("section", { class: "panel artifact-preview", "data-kind": kind, "data-path": item.path },
    h("h2", {}, `Preview: ${item.path}`));
  try {
    if (kind === "image") {
      if (item.size_bytes > IMAGE_PREVIEW_MAX_BYTES) {
        part.append(h("p", { class: "empty" }, `Too large to preview (${fmtBytes(item.size_bytes)}); download it.`));
        return part;
      }
      const { blob } = await api.download(fileUrl(item.path));
      const url = URL.createObjectURL(blob);
      const img = h("img", { src: url, alt: `${item.path} (${fmtBytes(item.size_bytes)})`, class: "artifact-image" });
      img.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
      img.addEventListener("error", () => URL.revokeObjectURL(url), { once: true });
      part.append(img);
    } else if (kind === "table") {
      const { blob } = await api.download(fileUrl(item.path), { limitBytes: TABLE_PREVIEW_BYTES });
      const cut = item.size_bytes > TABLE_PREVIEW_BYTES;
      const rows = parseDelimited(await blob.text(), /\.tsv$/i.test(item.path) ? "\t" : ",", TABLE_PREVIEW_ROWS + 1, cut);
      const [header = [], ...data] = rows;
      part.append(
        h("p", { class: "help" }, `The first ${data.length} row${data.length === 1 ? "" : "s"}${cut ? ` (from the first ${fmtBytes(TABLE_PREVIEW_BYTES)})` : ""}.`),
        table(header.map((name, i) => ({ label: name, render: (r) => r[i] ?? "" })), data, { empty: "No rows." }),
      );
    } else if (kind === "text") {
      const { blob } = await api.download(fileUrl(item.path), { limitBytes: TEXT_PREVIEW_BYTES });
      const bytes = new Uint8Array(await blob.arrayBuffer());
      if (bytes.includes(0)) {
        part.append(h("p", { class: "empty" }, "A binary file: no preview."));
      } else {
        const cut = item.size_bytes > TEXT_PREVIEW_BYTES;
        part.append(
          h("p", { class: "help" }, cut ? `The first ${fmtNumber(TEXT_PREVIEW_BYTES)} bytes of ${fmtBytes(item.size_bytes)}.` : `${fmtBytes(item.size_bytes)}.`),
          h("pre", { class: "raw artifact-text", tabindex: "0" }, new TextDecoder("utf-8").decode(bytes)),
        );
      }
    } else {
      part.append(h("p", { class: "empty" }, "No preview for this type of file; download it."));
    }
  } catch (err) {
    part.append(partError("Preview", err));
  }
  return part;
}

async function artifactsPage({ title, back, template, base, fallback }, query) {
  const body = [h("h1", {}, title), back];
  let items;
  if (api.has(`${template}/artifacts`)) {
    const data = await api.get(`${base}/artifacts`);
    items = Array.isArray(data) ? data : data.items || data.artifacts || [];
  } else if (fallback) {
    items = await fallback();
  } else {
    body.push(unavailable("Artifacts", `${template}/artifacts`));
    return h("div", {}, body);
  }
  const canRead = api.has(`${template}/artifacts/{path}`);
  const fileUrl = (path) => `${base}/artifacts/${path.split("/").map(encodeURIComponent).join("/")}`;
  const hrefOf = (path) => `${window.location.hash.split("?")[0]}?path=${encodeURIComponent(path)}`;
  const selected = items.find((a) => a.path === query.get("path")) || (canRead ? items[0] : null);
  const total = items.reduce((n, a) => n + Number(a.size_bytes || 0), 0);
  body.push(section("Files",
    h("p", { class: "help" }, `${items.length} file${items.length === 1 ? "" : "s"}, ${fmtBytes(total)} in all. Select a path to preview it.`),
    table(
      [
        { label: "Path", render: (a) => (canRead ? h("a", { href: hrefOf(a.path), "aria-current": a === selected ? "true" : null }, a.path) : h("code", {}, a.path)) },
        { label: "Size", numeric: true, render: (a) => fmtBytes(a.size_bytes) },
        { label: "SHA-256", render: (a) => (a.sha256 ? h("code", { title: a.sha256 }, short(a.sha256, 12)) : "—") },
        { label: "Logged", render: (a) => fmtDate(a.created_at) },
        { label: "", render: (a) => (canRead ? downloadButton(a, fileUrl) : "") },
      ],
      items,
      { caption: "Artifacts", empty: "No artifacts." },
    )));
  if (!canRead) body.push(unavailable("Artifact contents", `${template}/artifacts/{path}`));
  else if (selected) body.push(await preview(selected, fileUrl));
  return h("div", {}, body);
}

function runArtifacts(params, query) {
  const id = params.id;
  const base = `/runs/${api.seg(id)}`;
  return artifactsPage({
    title: `Artifacts of run ${id}`,
    back: h("p", {}, h("a", { href: runHref(id) }, "← Back to the run")),
    template: "/runs/{id}",
    base,
    // the run's own record lists its files too (before a list route exists)
    fallback: api.has("/runs/{id}") ? async () => (await api.get(base)).artifacts || [] : null,
  }, query);
}

function versionArtifacts(params, query) {
  const { name, version } = params;
  return artifactsPage({
    title: `Artifacts of ${name} v${version}`,
    back: h("p", {}, h("a", { href: `#/models/${encodeURIComponent(name)}` }, `← Back to model ${name}`)),
    template: "/models/{name}/versions/{version}",
    base: `/models/${api.seg(name)}/versions/${api.seg(version)}`,
    fallback: null,
  }, query);
}

export const routes = [
  { path: ["runs", ":id", "artifacts"], section: "runs", render: runArtifacts },
  { path: ["models", ":name", "versions", ":version", "artifacts"], section: "models", render: versionArtifacts },
];
