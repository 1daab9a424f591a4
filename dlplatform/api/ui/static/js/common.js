// Pieces every page uses: not-found and error pages, "not available" panels, pagination.

import * as api from "./api.js";
import { fmtNumber, h, notice } from "./dom.js";

export const PAGE_SIZE = 50;

export function notFoundPage(what) {
  return h(
    "div",
    { class: "not-found" },
    h("h1", {}, "Not found"),
    h("p", {}, what || "There is no page at this address."),
    h("p", {}, h("a", { href: "#/datasets" }, "Go to the datasets")),
  );
}

export function errorPage(err) {
  if (err && err.status === 404) return notFoundPage(err.message);
  if (err && err.status === 403) {
    return h("div", { class: "forbidden" }, h("h1", {}, "Forbidden"),
      notice("error", "You may not see this page.", err.message));
  }
  return h("div", {}, h("h1", {}, "Something went wrong"),
    notice("error", "The request failed.", err ? err.message : "unknown error"));
}

/** The panel shown where the gateway has no route yet (features land one by one). */
export function unavailable(what, path) {
  return h(
    "div",
    { class: "notice notice-muted unavailable", role: "note" },
    h("strong", {}, `${what}: not available`),
    h("p", {}, "This platform's API does not offer ", h("code", {}, `GET /api/v1${path}`),
      " yet, so there is nothing to show here."),
  );
}

/** An inline error panel for one part of a page (the rest of the page still works). */
export function partError(what, err) {
  if (err && err.status === 403) return notice("error", `${what}: forbidden`, err.message);
  return notice("error", `${what}: could not be loaded`, err ? err.message : "");
}

/** Read ?page=N (1-based) from the hash query. */
export function pageOf(query) {
  const n = Number.parseInt(query.get("page") || "1", 10);
  return Number.isFinite(n) && n >= 1 ? n : 1;
}

/**
 * Fetch one page of a list route. Uses limit/offset when the route accepts them (the OpenAPI
 * document says), and the X-Total-Count header for the total when the route sends it.
 */
export async function fetchPage(path, query, page, extra = {}) {
  const accepts = api.paramsOf(path);
  const paginated = accepts.includes("limit") && accepts.includes("offset");
  const q = { ...extra };
  if (paginated) {
    q.limit = PAGE_SIZE;
    q.offset = (page - 1) * PAGE_SIZE;
  }
  const { data, total } = await api.request(path, { query: q });
  let rows = Array.isArray(data) ? data : (data && (data.items || data.results)) || [];
  let count = total ?? (data && typeof data.total === "number" ? data.total : null);
  if (!paginated) {
    count = rows.length;
    rows = rows.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE);
  }
  return { rows, total: count, page, paginated };
}

/**
 * Every item of a list route. A paginated route (limit/offset in the OpenAPI document; `template`
 * is its path with {placeholders}) is read a bounded page at a time until a page comes back short.
 */
export async function fetchAll(path, template, query = {}, pageSize = 1000) {
  const accepts = api.paramsOf(template);
  if (!(accepts.includes("limit") && accepts.includes("offset"))) return api.get(path, query);
  const items = [];
  for (;;) {
    const page = await api.get(path, { ...query, limit: pageSize, offset: items.length });
    const rows = Array.isArray(page) ? page : [];
    items.push(...rows);
    if (rows.length !== pageSize) return items;
  }
}

/** Previous/next links and "Showing a–b of n". hrefFor(page) builds the link. */
export function pager({ rows, total, page }, hrefFor) {
  const first = rows.length ? (page - 1) * PAGE_SIZE + 1 : 0;
  const last = (page - 1) * PAGE_SIZE + rows.length;
  const hasNext = total === null ? rows.length === PAGE_SIZE : last < total;
  const pages = total === null ? null : Math.max(1, Math.ceil(total / PAGE_SIZE));
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    page > 1 ? h("a", { href: hrefFor(page - 1), rel: "prev", class: "button" }, "← Previous") : null,
    h("span", { class: "pager-info" },
      rows.length === 0 ? "Nothing to show"
        : `Showing ${fmtNumber(first)}–${fmtNumber(last)}${total === null ? "" : ` of ${fmtNumber(total)}`}`,
      pages ? ` · page ${fmtNumber(page)} of ${fmtNumber(pages)}` : ` · page ${fmtNumber(page)}`),
    hasNext ? h("a", { href: hrefFor(page + 1), rel: "next", class: "button" }, "Next →") : null,
  );
}

export function entityHref(entity) {
  const at = entity.indexOf(":");
  return `#/lineage/${encodeURIComponent(entity.slice(0, at))}/${encodeURIComponent(entity.slice(at + 1))}`;
}

/** A button that runs an action with a confirmation, shows progress and reports the result. */
export function actionButton(label, { confirmText, run, onDone, kind = "" }) {
  const status = h("span", { class: "action-status", role: "status" });
  const button = h("button", { type: "button", class: kind }, label);
  button.addEventListener("click", async () => {
    if (confirmText && !window.confirm(confirmText)) return;
    button.disabled = true;
    status.textContent = "Working…";
    try {
      const result = await run();
      status.textContent = "Done.";
      if (onDone) onDone(result);
    } catch (err) {
      status.textContent = `Failed: ${err.message}`;
      status.classList.add("form-error");
    } finally {
      button.disabled = false;
    }
  });
  return h("span", { class: "action" }, button, status);
}
