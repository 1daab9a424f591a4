// The shell: sign-in, navigation, hash routing (#/datasets/x), 401 handling.

import * as api from "./api.js";
import { announce, clear, h, notice } from "./dom.js";
import { errorPage, notFoundPage } from "./common.js";
import { routes as datasetRoutes } from "./pages/datasets.js";
import { routes as runRoutes } from "./pages/runs.js";
import { routes as artifactRoutes } from "./pages/artifacts.js";
import { routes as modelRoutes } from "./pages/models.js";
import { routes as lineageRoutes } from "./pages/lineage.js";
import { routes as workflowRoutes } from "./pages/workflows.js";
import { routes as adminRoutes } from "./pages/admin.js";
import { routes as usageRoutes } from "./pages/usage.js";

const ROUTES = [
  ...datasetRoutes, ...runRoutes, ...artifactRoutes, ...modelRoutes, ...lineageRoutes, ...workflowRoutes, ...adminRoutes,
  ...usageRoutes,
];

const main = document.getElementById("main");
const nav = document.getElementById("main-nav");
const userBox = document.getElementById("user-box");
const who = document.getElementById("who");
let signInMessage = null;
let renderSeq = 0;
export const session = { principal: null };

function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [pathPart, queryPart = ""] = raw.split("?");
  const parts = pathPart.split("/").filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return { parts, query: new URLSearchParams(queryPart) };
}

function matchRoute(parts) {
  for (const route of ROUTES) {
    if (route.path.length !== parts.length) continue;
    const params = {};
    let ok = true;
    route.path.forEach((segment, i) => {
      if (segment.startsWith(":")) params[segment.slice(1)] = parts[i];
      else if (segment !== parts[i]) ok = false;
    });
    if (ok) return { route, params };
  }
  return null;
}

function showSignIn() {
  nav.hidden = true;
  userBox.hidden = true;
  session.principal = null;
  document.title = "Sign in · dlplatform";
  const error = h("p", { class: "form-error", id: "signin-error", role: "alert" });
  const input = h("input", {
    id: "token", name: "token", type: "password", autocomplete: "off", required: true,
    spellcheck: "false", "aria-describedby": "token-help signin-error",
  });
  const form = h(
    "form",
    { class: "signin", id: "signin-form", novalidate: true },
    h("h1", {}, "Sign in to dlplatform"),
    signInMessage ? notice("warn", "Signed out", signInMessage) : null,
    h("label", { for: "token" }, "Platform token"),
    input,
    h("p", { id: "token-help", class: "help" },
      "Paste the token you got from ", h("code", {}, "dlp users create"),
      ". It stays in this browser tab only and is forgotten when you close it."),
    error,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  signInMessage = null;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    error.textContent = "";
    if (!token) {
      error.textContent = "Enter a token.";
      input.focus();
      return;
    }
    try {
      const { data } = await api.request("/whoami", { token });
      api.setToken(token);
      session.principal = data;
      const target = window.location.hash && !window.location.hash.startsWith("#/signin")
        ? window.location.hash : "#/datasets";
      if (window.location.hash === target) render();
      else window.location.hash = target;
    } catch (err) {
      error.textContent = err.status === 401
        ? `Sign-in failed: ${err.message}. Check the token and try again.`
        : `Sign-in failed: ${err.message}`;
      input.focus();
    }
  });
  clear(main).append(form);
  main.dataset.route = "signin";
  main.setAttribute("aria-busy", "false");
  input.focus();
}

function signOut(message) {
  api.clearToken();
  session.principal = null;
  signInMessage = message || null;
  if (!window.location.hash.startsWith("#/signin")) {
    history.replaceState(null, "", `#/signin`);
  }
  showSignIn();
}

api.setUnauthenticatedHandler((message) => {
  signOut(`Your session ended (${message}). Sign in again.`);
});

function setActiveNav(section) {
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function render() {
  const seq = ++renderSeq;
  const { parts, query } = parseHash();
  main.setAttribute("aria-busy", "true");
  if (!api.getToken()) {
    showSignIn();
    return;
  }
  if (parts[0] === "signin") {
    window.location.hash = "#/datasets";
    return;
  }
  if (parts.length === 0) {
    window.location.hash = "#/datasets";
    return;
  }
  try {
    await api.loadSpec();
    if (!session.principal) session.principal = await api.get("/whoami");
  } catch (err) {
    if (err.status === 401) return;
    clear(main).append(errorPage(err));
    main.setAttribute("aria-busy", "false");
    return;
  }
  nav.hidden = false;
  userBox.hidden = false;
  who.textContent = `${session.principal.name} (${session.principal.role})`;
  const adminLink = nav.querySelector('a[data-section="audit"]');
  adminLink.parentElement.hidden = session.principal.role !== "admin";
  const found = matchRoute(parts);
  setActiveNav(found ? found.route.section : null);
  let content;
  if (!found) {
    content = notFoundPage();
  } else {
    clear(main).append(h("p", { class: "loading", role: "status" }, "Loading…"));
    try {
      content = await found.route.render(found.params, query, { session, rerender: render });
    } catch (err) {
      if (err && err.status === 401) return;
      content = errorPage(err);
    }
  }
  if (seq !== renderSeq) return; // a newer navigation won
  if (!api.getToken()) return; // signed out meanwhile (a 401): the sign-in form stays
  clear(main).append(content);
  main.dataset.route = window.location.hash.replace(/^#\/?/, "");
  main.setAttribute("aria-busy", "false");
  const heading = main.querySelector("h1");
  document.title = `${heading ? heading.textContent : "dlplatform"} · dlplatform`;
  announce(`${heading ? heading.textContent : "Page"} loaded`);
}

document.getElementById("sign-out").addEventListener("click", () => signOut("You signed out."));
document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
window.addEventListener("hashchange", () => {
  render().then(() => main.focus({ preventScroll: false }));
});
render();
