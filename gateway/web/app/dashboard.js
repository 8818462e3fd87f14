// The dashboard page (/): sign-in, site and usage, filters kept in the URL,
// the list of recordings with cursor paging.
import { createApi } from "./api.js";
import { CursorStack } from "./cursors.js";
import { $, clear, h, timeEl } from "./dom.js";
import { FILTER_KEYS, apiQuery, hasFilters, readQuery, validateFilters, writeQuery } from "./filters.js";
import { formatDate, formatDateTime, formatDuration, formatNumber } from "./format.js";
import { capitalize, pagesSummary, retentionDays, visitorLabel } from "./recording.js";
import { recordingPath, safeNext } from "./route.js";
import { nextMonthStart, usageState } from "./usage.js";

const PAGE_SIZE = 50;
const api = createApi((path, init) => window.fetch(path, init));
const pager = new CursorStack();
const ui = {};
let sites = [];
let state = readQuery(location.search);
let listSeq = 0;
let usageSeq = 0;

function setState(value) {
  document.body.dataset.state = value;
}

// ---- sign-in / sign-out -------------------------------------------------

function showSignIn(message) {
  listSeq += 1; // answers still on their way are for the previous session
  usageSeq += 1;
  ui.boot.hidden = true;
  ui.app.hidden = true;
  ui.signOut.hidden = true;
  clear(ui.rows);
  ui.signIn.hidden = false;
  ui.signInError.textContent = message || "";
  ui.token.focus();
  setState("sign-in");
}

async function onSignIn(event) {
  event.preventDefault();
  const token = ui.token.value;
  if (!token) {
    ui.signInError.textContent = "Enter the admin token.";
    ui.token.focus();
    return;
  }
  const button = ui.signIn.querySelector("button[type=submit]");
  button.disabled = true;
  ui.signInError.textContent = "";
  try {
    await api.post("/api/v1/session", { token });
    ui.token.value = "";
    await boot({ afterSignIn: true });
  } catch (err) {
    ui.signInError.textContent = err.status === 401 ? "Wrong token. Check it and try again." : err.message;
    ui.token.select();
  } finally {
    button.disabled = false;
  }
}

async function onSignOut() {
  try {
    await api.del("/api/v1/session");
    showSignIn("You are signed out.");
  } catch (err) {
    if (err.status === 401) showSignIn("You are signed out.");
    else showListError(`Could not sign out: ${err.message}`);
  }
}

// ---- start ---------------------------------------------------------------

async function boot({ afterSignIn = false } = {}) {
  let session;
  try {
    session = await api.get("/api/v1/session");
  } catch (err) {
    if (err.status !== 401) showBootError(err);
    else if (!afterSignIn) showSignIn();
    // The token was right but the cookie did not come back.
    else showSignIn("The token was accepted, but this browser did not keep the session cookie (cookies blocked, or a Secure cookie over plain http).");
    return;
  }
  // A player page sent us here to sign in: go back to it.
  const params = new URLSearchParams(location.search);
  const next = safeNext(params.get("next"));
  if (next) {
    location.replace(next);
    return;
  }
  if (params.has("next")) history.replaceState(null, "", location.pathname + writeQuery(state));
  startApp(session);
}

function showBootError(err) {
  ui.boot.hidden = false;
  clear(ui.boot);
  ui.boot.append(
    `Could not reach the gateway's API: ${err.message} `,
    h("button", { type: "button", onclick: () => boot() }, "Try again"),
  );
  setState("error");
}

function startApp(session) {
  sites = Array.isArray(session && session.sites) ? session.sites : [];
  clear(ui.site);
  for (const site of sites) {
    const hosts = Array.isArray(site.hosts) && site.hosts.length ? ` (${site.hosts[0]})` : "";
    ui.site.append(h("option", { value: site.key, text: `${site.key}${hosts}` }));
  }
  ui.site.disabled = sites.length < 2;
  pickSite(true);
  fillForm();
  ui.boot.hidden = true;
  ui.signIn.hidden = true;
  ui.app.hidden = false;
  ui.signOut.hidden = false;
  pager.reset();
  loadUsage();
  loadList();
}

// The URL's site when the session knows it, else the first one.
function pickSite(replace) {
  const keys = sites.map((s) => s.key);
  if (!keys.includes(state.site)) {
    state = { ...state, site: keys[0] || null };
    if (replace) history.replaceState(null, "", location.pathname + writeQuery(state));
  }
}

// ---- filters <-> form <-> URL ---------------------------------------------

function fillForm() {
  ui.site.value = state.site || "";
  for (const key of FILTER_KEYS) {
    const field = ui.filters.elements.namedItem(key);
    const value = state.filters[key] || "";
    // A value from a hand-made URL that the select does not offer.
    if (field.tagName === "SELECT" && value && !Array.from(field.options).some((o) => o.value === value)) {
      field.append(h("option", { value, text: value }));
    }
    field.value = value;
  }
  ui.live.checked = state.live;
}

function readForm() {
  const filters = {};
  for (const key of FILTER_KEYS) {
    const value = ui.filters.elements.namedItem(key).value.trim();
    if (value) filters[key] = value;
  }
  return { site: ui.site.value || null, live: ui.live.checked, filters };
}

function apply({ force = false } = {}) {
  const next = readForm();
  const problem = validateFilters(next.filters);
  if (problem) {
    ui.filterError.textContent = problem;
    setState("ready");
    return;
  }
  const query = writeQuery(next);
  const changed = query !== writeQuery(state);
  if (!changed && !force) return;
  const siteChanged = next.site !== state.site;
  state = next;
  if (query !== location.search) history.pushState(null, "", location.pathname + query);
  pager.reset();
  if (siteChanged) loadUsage();
  loadList();
}

function onPopState() {
  state = readQuery(location.search);
  if (ui.app.hidden) return;
  pickSite(true);
  fillForm();
  pager.reset();
  loadUsage();
  loadList();
}

function clearFilters() {
  state = { site: state.site, live: false, filters: {} };
  fillForm();
  apply({ force: true });
}

// ---- usage -----------------------------------------------------------------

async function loadUsage() {
  const seq = ++usageSeq;
  const site = state.site;
  ui.limitWarning.hidden = true;
  if (!site) {
    ui.usageMain.textContent = "No site is configured on this gateway.";
    ui.usageMore.textContent = "";
    ui.usageMeter.hidden = true;
    return;
  }
  ui.usageMain.textContent = "Loading usage…";
  let usage;
  try {
    usage = await api.get(`/api/v1/sites/${encodeURIComponent(site)}/usage`);
  } catch (err) {
    if (seq !== usageSeq) return;
    if (err.status === 401) return showSignIn("Your session has ended. Sign in again.");
    ui.usageMain.textContent = `Usage unavailable: ${err.message}`;
    ui.usageMore.textContent = "";
    ui.usageMeter.hidden = true;
    return;
  }
  if (seq !== usageSeq) return;
  renderUsage(usage);
}

function monthName(month) {
  const m = /^(\d{4})-(\d{2})$/.exec(month || "");
  if (!m) return "";
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, 1));
  return new Intl.DateTimeFormat(undefined, { month: "long", year: "numeric", timeZone: "UTC" }).format(d);
}

function renderUsage(usage) {
  const s = usageState(usage);
  const month = monthName(usage.month);
  ui.usageTitle.textContent = month ? `This month (${month})` : "This month";
  ui.usageMain.textContent = s.limit
    ? `${formatNumber(s.used)} of ${formatNumber(s.limit)} recordings used · ${formatNumber(s.remaining)} left`
    : `${formatNumber(s.used)} recordings this month`;
  ui.usageMeter.hidden = !s.limit;
  ui.usageMeter.max = s.limit || 1;
  ui.usageMeter.value = Math.min(s.used, s.limit);
  ui.usageMeter.low = s.limit * 0.75;
  ui.usageMeter.high = s.limit * 0.9;
  ui.usageMeter.optimum = 0;
  const parts = [];
  if (s.near) parts.push(`Almost at the limit: ${formatNumber(s.remaining)} recordings left this month.`);
  if (usage.plan) parts.push(`Plan: ${usage.plan}.`);
  if (typeof usage.stored === "number") parts.push(`${formatNumber(usage.stored)} recordings stored now.`);
  parts.push("Deleting recordings does not give back any of this month's count.");
  ui.usageMore.textContent = parts.join(" ");
  if (s.reached) {
    const until = nextMonthStart(usage.month);
    ui.limitWarning.textContent =
      `Monthly limit reached: no new recordings until ${until ? formatDate(until, { timeZone: "UTC" }) : "the first day of next month"}. ` +
      "Recordings already stored stay available until they are deleted. To record more this month, raise the site's plan or monthly limit.";
    ui.limitWarning.hidden = false;
  }
}

// ---- list ------------------------------------------------------------------

async function loadList() {
  const seq = ++listSeq;
  setState("loading");
  ui.table.setAttribute("aria-busy", "true");
  ui.status.textContent = "Loading…";
  ui.older.disabled = true;
  ui.newer.disabled = true;
  ui.filterError.textContent = "";
  ui.listError.hidden = true;
  let data;
  try {
    data = await api.get(`/api/v1/recordings?${apiQuery(state, { cursor: pager.current, limit: PAGE_SIZE })}`);
  } catch (err) {
    if (seq !== listSeq) return;
    if (err.status === 401) return showSignIn("Your session has ended. Sign in again.");
    renderRows([], { failed: true });
    if (err.status === 400) ui.filterError.textContent = err.detail || err.message;
    else showListError(`Could not load the recordings: ${err.message}`);
    return finishList();
  }
  if (seq !== listSeq) return;
  pager.setNext(data && data.next);
  renderRows(Array.isArray(data && data.recordings) ? data.recordings : []);
  finishList();
}

function finishList() {
  ui.table.removeAttribute("aria-busy");
  ui.older.disabled = !pager.hasOlder;
  ui.newer.disabled = !pager.hasNewer;
  ui.pageNo.textContent = `Page ${pager.page}`;
  ui.pager.hidden = !pager.hasOlder && !pager.hasNewer;
  // Paging off the last page disables the button that had the focus.
  if (document.activeElement && document.activeElement.disabled) ui.resultsTitle.focus();
  setState("ready");
}

function showListError(message) {
  ui.listError.textContent = message;
  ui.listError.hidden = false;
}

function renderRows(list, { failed = false } = {}) {
  clear(ui.rows);
  for (const r of list) ui.rows.append(row(r));
  ui.tableWrap.hidden = list.length === 0;
  const empty = list.length === 0 && !failed && pager.page === 1;
  ui.empty.hidden = !empty;
  const filtered = hasFilters(state);
  ui.emptyTitle.textContent = filtered ? "No matching recordings" : "No recordings yet";
  ui.emptyFiltered.hidden = !filtered;
  if (failed) ui.status.textContent = "";
  else if (list.length === 0) ui.status.textContent = pager.page > 1 ? "No older recordings." : "No recordings.";
  else ui.status.textContent = `${list.length} recording${list.length === 1 ? "" : "s"}${pager.page > 1 ? `, page ${pager.page}` : ""}`;
  const days = retentionDays(list[0]);
  if (days) ui.retentionDays.textContent = `${days} day${days === 1 ? "" : "s"}`;
}

function row(r) {
  const pages = pagesSummary(r.pages);
  const visitor = visitorLabel(r);
  const cells = [
    h(
      "td",
      { "data-label": "Started" },
      // One child per cell: the phone layout makes each cell a flex row.
      h(
        "span",
        null,
        h("a", { href: recordingPath(r.id), class: "row-link" }, timeEl(r.started_at, formatDateTime(r.started_at), r.started_at)),
        r.finalized === false ? h("span", { class: "badge", text: "running" }) : null,
      ),
    ),
    h("td", { "data-label": "Duration", text: formatDuration(r.duration_ms) }),
    h(
      "td",
      { "data-label": "Pages", class: "pages-cell", title: pages.all.join("\n") || null },
      h(
        "span",
        null,
        h("span", { class: "path", text: pages.first || "–" }),
        pages.more > 0 ? h("span", { class: "more", text: ` +${pages.more}` }) : null,
      ),
    ),
    h("td", { "data-label": "Device", text: capitalize(r.device) }),
    h("td", { "data-label": "Browser", text: r.browser || "Unknown" }),
    h("td", {
      "data-label": "Visitor",
      class: visitor === "anonymous" ? "muted" : "visitor",
      title: r.visitor && r.visitor !== visitor ? `Visitor id ${r.visitor}` : null,
      text: visitor,
    }),
    h("td", { "data-label": "Events", class: "num", text: formatNumber(r.events) }),
  ];
  return h("tr", { "data-testid": "recording-row", "data-id": r.id }, cells);
}

// A click anywhere on a row opens it (the link in the first cell is what
// keyboards and middle-clicks use).
function onRowClick(event) {
  const tr = event.target.closest("tr[data-id]");
  if (!tr || event.target.closest("a, button") || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || String(window.getSelection() || "")) return;
  location.assign(recordingPath(tr.dataset.id));
}

// ---- wiring ----------------------------------------------------------------

function init() {
  for (const id of [
    "boot", "app", "site", "token", "rows", "empty", "older", "newer", "refresh", "filters",
  ]) ui[id] = $(`#${id}`);
  Object.assign(ui, {
    signIn: $("#sign-in"),
    signInError: $("#sign-in-error"),
    signOut: $("#sign-out"),
    usageTitle: $("#usage-title"),
    usageMain: $("#usage-main"),
    usageMeter: $("#usage-meter"),
    usageMore: $("#usage-more"),
    limitWarning: $("#limit-warning"),
    live: $("#f-live"),
    filterError: $("#filter-error"),
    listError: $("#list-error"),
    status: $("#results-status"),
    resultsTitle: $("#results-title"),
    table: $("#recordings"),
    tableWrap: $(".table-wrap"),
    emptyTitle: $("#empty-title"),
    emptyFiltered: $("#empty-filtered"),
    pageNo: $("#page-no"),
    pager: $(".pager"),
    retentionDays: $("#retention-days"),
  });
  ui.signIn.addEventListener("submit", onSignIn);
  ui.signOut.addEventListener("click", onSignOut);
  // Enter in a text field fires "change" then "submit": one load only.
  ui.filters.addEventListener("submit", (e) => {
    e.preventDefault();
    apply();
  });
  // Selects, dates and the toggle apply at once; text fields on Enter/blur.
  ui.filters.addEventListener("change", () => apply());
  ui.site.addEventListener("change", () => apply());
  $("#clear-filters").addEventListener("click", clearFilters);
  $("#empty-clear").addEventListener("click", clearFilters);
  ui.refresh.addEventListener("click", () => {
    loadUsage();
    loadList();
  });
  ui.older.addEventListener("click", () => pager.older() && loadList());
  ui.newer.addEventListener("click", () => pager.newer() && loadList());
  ui.rows.addEventListener("click", onRowClick);
  window.addEventListener("popstate", onPopState);
  boot();
}

init();
