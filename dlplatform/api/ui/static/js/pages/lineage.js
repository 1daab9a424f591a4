// Lineage: an interactive layered graph around any entity; click a node to walk from it.

import * as api from "../api.js";
import { entityHref, unavailable } from "../common.js";
import { layeredGraph } from "../charts.js";
import { h, section, table } from "../dom.js";

const KINDS = ["dataset", "commit", "run", "model_version", "deployment", "prediction", "workflow_run"];
const MAX_NODES_PER_SIDE = 60;

/** The dataset a commit belongs to: its own dataset edge, or one of a commit in its chain. */
function datasetOfCommit(entity, edges) {
  const seen = new Set([entity]);
  const queue = [entity];
  while (queue.length) {
    const current = queue.shift();
    const owner = edges.find((e) => e.dst === current && e.src.startsWith("dataset:"));
    if (owner) return owner.src.slice("dataset:".length);
    for (const e of edges) {
      const other = e.src === current ? e.dst : e.dst === current ? e.src : null;
      if (other && other.startsWith("commit:") && !seen.has(other)) {
        seen.add(other);
        queue.push(other);
      }
    }
  }
  return null;
}

/** The UI page of an entity, when it has one. */
function pageOf(entity, edges) {
  const at = entity.indexOf(":");
  const kind = entity.slice(0, at);
  const id = entity.slice(at + 1);
  switch (kind) {
    case "dataset":
      return `#/datasets/${encodeURIComponent(id)}`;
    case "run":
      return `#/runs/${encodeURIComponent(id)}`;
    case "model_version":
      return `#/models/${encodeURIComponent(id.split("@")[0])}`;
    case "workflow_run":
      return `#/workflows/${encodeURIComponent(id)}`;
    case "commit": {
      const dataset = datasetOfCommit(entity, edges);
      return dataset ? `#/datasets/${encodeURIComponent(dataset)}?commit=${encodeURIComponent(id)}` : null;
    }
    default:
      return null;
  }
}

function pickerForm(kind, id) {
  const select = h("select", { id: "lineage-kind", name: "kind" }, KINDS.map((k) => h("option", { value: k, selected: k === kind }, k.replace("_", " "))));
  const input = h("input", { id: "lineage-id", name: "id", value: id || "", required: true, placeholder: "e.g. digits-mlp@3", autocomplete: "off" });
  const form = h("form", { class: "inline-form", role: "search", "aria-label": "Show lineage of an entity" },
    h("label", { for: "lineage-kind" }, "Kind"), select,
    h("label", { for: "lineage-id" }, "Id"), input,
    h("button", { type: "submit" }, "Show lineage"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!input.value.trim()) return;
    window.location.hash = `#/lineage/${encodeURIComponent(select.value)}/${encodeURIComponent(input.value.trim())}`;
  });
  return form;
}

async function startPage() {
  return h("div", {}, h("h1", {}, "Lineage"),
    h("p", {}, "Trace where anything came from and what came from it: dataset commit → training run → model version → deployment."),
    pickerForm("model_version", ""));
}

async function graphPage(params) {
  const { kind, id } = params;
  const entity = `${kind}:${id}`;
  const body = [h("h1", {}, `Lineage of ${kind.replace("_", " ")} ${id}`), pickerForm(kind, id)];
  if (!KINDS.includes(kind)) {
    body.push(h("p", { role: "alert", class: "form-error" }, `Unknown kind ${kind}: use one of ${KINDS.join(", ")}.`));
    return h("div", {}, body);
  }
  if (!api.has("/lineage/{kind}/{entity_id}") && !api.has("/lineage/{kind}/{id}")) {
    body.push(unavailable("Lineage", "/lineage/{kind}/{id}"));
    return h("div", {}, body);
  }
  const path = `/lineage/${api.seg(kind)}/${api.seg(id)}`;
  // one page per side (the gateway bounds it); X-Total-Count says how many there are in all
  const [upPage, downPage] = await Promise.all(["up", "down"].map((direction) => api.request(path, { query: { direction } })));
  const [up, down] = [upPage.data, downPage.data];
  const nodes = new Map([[entity, { id: entity, layer: 0, current: true }]]);
  const edges = [];
  const truncated = [];
  for (const [list, total, sign, name] of [[up, upPage.total, -1, "upstream"], [down, downPage.total, 1, "downstream"]]) {
    const count = total ?? list.length;
    if (count > MAX_NODES_PER_SIDE) truncated.push(`${count - MAX_NODES_PER_SIDE} more ${name}`);
    for (const n of list.slice(0, MAX_NODES_PER_SIDE)) {
      if (!nodes.has(n.entity)) nodes.set(n.entity, { id: n.entity, layer: sign * n.depth });
      edges.push(sign < 0 ? { src: n.entity, dst: n.via, relation: n.relation } : { src: n.via, dst: n.entity, relation: n.relation });
    }
  }
  const drawn = [...nodes.values()].map((n) => {
    const at = n.id.indexOf(":");
    return { ...n, kind: n.id.slice(0, at), label: n.id.slice(at + 1), href: entityHref(n.id) };
  });
  if (drawn.length === 1) {
    body.push(h("p", { class: "empty" }, `No lineage recorded for ${entity}. Check the kind and id.`));
    return h("div", {}, body);
  }
  body.push(section("Graph",
    h("p", { class: "help" }, "Upstream on the left, downstream on the right. Select a node (click, or Tab and Enter) to centre the graph on it."),
    layeredGraph({ nodes: drawn, edges, title: `lineage of ${entity}` }),
    truncated.length ? h("p", { class: "help" }, `Not drawn: ${truncated.join(", ")}.`) : null));
  const rows = [...up.map((n) => ({ ...n, dir: "upstream" })), ...down.map((n) => ({ ...n, dir: "downstream" }))];
  body.push(section("Entities", table(
    [
      { label: "Direction", render: (n) => n.dir },
      { label: "Entity", render: (n) => h("a", { href: entityHref(n.entity) }, n.entity) },
      { label: "Relation", render: (n) => n.relation },
      { label: "Via", render: (n) => n.via },
      { label: "Depth", numeric: true, render: (n) => String(n.depth) },
      { label: "Page", render: (n) => {
        const href = pageOf(n.entity, edges);
        return href ? h("a", { href, "aria-label": `open ${n.entity}` }, "open") : "—";
      } },
    ],
    rows.slice(0, 500),
  )));
  const own = pageOf(entity, edges);
  if (own) body.splice(1, 0, h("p", {}, h("a", { href: own }, `Open ${entity}`)));
  return h("div", {}, body);
}

export const routes = [
  { path: ["lineage"], section: "lineage", render: startPage },
  { path: ["lineage", ":kind", ":id"], section: "lineage", render: graphPage },
];
