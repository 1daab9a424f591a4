// Models: versions, aliases (stages), promotion history, deployments with replicas, traffic, load,
// and the newest rollout of each deployment with every step and decision.

import * as api from "../api.js";
import { actionButton, entityHref, fetchAll, fetchPage, pageOf, pager, partError, unavailable } from "../common.js";
import { badge, facts, fmtDate, fmtNumber, h, parseJSON, section, short, table } from "../dom.js";

const PROMOTERS = new Set(["admin", "data-scientist"]);

function versionEntity(model, version) {
  return `model_version:${model}@${version}`;
}

async function listPage(_params, query) {
  const page = pageOf(query);
  const body = [h("h1", {}, "Models")];
  if (!api.has("/models")) {
    body.push(unavailable("Models", "/models"));
  } else {
    const result = await fetchPage("/models", query, page);
    body.push(table(
      [
        { label: "Model", render: (m) => h("a", { href: `#/models/${encodeURIComponent(m.name || m.model)}` }, m.name || m.model) },
        { label: "Description", render: (m) => m.description || "" },
        { label: "Latest version", numeric: true, render: (m) => (typeof m.latest_version === "number"
          ? h("a", { href: entityHref(versionEntity(m.name, m.latest_version)) }, `v${m.latest_version}`) : "—") },
        { label: "Owner", render: (m) => m.owner || "—" },
        { label: "Created", render: (m) => fmtDate(m.created_at) },
      ],
      result.rows,
      { caption: "Registered models", empty: "No models yet. Training a model registers one." },
    ), pager(result, (p) => `#/models?page=${p}`));
  }
  body.push(await deploymentsSection(null));
  return h("div", {}, body);
}

function trafficOf(d) {
  const traffic = parseJSON(d.traffic_json ?? d.traffic, {});
  const entries = Object.entries(traffic || {});
  if (entries.length === 0) return [[String(d.version), 100]];
  const total = entries.reduce((a, [, w]) => a + Number(w || 0), 0) || 1;
  return entries.map(([v, w]) => [v, (Number(w || 0) * 100) / total]);
}

function trafficBar(d) {
  const parts = trafficOf(d);
  return h("div", { class: "traffic" },
    h("div", { class: "traffic-bar", role: "img", "aria-label": parts.map(([v, p]) => `version ${v}: ${p.toFixed(0)}%`).join(", ") },
      parts.map(([v, p], i) => {
        const seg = h("span", { class: `traffic-seg swatch-${i % 8}` });
        seg.style.width = `${Math.max(0, Math.min(100, p))}%`; // CSSOM, allowed by the CSP
        return seg;
      })),
    h("span", { class: "traffic-text" }, parts.map(([v, p]) => `v${v} ${p.toFixed(0)}%`).join(" · ")));
}

function replicasOf(d) {
  const cfg = parseJSON(d.config_json ?? d.config, {}) || {};
  const current = d.replicas ?? d.running_replicas ?? cfg.replicas ?? cfg.num_replicas;
  const lo = cfg.min_replicas ?? (cfg.autoscaling && cfg.autoscaling.min_replicas);
  const hi = cfg.max_replicas ?? (cfg.autoscaling && cfg.autoscaling.max_replicas);
  const range = lo !== undefined || hi !== undefined ? `${lo ?? "?"}–${hi ?? "?"}` : null;
  if (current !== undefined && current !== null) return range ? `${current} (autoscale ${range})` : String(current);
  return range ? `autoscale ${range}` : "—";
}

const POLL_MS = 5000;

/** Live counters of a deployment: {requests, errors, p50_ms, p99_ms} (DeploymentInfo.metrics). */
function metricsOf(d) {
  return d && d.metrics && typeof d.metrics === "object" ? d.metrics : {};
}

async function deploymentsSection(model) {
  const part = section("Deployments");
  if (!api.has("/deployments")) {
    part.append(unavailable("Deployments", "/deployments"));
    return part;
  }
  const load = async () => {
    const data = await fetchAll("/deployments", "/deployments", {}, 100);
    return (Array.isArray(data) ? data : data.items || []).filter((d) => !model || d.model === model);
  };
  let rows;
  try {
    rows = await load();
  } catch (err) {
    part.append(partError("Deployments", err));
    return part;
  }
  // live cells, updated in place by the poller below
  const live = new Map(rows.map((d) => [d.name, {
    rate: h("span", {}, d.status === "RUNNING" ? "…" : "—"), p50: h("span", {}, fmtNumber(metricsOf(d).p50_ms)),
    p99: h("span", {}, fmtNumber(metricsOf(d).p99_ms)), requests: h("span", {}, fmtNumber(metricsOf(d).requests)),
    errors: h("span", {}, fmtNumber(metricsOf(d).errors)),
    last: { requests: metricsOf(d).requests, at: performance.now() },
  }]));
  part.append(table(
    [
      { label: "Deployment", render: (d) => h("a", { href: entityHref(`deployment:${d.name}`) }, d.name) },
      { label: "Model", render: (d) => h("a", { href: `#/models/${encodeURIComponent(d.model)}` }, `${d.model}@${d.version}`) },
      { label: "Status", render: (d) => badge(d.status) },
      { label: "Replicas", render: (d) => replicasOf(d) },
      { label: "Traffic split", render: (d) => trafficBar(d) },
      { label: "Requests/s", numeric: true, render: (d) => live.get(d.name).rate },
      { label: "Requests", numeric: true, render: (d) => live.get(d.name).requests },
      { label: "Errors", numeric: true, render: (d) => live.get(d.name).errors },
      { label: "p50 ms", numeric: true, render: (d) => live.get(d.name).p50 },
      { label: "p99 ms", numeric: true, render: (d) => live.get(d.name).p99 },
      { label: "Updated", render: (d) => fmtDate(d.updated_at) },
    ],
    rows,
    { empty: model ? "This model is not deployed." : "Nothing is deployed." },
  ));
  if (rows.length) {
    part.append(h("p", { class: "help" }, `Request rate and latency refresh every ${POLL_MS / 1000} s while this page is open.`));
    const timer = setInterval(async () => {
      if (!part.isConnected) {
        clearInterval(timer);
        return;
      }
      let fresh;
      try {
        fresh = await load();
      } catch {
        return;
      }
      const now = performance.now();
      for (const d of fresh) {
        const cells = live.get(d.name);
        if (!cells) continue;
        const m = metricsOf(d);
        if (typeof m.requests === "number" && typeof cells.last.requests === "number") {
          const rate = Math.max(0, (m.requests - cells.last.requests) / ((now - cells.last.at) / 1000));
          cells.rate.textContent = fmtNumber(Number(rate.toFixed(2)));
        }
        cells.last = { requests: m.requests, at: now };
        cells.requests.textContent = fmtNumber(m.requests);
        cells.errors.textContent = fmtNumber(m.errors);
        cells.p50.textContent = fmtNumber(m.p50_ms);
        cells.p99.textContent = fmtNumber(m.p99_ms);
      }
    }, POLL_MS);
  }
  return part;
}

/** One check of a rollout step, e.g. "wrong_rate fail: 0.52 (31/60) higher than ...". */
function checkText(c) {
  return `${c.name} ${c.verdict}: ${c.detail}`;
}

/** The newest rollout of deployment `name` (GET /deployments/{name}/rollout): its state, steps
 * and every decision with its numbers; null when it never had one. */
async function rolloutPart(name, session, rerender) {
  let r;
  try {
    r = await api.get(`/deployments/${api.seg(name)}/rollout`);
  } catch (err) {
    if (err.status === 404) return null;
    return partError(`Rollout of ${name}`, err);
  }
  const steps = (r.spec.steps || []).map((p) => `${p}%`).join(" → ");
  return h("div", { class: "rollout" },
    h("h3", {}, `Rollout of ${name}: v${r.from_version} → v${r.to_version}`),
    facts([
      ["Status", badge(r.status)],
      ["Steps", steps],
      ["Current step", `${r.percent}%`],
      ["Started", `${fmtDate(r.created_at)} by ${r.created_by}`],
      r.finished_at ? ["Finished", fmtDate(r.finished_at)] : null,
      r.reason ? ["Reason", r.reason] : null,
    ]),
    // deploy.manage has the roles of model.promote
    r.status === "RUNNING" && PROMOTERS.has(session.principal.role) && api.has("/deployments/{name}/rollout/abort", "post")
      ? actionButton("Abort rollout", {
        confirmText: `Abort the rollout of ${name}? All traffic goes back to v${r.from_version} at once.`,
        run: () => api.post(`/deployments/${api.seg(name)}/rollout/abort`, {}),
        onDone: () => rerender(),
        kind: "danger",
      })
      : null,
    table(
      [
        { label: "When", render: (e) => fmtDate(e.at) },
        { label: "Event", render: (e) => e.kind },
        { label: "Traffic to new", numeric: true, render: (e) => `${e.percent}%` },
        { label: "Decision", render: (e) => (e.decision ? badge(e.decision) : "—") },
        { label: "What", render: (e) => e.message },
        { label: "Checks", render: (e) => ((e.numbers && e.numbers.checks) || []).map((c) => h("div", {}, checkText(c))) },
      ],
      r.events || [],
      { caption: "Every traffic move and decision, with the numbers it was made on" },
    ));
}

async function rolloutsSection(model, session, rerender) {
  const part = section("Rollouts");
  if (!api.has("/deployments/{name}/rollout")) {
    part.append(unavailable("Rollouts", "/deployments/{name}/rollout"));
    return part;
  }
  let names;
  try {
    const data = await fetchAll("/deployments", "/deployments", {}, 100);
    names = (Array.isArray(data) ? data : data.items || []).filter((d) => d.model === model).map((d) => d.name);
  } catch (err) {
    part.append(partError("Rollouts", err));
    return part;
  }
  const parts = (await Promise.all(names.map((n) => rolloutPart(n, session, rerender)))).filter(Boolean);
  part.append(parts.length ? parts : h("p", {}, "No rollouts yet. `dlp serve rollout NAME VERSION` starts one."));
  return part;
}

async function detailPage(params, _query, { session, rerender }) {
  const name = params.name;
  const body = [h("h1", {}, `Model ${name}`)];
  if (!api.has("/models/{name}/versions")) {
    body.push(unavailable("Model versions", "/models/{name}/versions"));
    return h("div", {}, body);
  }
  const data = await api.get(`/models/${api.seg(name)}/versions`);
  const versions = (Array.isArray(data) ? data : data.items || data.versions || []).slice().sort((a, b) => b.version - a.version);
  if (versions[0]) {
    body.push(h("p", {}, h("a", { href: entityHref(versionEntity(name, versions[0].version)) }, `Lineage of v${versions[0].version}`),
      " (select a version number below for the lineage of that version)"));
  }
  body.push(section("Versions", table(
    [
      { label: "Version", numeric: true, render: (v) => h("a", { href: entityHref(versionEntity(name, v.version)) }, `v${v.version}`) },
      { label: "Aliases", render: (v) => (v.aliases || []).map((a) => h("span", { class: "badge badge-ok" }, a)) },
      { label: "Run", render: (v) => (v.run_id ? h("a", { href: `#/runs/${encodeURIComponent(v.run_id)}` }, short(v.run_id, 14)) : "—") },
      { label: "Dataset commit", render: (v) => (v.dataset_commit ? h("a", { href: entityHref(`commit:${v.dataset_commit}`) }, short(v.dataset_commit, 14)) : "—") },
      { label: "Metrics", render: (v) => Object.entries(parseJSON(v.metrics_json, {}) || {}).map(([k, x]) => `${k}=${fmtNumber(x)}`).join(", ") || "—" },
      { label: "Created", render: (v) => fmtDate(v.created_at) },
      ...(api.has("/models/{name}/versions/{version}/artifacts")
        ? [{ label: "Files", render: (v) => h("a", { href: `#/models/${encodeURIComponent(name)}/versions/${v.version}/artifacts` }, "Artifacts") }]
        : []),
    ],
    versions,
    { caption: "Versions, newest first; aliases are the stages (e.g. production)" },
  )));
  if (PROMOTERS.has(session.principal.role) && api.has("/models/{name}/aliases/{alias}", "post") && versions.length) {
    const alias = h("input", { id: "promote-alias", name: "alias", value: "production", required: true, pattern: "[a-z0-9][a-z0-9._-]{0,62}" });
    const version = h("select", { id: "promote-version", name: "version" }, versions.map((v) => h("option", { value: v.version }, `v${v.version}`)));
    const form = h("form", { class: "inline-form" },
      h("label", { for: "promote-alias" }, "Alias"), alias,
      h("label", { for: "promote-version" }, "Version"), version,
      actionButton("Promote", {
        run: () => api.post(`/models/${api.seg(name)}/aliases/${api.seg(alias.value.trim())}`, { version: Number(version.value) }),
        onDone: () => rerender(),
      }));
    form.addEventListener("submit", (e) => e.preventDefault());
    body.push(section("Promote a version", form));
  }
  const historyPath = ["/models/{name}/aliases", "/models/{name}/history", "/models/{name}/alias-history"].find((p) => api.has(p));
  const history = section("Promotion history");
  if (!historyPath) {
    history.append(unavailable("Promotion history", "/models/{name}/aliases"));
  } else {
    try {
      const events = await api.get(historyPath.replace("{name}", api.seg(name)));
      history.append(table(
        [
          { label: "When", render: (e) => fmtDate(e.at) },
          { label: "Alias", render: (e) => h("span", { class: "badge badge-ok" }, e.alias) },
          { label: "Version", render: (e) => `v${e.version}` },
          { label: "Previous", render: (e) => (e.previous_version ? `v${e.previous_version}` : "—") },
          { label: "By", render: (e) => e.by },
        ],
        Array.isArray(events) ? events : events.items || [],
        { empty: "No promotions yet." },
      ));
    } catch (err) {
      history.append(partError("Promotion history", err));
    }
  }
  body.push(history);
  body.push(await deploymentsSection(name));
  body.push(await rolloutsSection(name, session, rerender));
  return h("div", {}, body);
}

export const routes = [
  { path: ["models"], section: "models", render: listPage },
  { path: ["models", ":name"], section: "models", render: detailPage },
];
