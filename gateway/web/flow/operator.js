// The operator's passenger-flow page (docs/flow.md, "Pages"): every station of a network now
// against the usual, busiest first, live from the event stream; for the chosen station its last
// three hours per minute and the forecast for the next six hours, drawn as SVG (no library, no
// inline style: the page runs under the app's strict CSP) with the numbers as text and a table
// beside them for screen readers. It reads only the public flow API.

import { t, setLanguage, language, initialLanguage, clock } from "/app/i18n.js";
import { el } from "/app/dom.js";
import { followStations, busyCell, delayCell, readNetworks } from "/app/flow.js";

/** Minutes of history the series chart shows. */
const SERIES_MINUTES = 180;
/** Hours the forecast chart shows. */
const FORECAST_HOURS = 6;
/** The chosen station's charts are read again this often. */
const DETAIL_REFRESH_MS = 60000;
/** The charts' drawing box (the SVG's viewBox) and the room kept for axis labels. */
const W = 640;
const H = 220;
const PAD = { left: 44, right: 10, top: 10, bottom: 26 };
const SVG_NS = "http://www.w3.org/2000/svg";

let operatorId = null;
let stationId = null;
let feed = null;
let answer = null;
let seenAt = 0;
let live = false;
let detailTimer = null;
let detail = null; // {series, forecast}

class ApiError extends Error {}

/** How long a read may take before the page says it failed (as the rider app's reads do). */
const FETCH_TIMEOUT_MS = 8000;

async function getJson(path) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
  let response;
  let text;
  try {
    response = await fetch(path, { cache: "no-store", signal: abort.signal });
    text = await response.text();
  } catch (_) {
    throw new ApiError(t("no_network"));
  } finally {
    clearTimeout(timer);
  }
  let json = null;
  try {
    json = JSON.parse(text);
  } catch (_) {
    json = null;
  }
  if (!response.ok) {
    throw new ApiError((json && json.error && json.error.message) || response.status + "");
  }
  return json;
}

/** One read in the shape the shared flow code takes (`{value, at}`; never from a cache). */
async function read(path) {
  return { value: await getJson(path), at: null };
}

function svgEl(tag, attrs = {}, text = null) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== null) e.textContent = text;
  return e;
}

/** The location hash says what is shown: `#<operator>` or `#<operator>/<station>`. */
function readHash() {
  const [op, st] = decodeURIComponent(location.hash.replace(/^#/, "")).split("/");
  return { op: op || null, st: st || null };
}

function writeHash() {
  const hash = "#" + encodeURIComponent(operatorId) + (stationId ? "/" + encodeURIComponent(stationId) : "");
  if (location.hash !== hash) history.replaceState(null, "", hash);
}

// ---------------------------------------------------------------- stations now

async function start() {
  const status = document.getElementById("status");
  const operators = await readNetworks(read, status, t);
  if (!operators) return;
  const select = document.getElementById("network");
  select.replaceChildren(
    ...operators.map((o) => el("option", { value: o.operator_id, text: o.operator_id + " (" + o.mode + ")" })),
  );
  const wanted = readHash();
  const op = operators.some((o) => o.operator_id === wanted.op) ? wanted.op : operators[0].operator_id;
  select.value = op;
  follow(op, wanted.op === op ? wanted.st : null);
}

function follow(op, st) {
  if (feed) feed.stop();
  operatorId = op;
  answer = null;
  document.getElementById("now-rows").replaceChildren();
  document.getElementById("status").textContent = t("loading");
  choose(st);
  feed = followStations(
    op,
    read,
    (next, seen) => {
      answer = next;
      seenAt = Date.now();
      live = seen.live;
      renderNow();
      // The chosen station may not be in this network (an old link): forget it.
      if (stationId && !answer.stations.some((s) => s.location_id === stationId)) choose(null);
      else if (stationId) renderDetailTitle();
    },
    (state, error) => {
      if (state === "failed" && !answer) {
        document.getElementById("status").textContent = t("load_failed", { error: error.message });
      } else if (state === "reconnecting" && answer) {
        live = false;
        renderStatus();
      }
    },
  );
}

/** The status line is a live region, changed (and announced) only when the source changes; each
 * answer's time goes to a line that is not announced. */
function renderStatus() {
  const status = document.getElementById("status");
  const said = live ? t("stations_live") : t("stations_updated", { time: clock(seenAt) });
  if (status.textContent !== said) status.textContent = said;
  status.dataset.mode = live ? "live" : "read";
  document.getElementById("status-time").textContent = live
    ? t("stations_updated", { time: clock(seenAt) })
    : "";
}

function renderNow() {
  if (!answer) return;
  renderStatus();
  // Busiest against the usual first; stations without a usual level last, by name.
  const rows = answer.stations.slice().sort((a, b) => {
    const pa = a.percent_of_usual ?? -1;
    const pb = b.percent_of_usual ?? -1;
    return pb - pa || a.name.localeCompare(b.name);
  });
  const body = document.getElementById("now-rows");
  body.replaceChildren();
  for (const s of rows) {
    const button = el("button", {
      type: "button",
      text: t("op_show"),
      "aria-label": t("op_show_label", { station: s.name }),
    });
    button.addEventListener("click", () => {
      choose(s.location_id);
      document.getElementById("detail-h").focus();
    });
    const row = el(
      "tr",
      { "data-station": s.location_id, "data-percent": String(s.percent_of_usual) },
      el("th", { scope: "row", text: s.name }),
      busyCell(s, t),
      el("td", { class: "num", text: String(s.entries) }),
      el("td", { class: "num", text: String(s.exits) }),
      el("td", { class: "num", text: s.usual === null ? "—" : s.usual.toFixed(1) }),
      delayCell(s, t),
      el("td", {}, button),
    );
    if (s.location_id === stationId) row.setAttribute("aria-selected", "true");
    body.append(row);
  }
}

// ---------------------------------------------------------------- one station's charts

function choose(st) {
  stationId = st;
  clearInterval(detailTimer);
  detail = null;
  writeHash();
  const section = document.getElementById("detail");
  section.hidden = !st;
  for (const row of document.querySelectorAll("#now-rows tr")) {
    if (row.dataset.station === st) row.setAttribute("aria-selected", "true");
    else row.removeAttribute("aria-selected");
  }
  if (!st) return;
  renderDetailTitle();
  loadDetail();
  detailTimer = setInterval(loadDetail, DETAIL_REFRESH_MS);
}

function stationName() {
  const s = answer && answer.stations.find((x) => x.location_id === stationId);
  return s ? s.name : stationId;
}

function renderDetailTitle() {
  const h = document.getElementById("detail-h");
  h.textContent = t("op_detail_title", { station: stationName() });
  h.setAttribute("tabindex", "-1");
}

async function loadDetail() {
  const section = document.getElementById("detail");
  const status = document.getElementById("detail-status");
  const op = encodeURIComponent(operatorId);
  const st = encodeURIComponent(stationId);
  const wanted = stationId;
  section.setAttribute("aria-busy", "true");
  try {
    const [series, forecast] = await Promise.all([
      getJson(`/v1/flow/stations/${st}?operator_id=${op}&minutes=${SERIES_MINUTES}`),
      getJson(`/v1/flow/stations/${st}/forecast?operator_id=${op}&hours=${FORECAST_HOURS}`),
    ]);
    if (wanted !== stationId) return;
    detail = { series, forecast };
    // Announced only when something failed; the time of each read is not announced.
    status.textContent = "";
    document.getElementById("detail-time").textContent = t("stations_updated", {
      time: clock(Date.now()),
    });
    renderDetail();
  } catch (e) {
    status.textContent = t("load_failed", { error: e.message });
  } finally {
    section.removeAttribute("aria-busy");
  }
}

/** Grid lines above the axis. */
const TICKS = 4;

/** A round upper bound for an axis of counts: TICKS steps of 1, 2 or 5 times a power of ten
 * (never below 1), so every grid line is a whole number. */
function niceMax(max) {
  const wanted = Math.max(1, max / TICKS);
  const p = Math.pow(10, Math.floor(Math.log10(wanted)));
  const step = [1, 2, 5, 10].map((m) => m * p).find((v) => v >= wanted);
  return step * TICKS;
}

/** Draws the frame: horizontal grid lines with their values, and the x labels given. */
function frame(svg, top, xLabels) {
  svg.replaceChildren();
  const plotH = H - PAD.top - PAD.bottom;
  for (let i = 0; i <= TICKS; i++) {
    const y = PAD.top + plotH - (plotH * i) / TICKS;
    svg.append(svgEl("line", { class: "grid", x1: PAD.left, x2: W - PAD.right, y1: y, y2: y }));
    svg.append(
      svgEl("text", { class: "axis-label", x: PAD.left - 6, y: y + 4, "text-anchor": "end" }, String((top * i) / TICKS)),
    );
  }
  for (const { x, text } of xLabels) {
    svg.append(svgEl("text", { class: "axis-label", x, y: H - 8, "text-anchor": "middle" }, text));
  }
}

function renderSeries(series) {
  const svg = document.getElementById("series-chart");
  const minutes = series.minutes;
  const top = niceMax(Math.max(1, ...minutes.map((m) => Math.max(m.entries, m.exits))));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const x = (i) => PAD.left + (minutes.length <= 1 ? 0 : (plotW * i) / (minutes.length - 1));
  const y = (v) => PAD.top + plotH - (plotH * v) / top;
  const labels = [];
  minutes.forEach((m, i) => {
    if (new Date(m.minute_start_ms).getMinutes() === 0) labels.push({ x: x(i), text: clock(m.minute_start_ms, false) });
  });
  frame(svg, top, labels);
  for (const key of ["entries", "exits"]) {
    const points = minutes.map((m, i) => `${x(i).toFixed(1)},${y(m[key]).toFixed(1)}`).join(" ");
    svg.append(svgEl("polyline", { class: key, points, "data-points": minutes.length }));
  }
  const entries = minutes.reduce((n, m) => n + m.entries, 0);
  const exits = minutes.reduce((n, m) => n + m.exits, 0);
  const peak = minutes.reduce((best, m) => (m.entries + m.exits > best.entries + best.exits ? m : best), minutes[0]);
  document.getElementById("series-summary").textContent = t("op_series_summary", {
    entries,
    exits,
    minutes: minutes.length,
    peak: peak.entries + peak.exits,
    at: clock(peak.minute_start_ms, false),
  });
}

function renderForecast(forecast) {
  const svg = document.getElementById("forecast-chart");
  const hours = forecast.hours;
  const rows = document.getElementById("forecast-rows");
  rows.replaceChildren();
  const summary = document.getElementById("forecast-summary");
  if (hours.length === 0) {
    frame(svg, 1, []);
    summary.textContent = t("op_forecast_none", { weeks: forecast.usual_weeks });
    return;
  }
  const top = niceMax(Math.max(1, ...hours.map((h) => Math.max(h.entries, h.exits))));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / hours.length;
  const bar = slot * 0.36;
  const y = (v) => PAD.top + plotH - (plotH * v) / top;
  frame(
    svg,
    top,
    hours.map((h, i) => ({ x: PAD.left + slot * (i + 0.5), text: clock(h.hour_start_ms, false) })),
  );
  hours.forEach((h, i) => {
    const x0 = PAD.left + slot * i + slot * 0.12;
    for (const [k, key] of ["entries", "exits"].entries()) {
      const v = h[key];
      svg.append(
        svgEl("rect", {
          class: key,
          x: (x0 + k * bar).toFixed(1),
          y: y(v).toFixed(1),
          width: (bar - 2).toFixed(1),
          height: Math.max(0, PAD.top + plotH - y(v)).toFixed(1),
          "data-value": v.toFixed(1),
        }),
      );
    }
    rows.append(
      el(
        "tr",
        {},
        el("th", { scope: "row", text: clock(h.hour_start_ms, false) }),
        el("td", { class: "num", text: String(Math.round(h.entries)) }),
        el("td", { class: "num", text: String(Math.round(h.exits)) }),
      ),
    );
  });
  const total = hours.reduce((n, h) => n + h.entries + h.exits, 0);
  summary.textContent = t("op_forecast_summary", { total: Math.round(total), hours: hours.length, weeks: forecast.usual_weeks });
}

function renderDetail() {
  if (!detail) return;
  renderSeries(detail.series);
  renderForecast(detail.forecast);
}

// ---------------------------------------------------------------- page

function rerender() {
  setLanguage(language());
  document.title = t("op_title");
  renderNow();
  if (stationId) renderDetailTitle();
  renderDetail();
}

function main() {
  setLanguage(initialLanguage());
  document.title = t("op_title");
  document.getElementById("lang").addEventListener("click", () => {
    setLanguage(language() === "en" ? "zh" : "en");
    rerender();
  });
  document.getElementById("network").addEventListener("change", (event) => follow(event.target.value, null));
  start().finally(() => {
    document.body.dataset.ready = "1";
  });
}

main();
