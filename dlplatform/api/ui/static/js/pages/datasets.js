// Datasets: list, commits timeline, schema, column statistics, sample rows, rollback.

import * as api from "../api.js";
import { actionButton, entityHref, fetchPage, pageOf, pager, partError, unavailable } from "../common.js";
import { facts, fmtBytes, fmtDate, fmtNumber, h, parseJSON, section, short, table } from "../dom.js";

const WRITERS = new Set(["admin", "data-engineer"]);

async function listPage(_params, query) {
  const page = pageOf(query);
  const body = [h("h1", {}, "Datasets")];
  if (!api.has("/datasets")) {
    body.push(unavailable("Datasets", "/datasets"));
    return h("div", {}, body);
  }
  const result = await fetchPage("/datasets", query, page);
  body.push(
    table(
      [
        { label: "Name", render: (d) => h("a", { href: `#/datasets/${encodeURIComponent(d.name)}` }, d.name) },
        { label: "Type", render: (d) => d.type || "—" },
        { label: "Description", render: (d) => d.description || "" },
        { label: "Head commit", render: (d) => (d.head ? h("code", {}, short(d.head, 14)) : "—") },
        { label: "Created", render: (d) => fmtDate(d.created_at) },
        { label: "Owner", render: (d) => d.created_by || "—" },
      ],
      result.rows,
      { caption: "Datasets you may see", empty: "No datasets yet. Create one with dlp datasets create." },
    ),
    pager(result, (p) => `#/datasets?page=${p}`),
  );
  return h("div", {}, body);
}

/** Arrow schema as [{name, type, nullable}] from the serialized forms data/ may use. */
function schemaFields(text) {
  const parsed = parseJSON(text, null);
  if (Array.isArray(parsed)) return parsed.map((f) => (typeof f === "object" ? f : { name: String(f) }));
  if (parsed && Array.isArray(parsed.fields)) return parsed.fields;
  if (parsed && typeof parsed === "object") {
    return Object.entries(parsed).map(([name, type]) => ({ name, type: typeof type === "string" ? type : JSON.stringify(type) }));
  }
  if (typeof text === "string" && text.includes(":")) {
    // pyarrow's Schema.to_string(): "name: type" per line
    return text.split("\n").filter((l) => /^\S[^:]*: /.test(l) && !l.startsWith("-- "))
      .map((l) => ({ name: l.slice(0, l.indexOf(":")), type: l.slice(l.indexOf(":") + 2) }));
  }
  return [];
}

function schemaView(commit) {
  const fields = schemaFields(commit.arrow_schema ?? commit.schema);
  if (fields.length === 0) {
    return commit.arrow_schema ? h("pre", { class: "raw" }, String(commit.arrow_schema)) : h("p", { class: "empty" }, "No schema recorded.");
  }
  return table(
    [
      { label: "Column", render: (f) => h("code", {}, f.name) },
      { label: "Type", render: (f) => String(f.type ?? f.data_type ?? "—") },
      { label: "Nullable", render: (f) => (f.nullable === undefined ? "—" : f.nullable ? "yes" : "no") },
    ],
    fields,
  );
}

/** Column statistics: {"columns": {col: {stat: v}}} or {col: {stat: v}} or [{column, ...}]. */
function statsView(commit) {
  let stats = parseJSON(commit.stats_json ?? commit.stats, null);
  if (!stats) return h("p", { class: "empty" }, "No column statistics computed for this commit.");
  if (stats.values_hidden) {
    // the server left out min, max, mean and the most frequent values: they are data
    const { values_hidden: _, ...counts } = stats;
    return h("div", {},
      h("p", { class: "help" }, "Values (min, max, mean, most frequent) are shown to those who may read the data (dataset.read)."),
      statsView({ stats_json: JSON.stringify(counts) }));
  }
  if (stats.columns && typeof stats.columns === "object") stats = stats.columns;
  let rows;
  if (Array.isArray(stats)) {
    rows = stats.map((r) => ({ column: r.column ?? r.name, ...r }));
  } else {
    rows = Object.entries(stats)
      .filter(([, v]) => v && typeof v === "object" && !Array.isArray(v))
      .map(([column, v]) => ({ column, ...v }));
  }
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))]
    .filter((k) => !["column", "name"].includes(k))
    .filter((k) => rows.some((r) => r[k] === null || typeof r[k] !== "object"));
  if (rows.length === 0) return h("pre", { class: "raw" }, JSON.stringify(stats, null, 2));
  const hasTop = rows.some((r) => Array.isArray(r.top) && r.top.length);
  return table(
    [{ label: "Column", render: (r) => h("code", {}, String(r.column)) },
      ...keys.map((k) => ({ label: k.replace(/_/g, " "), numeric: k !== "type", render: (r) => (typeof r[k] === "number" ? fmtNumber(r[k]) : String(r[k] ?? "—")) })),
      ...(hasTop ? [{ label: "most frequent", render: (r) => (Array.isArray(r.top) ? r.top.map((t) => `${short(t.value, 20)} (${fmtNumber(t.count)})`).join(", ") : "") }] : [])],
    rows,
  );
}

function sampleView(data) {
  let rows = data;
  let columns = null;
  if (data && !Array.isArray(data)) {
    columns = data.columns || null;
    rows = data.rows || data.records || data.data || [];
  }
  if (!Array.isArray(rows) || rows.length === 0) return h("p", { class: "empty" }, "No rows.");
  if (Array.isArray(rows[0])) {
    columns = columns || rows[0].map((_, i) => `col${i}`);
    rows = rows.map((r) => Object.fromEntries(columns.map((c, i) => [c, r[i]])));
  }
  columns = columns || [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const show = (v) => (v === null || v === undefined ? "null" : typeof v === "object" ? JSON.stringify(v) : typeof v === "number" ? fmtNumber(v) : String(v));
  return table(columns.map((c) => ({ label: String(c), render: (r) => short(show(r[c]), 60) })), rows);
}

function timeline(name, commits, selected, head) {
  return h(
    "ol",
    { class: "timeline", "aria-label": "Commits, newest first" },
    commits.map((c) =>
      h(
        "li",
        { class: c.id === selected ? "current" : null },
        h("a", { href: `#/datasets/${encodeURIComponent(name)}?commit=${encodeURIComponent(c.id)}`, "aria-current": c.id === selected ? "true" : null },
          h("code", {}, short(c.id, 14))),
        c.id === head ? h("span", { class: "badge badge-ok" }, "head") : null,
        " ",
        h("span", { class: `badge badge-${c.mode === "overwrite" ? "warn" : "queued"}` }, c.mode || "commit"),
        h("div", { class: "timeline-msg" }, c.message || "(no message)"),
        h("div", { class: "meta" }, `${fmtDate(c.created_at)} · ${c.author || "?"} · ${fmtNumber(c.row_count)} rows · ${fmtBytes(c.size_bytes)}`),
      ),
    ),
  );
}

async function detailPage(params, query, { session, rerender }) {
  const name = params.name;
  if (!api.has("/datasets/{name}")) {
    return h("div", {}, h("h1", {}, name), unavailable("Dataset details", "/datasets/{name}"));
  }
  const dataset = await api.get(`/datasets/${api.seg(name)}`);
  const ds = dataset.dataset || dataset;
  const body = [h("h1", {}, ds.name || name), ds.description ? h("p", { class: "lead" }, ds.description) : null];
  body.push(facts([
    ["Type", ds.type], ["Head commit", ds.head ? h("code", {}, ds.head) : "—"], ["Created", fmtDate(ds.created_at)],
    ["Created by", ds.created_by], ["Groups", (ds.groups || []).join(", ") || "everyone"],
    ["Tags", (ds.tags || []).join(", ") || "—"],
  ]));
  let commits = [];
  let commitsPart;
  if (!api.has("/datasets/{name}/commits")) {
    commitsPart = unavailable("Commits", "/datasets/{name}/commits");
  } else {
    try {
      const result = await fetchPage(`/datasets/${api.seg(name)}/commits`, query, pageOf(query));
      commits = result.rows;
      commitsPart = [
        commits.length ? timeline(name, commits, query.get("commit") || ds.head, ds.head) : h("p", { class: "empty" }, "No commits yet."),
        pager(result, (p) => `#/datasets/${encodeURIComponent(name)}?page=${p}`),
      ];
    } catch (err) {
      commitsPart = partError("Commits", err);
    }
  }
  const selectedId = query.get("commit") || ds.head || (commits[0] && commits[0].id);
  const columns = h("div", { class: "two-col" }, section("Commits", commitsPart));
  const detail = h("div", { class: "stack" });
  columns.append(detail);
  body.push(columns);
  if (selectedId) {
    let commit = commits.find((c) => c.id === selectedId);
    try {
      if (api.has("/datasets/{name}/commits/{commit}")) {
        const full = await api.get(`/datasets/${api.seg(name)}/commits/${api.seg(selectedId)}`);
        commit = full.commit || full;
      }
    } catch (err) {
      detail.append(partError("Commit", err));
    }
    if (commit) {
      const actions = [];
      if (WRITERS.has(session.principal.role) && commit.id !== ds.head) {
        if (api.has("/datasets/{name}/rollback", "post")) {
          actions.push(actionButton(`Roll back to ${short(commit.id, 14)}`, {
            kind: "danger",
            confirmText: `Make commit ${commit.id} the head of ${name} again? A new commit records the rollback.`,
            run: () => api.post(`/datasets/${api.seg(name)}/rollback`, { commit: commit.id }),
            onDone: () => {
              window.location.hash = `#/datasets/${encodeURIComponent(name)}`;
              rerender();
            },
          }));
        }
      }
      detail.append(section(`Commit ${short(commit.id, 14)}`,
        facts([
          ["Id", h("code", {}, commit.id)], ["Message", commit.message || "(no message)"], ["Mode", commit.mode],
          ["Author", commit.author], ["Created", fmtDate(commit.created_at)], ["Parent", commit.parent ? h("code", {}, commit.parent) : "—"],
          ["Rows", fmtNumber(commit.row_count)], ["Size", fmtBytes(commit.size_bytes)],
          ["Version hash", commit.version_hash ? h("code", {}, short(commit.version_hash, 20)) : "—"],
          commit.notes ? ["Notes", commit.notes] : null,
        ]),
        h("p", {}, h("a", { href: entityHref(`commit:${commit.id}`) }, "Lineage of this commit")),
        actions,
      ));
      detail.append(section("Schema", schemaView(commit)));
      detail.append(section("Column statistics", statsView(commit)));
      const sampleSection = section("Sample rows");
      detail.append(sampleSection);
      if (!api.has("/datasets/{name}/commits/{commit}/sample")) {
        sampleSection.append(unavailable("Sample rows", "/datasets/{name}/commits/{commit}/sample"));
      } else {
        try {
          const sample = await api.get(`/datasets/${api.seg(name)}/commits/${api.seg(commit.id)}/sample`, { n: 20 });
          sampleSection.append(sampleView(sample));
        } catch (err) {
          sampleSection.append(partError("Sample rows", err));
        }
      }
    }
  }
  return h("div", {}, body);
}

export const routes = [
  { path: ["datasets"], section: "datasets", render: listPage },
  { path: ["datasets", ":name"], section: "datasets", render: detailPage },
];
