// The rider app (docs/rider-app.md). Views are sections of index.html chosen by the URL's
// hash (#code, #journeys, #wallet, #tickets, #stations, #receipt/<charge id>); the rider API is same-origin, called
// with the rider token. What the phone must keep to show a code offline — the token, the
// credential and the non-extractable device key (a CryptoKey, structured-cloneable) — lives in
// IndexedDB; the service worker (sw.js) keeps the app's files.

import qrcode from "./qrcode-generator.mjs";
import * as ridecode from "./ridecode.js";
import { t, setLanguage, language, initialLanguage, locale, clock } from "./i18n.js";
import { el } from "./dom.js";
import { followStations, busyCell, delayCell, readNetworks } from "./flow.js";

/** A new code every 5 s: well inside the gates' 60 s freshness, so a code is never stale on
 * screen and a photographed one is useless a minute later (docs/ride-code.md, "Time policy"). */
const REFRESH_MS = 5000;
/** Renew the credential (same device key) when less than a day of it is left and we are online. */
const RENEW_BEFORE_S = 24 * 3600;
/** QR modules per side are drawn this many pixels wide, on a 4-module quiet zone. */
const QR_CELL_PX = 5;
const QR_QUIET_MODULES = 4;
/** The ride code must fit QR version 10 at level M (docs/ride-code.md). */
const QR_VERSION_MAX = 10;
/** How long one API call may take before the app treats the network as gone. */
const FETCH_TIMEOUT_MS = 8000;

const DB_NAME = "turnpike-rider";
const STORE = "kv";

// ---------------------------------------------------------------- storage (IndexedDB)

let dbOpening = null;

/** The app's database, opened once per page. */
function openDb() {
  if (!dbOpening) {
    dbOpening = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB_NAME, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => {
        dbOpening = null;
        reject(req.error);
      };
    });
  }
  return dbOpening;
}

async function dbGet(key) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const req = db.transaction(STORE).objectStore(STORE).get(key);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function dbPut(key, value) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, "readwrite");
    tx.objectStore(STORE).put(value, key);
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
  });
}

// ---------------------------------------------------------------- the rider API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || "HTTP " + status);
    this.status = status;
    this.code = code;
  }
}

class NetworkError extends Error {}

let device = null; // {token, riderId, credential, credentialId, validFromS, validUntilS, privateKey, publicKeyRaw}

async function api(method, path, body) {
  const headers = {};
  if (device && device.token) headers.Authorization = "Bearer " + device.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      signal: abort.signal,
    });
  } catch (_) {
    setOnline(false);
    throw new NetworkError(t("no_network"));
  } finally {
    clearTimeout(timer);
  }
  setOnline(true);
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch (_) {
    json = null;
  }
  if (!response.ok) {
    // Every error answer is {"error": {"code", "message"}} (docs/api.md, "Conventions").
    const error = (json && json.error) || {};
    throw new ApiError(response.status, error.code, error.message);
  }
  return json;
}

/** GET with the last good answer kept in IndexedDB, shown when the network is gone. */
async function cachedGet(path) {
  try {
    const value = await api("GET", path);
    await dbPut("cache:" + path, { value, at: Date.now() });
    observe(path, value);
    return { value, at: null };
  } catch (e) {
    if (!(e instanceof NetworkError)) throw e;
    const hit = await dbGet("cache:" + path);
    if (!hit) throw e;
    return hit;
  }
}

function setOnline(online) {
  const net = document.getElementById("net");
  net.classList.toggle("offline", !online);
  net.textContent = online ? "" : t("offline");
}

// ---------------------------------------------------------------- notifications (in-app)

/** Check charges and the deny list this often while the app is open, for notifications. */
const WATCH_MS = 30000;
/** Notifications kept (oldest dropped). */
const NOTICES_MAX = 50;

let observing = Promise.resolve();

/** Compares a fresh answer with what the app saw before (IndexedDB `seen`) and turns each
 * change a rider must hear about into a notification: a failed deduction, a refund, a
 * deny-listing and its lifting. Serialized, so two answers never race on `seen`. */
function observe(path, value) {
  observing = observing.then(() => noticeChanges(path, value)).catch(() => {});
}

async function noticeChanges(path, value) {
  const seen = (await dbGet("seen")) || { charges: {}, denied: false };
  const found = [];
  if (path === "/v1/riders/me/charges") {
    const next = {};
    for (const c of value) {
      const before = seen.charges[c.charge_id];
      // Owed from the first failure until captured: a retry in flight (pending again) is still
      // owed, and a retry that fails again is not news.
      const owedBefore = Boolean(before && before.owed);
      const owed =
        c.status === "failed" || (owedBefore && c.status !== "captured" && c.status !== "cancelled");
      next[c.charge_id] = { status: c.status, refunded: c.refunded_minor, owed };
      const amount = money(c.amount_minor, c.currency);
      if (owed && !owedBefore) {
        found.push({ key: "notice_failed", values: { amount, day: c.business_day } });
      }
      if (owedBefore && c.status === "captured") {
        found.push({ key: "notice_repaid", values: { amount, day: c.business_day } });
      }
      const refunded = c.refunded_minor - (before ? before.refunded : 0);
      if (refunded > 0) {
        found.push({
          key: "notice_refund",
          values: { amount: money(refunded, c.currency), day: c.business_day },
        });
      }
    }
    seen.charges = next;
  } else if (path === "/v1/riders/me/deny-list") {
    if (value.denied && !seen.denied) {
      const reasons = value.entries.map((e) =>
        e.reason === "arrears" ? t("deny_reason_arrears") : e.reason,
      );
      found.push({ key: "notice_denied", values: { reason: reasons.join("; ") } });
    } else if (!value.denied && seen.denied) {
      found.push({ key: "notice_lifted", values: {} });
    }
    seen.denied = value.denied;
  } else {
    return;
  }
  await dbPut("seen", seen);
  if (found.length === 0) return;
  const notices = (await dbGet("notices")) || [];
  const at = Date.now();
  for (const n of found) notices.push({ ...n, at, read: false });
  await dbPut("notices", notices.slice(-NOTICES_MAX));
  await renderNotices();
}

/** Unread notifications at the top of every view, newest first, in the current language. */
async function renderNotices() {
  const notices = ((await dbGet("notices")) || []).filter((n) => !n.read);
  const box = document.getElementById("notices");
  const ul = document.getElementById("notice-list");
  ul.replaceChildren();
  for (const n of notices.slice().reverse()) {
    ul.append(el("li", { "data-notice": n.key, text: when(n.at) + " · " + t(n.key, n.values) }));
  }
  box.hidden = notices.length === 0;
}

async function dismissNotices() {
  const notices = (await dbGet("notices")) || [];
  for (const n of notices) n.read = true;
  await dbPut("notices", notices);
  await renderNotices();
  document.getElementById("main").focus();
}

/** Looks at charges and the deny list now and then (only for their notifications). */
function watch() {
  setInterval(() => {
    if (!device) return;
    cachedGet("/v1/riders/me/charges").catch(() => {});
    cachedGet("/v1/riders/me/deny-list").catch(() => {});
  }, WATCH_MS);
}

// ---------------------------------------------------------------- enrolment

async function enrol() {
  const button = document.getElementById("enrol");
  const status = document.getElementById("enrol-status");
  button.disabled = true;
  status.textContent = t("enrolling");
  try {
    const registered = await api("POST", "/v1/riders");
    // The private key is not extractable: no script, ours included, can read it out; it can
    // only sign. The public key is always exportable.
    const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, [
      "sign",
      "verify",
    ]);
    const publicKeyRaw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    device = {
      token: registered.token,
      riderId: registered.rider_id,
      privateKey: pair.privateKey,
      publicKeyRaw,
    };
    await requestCredential();
    status.textContent = "";
    location.hash = "#code";
    route();
  } catch (e) {
    device = null;
    status.textContent = t("enrol_failed", { error: e.message });
    status.classList.add("error");
  } finally {
    button.disabled = false;
  }
}

/** Asks for a credential for this phone's key (first enrolment and renewals) and keeps it. */
async function requestCredential() {
  const enrolled = await api("POST", "/v1/riders/me/credentials", {
    device_public_key: ridecode.toBase64Url(device.publicKeyRaw),
  });
  const credential = ridecode.fromBase64Url(enrolled.credential);
  if (credential.length !== ridecode.CREDENTIAL_BYTES) throw new Error("bad credential length");
  Object.assign(device, {
    credential,
    credentialId: enrolled.credential_id,
    validFromS: enrolled.valid_from_s,
    validUntilS: enrolled.valid_until_s,
  });
  await dbPut("device", device);
}

async function renewIfDue() {
  const nowS = Math.floor(Date.now() / 1000);
  if (device.validUntilS - nowS > RENEW_BEFORE_S) return;
  try {
    await requestCredential();
    document.getElementById("credential-status").textContent = t("renewed");
    // The code on screen carries the old credential: show one with the new one now.
    if (codeTimer) startCode();
  } catch (_) {
    // Offline or refused: the code view says when the credential runs out.
  }
}

// ---------------------------------------------------------------- the ride code

let codeTimer = null;
let tickTimer = null;
let shownAtMs = 0;

/** Draws `bytes` as a QR code (byte mode, level M, at most version 10) on the canvas. */
export function drawQr(canvas, bytes) {
  const qr = qrcode(0, "M");
  qr.addData(String.fromCharCode(...bytes), "Byte");
  qr.make();
  const modules = qr.getModuleCount();
  const version = (modules - 17) / 4;
  if (version > QR_VERSION_MAX) throw new Error("QR version " + version + " is over 10");
  const side = (modules + 2 * QR_QUIET_MODULES) * QR_CELL_PX;
  canvas.width = side;
  canvas.height = side;
  const g = canvas.getContext("2d");
  g.fillStyle = "#fff";
  g.fillRect(0, 0, side, side);
  g.fillStyle = "#000";
  for (let r = 0; r < modules; r++) {
    for (let c = 0; c < modules; c++) {
      if (qr.isDark(r, c)) {
        g.fillRect(
          (c + QR_QUIET_MODULES) * QR_CELL_PX,
          (r + QR_QUIET_MODULES) * QR_CELL_PX,
          QR_CELL_PX,
          QR_CELL_PX,
        );
      }
    }
  }
  return version;
}

async function showCode() {
  const canvas = document.getElementById("qr");
  const nowMs = Date.now();
  if (nowMs / 1000 >= device.validUntilS) {
    canvas.hidden = true;
    document.getElementById("code-status").textContent = t("credential_expired");
    return;
  }
  const code = await ridecode.makeCode(device.privateKey, device.credential, nowMs);
  const version = drawQr(canvas, code);
  canvas.hidden = false;
  shownAtMs = nowMs;
  canvas.dataset.generatedAt = String(nowMs);
  canvas.dataset.qrVersion = String(version);
  canvas.setAttribute(
    "aria-label",
    t("qr_label", { rider: device.riderId, time: new Date(nowMs).toLocaleTimeString(locale()) }),
  );
  tick();
}

function tick() {
  if (!shownAtMs) return;
  const now = Date.now();
  const left = Math.max(0, Math.ceil((shownAtMs + ridecode.FRESHNESS_MS - now) / 1000));
  const next = Math.max(0, Math.ceil((shownAtMs + REFRESH_MS - now) / 1000));
  document.getElementById("code-status").textContent = t("code_made", {
    time: new Date(shownAtMs).toLocaleTimeString(locale()),
    left,
    next,
  });
}

function startCode() {
  stopCode();
  document.getElementById("rider-id").textContent = device.riderId;
  document.getElementById("credential-until").textContent = new Date(
    device.validUntilS * 1000,
  ).toLocaleString(locale());
  // What the wallet view last learnt of the deny list: a refused rider is told here too,
  // before walking up to a gate (the code itself is still shown; the gate decides).
  dbGet("cache:/v1/riders/me/deny-list").then((hit) => {
    const denied = Boolean(hit && hit.value && hit.value.denied);
    const warning = document.getElementById("code-warning");
    warning.textContent = denied ? t("gates_refuse") + " " + t("see_wallet") : "";
  });
  const run = () =>
    showCode().catch((e) => {
      document.getElementById("code-status").textContent = e.message;
    });
  run();
  codeTimer = setInterval(run, REFRESH_MS);
  tickTimer = setInterval(tick, 1000);
}

function stopCode() {
  clearInterval(codeTimer);
  clearInterval(tickTimer);
  codeTimer = tickTimer = null;
}

// ---------------------------------------------------------------- money and names

/** Minor units → "¥3.00" (integer arithmetic; the API's amounts are exact). */
function money(minor, currency) {
  const sign = minor < 0 ? "-" : "";
  const abs = Math.abs(minor);
  const whole = Math.floor(abs / 100);
  const cents = String(abs % 100).padStart(2, "0");
  const symbol = currency === "CNY" ? "¥" : currency + " ";
  return sign + symbol + whole + "." + cents;
}

function moneyView(m) {
  if (!m) return "—";
  return (m.currency === "CNY" ? "¥" : m.currency + " ") + m.amount;
}

function when(ms) {
  return new Date(ms).toLocaleString(locale(), {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}

function routeName(j) {
  return (j.entry_location_id || "?") + " → " + (j.exit_location_id || "…");
}

function chargeLabel(c) {
  if (!c) return t("no_charge");
  let text = t("charge_" + c.status);
  if (c.refunded_minor > 0) text += "; " + t("charge_refunded", { amount: money(c.refunded_minor, c.currency) });
  return text;
}

// ---------------------------------------------------------------- journeys, charges, disputes

let charges = [];
let journeys = [];
let disputes = [];
let disputing = null;

/** Marks a view busy while its lists load (screen readers wait; tests too). */
async function busy(viewId, work) {
  const view = document.getElementById(viewId);
  view.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    view.removeAttribute("aria-busy");
  }
}

function loadJourneys() {
  return busy("view-journeys", loadJourneysNow);
}

async function loadJourneysNow() {
  const status = document.getElementById("journeys-status");
  status.textContent = t("loading");
  try {
    const [j, c, d, k] = await Promise.all([
      cachedGet("/v1/riders/me/journeys?limit=100"),
      cachedGet("/v1/riders/me/charges"),
      cachedGet("/v1/riders/me/disputes"),
      cachedGet("/v1/riders/me/daily-caps"),
    ]);
    journeys = j.value.journeys;
    charges = c.value;
    disputes = d.value;
    renderCaps(k.value.caps);
    renderJourneys();
    renderDisputes(disputes);
    const at = j.at || c.at || d.at;
    status.textContent = at ? t("shown_from_cache", { time: when(at) }) : "";
  } catch (e) {
    status.textContent = t("load_failed", { error: e.message });
  }
}

/** Today's progress towards each operator's daily cap, as text and a labelled progress bar. */
function renderCaps(caps) {
  const box = document.getElementById("caps");
  box.replaceChildren();
  for (const k of caps) {
    const values = {
      operator: k.operator_id,
      day: k.business_day,
      cap: moneyView(k.cap),
      charged: moneyView(k.charged),
      remaining: moneyView(k.remaining),
    };
    const id = "cap-" + k.operator_id;
    const bar = el("progress", {
      id,
      max: k.cap.amount,
      value: k.charged.amount,
      "aria-label": t("cap_label", values),
    });
    box.append(
      el(
        "div",
        { class: "cap", "data-operator": k.operator_id },
        el("p", { text: t("cap_text", values) }),
        bar,
      ),
    );
  }
}

function renderJourneys() {
  const body = document.getElementById("journeys");
  body.replaceChildren();
  if (journeys.length === 0) {
    body.append(el("tr", {}, el("td", { colspan: "5", text: t("no_journeys") })));
    return;
  }
  const byJourney = new Map(charges.filter((c) => c.journey_id).map((c) => [c.journey_id, c]));
  for (const j of journeys) {
    const charge = byJourney.get(j.journey_id);
    let fare = moneyView(j.fare);
    if (j.status === "open") fare = t("open_journey");
    else if (j.close_reason === "incomplete") fare += " (" + t("incomplete") + ")";
    const actions = el("div", { class: "actions" });
    if (charge) {
      const receipt = el("a", {
        href: "#receipt/" + charge.charge_id,
        "aria-label": t("receipt_label", { route: routeName(j) }),
        "data-charge": charge.charge_id,
        class: "receipt-link",
        text: t("receipt"),
      });
      actions.append(receipt);
      // A paid charge can be disputed while none of its disputes is open and it is not
      // refunded in full (the gateway refuses a second open dispute).
      const open = disputes.some((d) => d.charge_id === charge.charge_id && d.status === "open");
      if (charge.status === "captured" && !open && charge.refunded_minor < charge.amount_minor) {
        const button = el("button", {
          type: "button",
          class: "dispute",
          "data-charge": charge.charge_id,
          "aria-label": t("dispute_label", { route: routeName(j) }),
          text: t("dispute"),
        });
        button.addEventListener("click", () => openDispute(charge, j));
        actions.append(button);
      }
    }
    body.append(
      el(
        "tr",
        { "data-journey": j.journey_id, "data-status": j.status },
        el("td", { text: when(j.entry_at_ms) }),
        el("td", { text: routeName(j) }),
        el("td", { class: "money fare", text: fare }),
        el("td", { class: "charge status-" + (charge ? charge.status : "none"), text: chargeLabel(charge) }),
        el("td", {}, actions),
      ),
    );
  }
}

function renderDisputes(list) {
  const ul = document.getElementById("disputes");
  ul.replaceChildren();
  document.getElementById("disputes-status").textContent = list.length ? "" : t("no_disputes");
  const byId = new Map(charges.map((c) => [c.charge_id, c]));
  for (const d of list) {
    const c = byId.get(d.charge_id);
    const li = el("li", {
      "data-dispute": d.dispute_id,
      "data-status": d.status,
      text: t("dispute_item", {
        amount: c ? money(c.amount_minor, c.currency) : "",
        day: c ? c.business_day : "",
        status: t("dispute_status_" + d.status),
        reason: d.reason,
      }),
    });
    if (d.decision_note) li.append(el("br"), document.createTextNode(t("dispute_note", { note: d.decision_note })));
    ul.append(li);
  }
}

function openDispute(charge, journey) {
  disputing = charge;
  const form = document.getElementById("dispute-form");
  document.getElementById("dispute-what").textContent =
    routeName(journey) + " · " + money(charge.amount_minor, charge.currency) + " · " + charge.business_day;
  form.hidden = false;
  document.getElementById("dispute-reason").focus();
}

async function sendDispute(event) {
  event.preventDefault();
  const reason = document.getElementById("dispute-reason").value.trim();
  const status = document.getElementById("journeys-status");
  if (!disputing || !reason) return;
  try {
    await api("POST", "/v1/riders/me/disputes", { charge_id: disputing.charge_id, reason });
    status.textContent = t("dispute_sent");
    closeDispute();
    await loadJourneys();
    status.textContent = t("dispute_sent");
  } catch (e) {
    status.textContent = t("dispute_failed", { error: e.message });
  }
}

function closeDispute() {
  disputing = null;
  document.getElementById("dispute-form").hidden = true;
  document.getElementById("dispute-reason").value = "";
}

// ---------------------------------------------------------------- wallet and arrears

function loadWallet() {
  return busy("view-wallet", loadWalletNow);
}

async function loadWalletNow() {
  const status = document.getElementById("wallet-status");
  const bind = document.getElementById("bind-wallet");
  status.textContent = t("loading");
  try {
    const w = (await cachedGet("/v1/riders/me/wallet")).value;
    status.dataset.wallet = w.status;
    bind.hidden = w.status !== "unbound";
    if (w.status === "bound") {
      status.textContent = t("wallet_bound", { agreement: w.agreement_no });
      document.getElementById("sign-hint").hidden = true;
    } else if (w.status === "signing") {
      status.textContent = t("wallet_signing");
    } else {
      status.textContent = t("wallet_unbound");
    }
  } catch (e) {
    status.textContent = t("load_failed", { error: e.message });
  }
  await loadRealName();
  try {
    renderDenyList((await cachedGet("/v1/riders/me/deny-list")).value);
  } catch (_) {
    // Shown as not loaded by the status line above.
  }
  try {
    charges = (await cachedGet("/v1/riders/me/charges")).value;
    renderArrears();
  } catch (_) {
    // Shown as not loaded by the status line above.
  }
}

/** What the wallet provider last said of the bound wallet account's real name. */
let realName = null;

function realNameText(name, bound) {
  if (!bound) return t("real_name_unbound");
  if (name.status === "certified") return t("real_name_certified", { time: when(name.checked_at_ms) });
  if (name.status === "not_certified") {
    return t("real_name_not_certified", { time: when(name.checked_at_ms) });
  }
  return t("real_name_unchecked");
}

async function loadRealName() {
  const status = document.getElementById("real-name-status");
  const bound = document.getElementById("wallet-status").dataset.wallet === "bound";
  try {
    realName = (await cachedGet("/v1/riders/me/real-name")).value;
    status.textContent = realNameText(realName, bound);
    status.dataset.realName = realName.status;
    document.getElementById("real-name-form").hidden = !bound || realName.status === "certified";
  } catch (e) {
    status.textContent = t("load_failed", { error: e.message });
  }
}

async function checkRealName(event) {
  event.preventDefault();
  const status = document.getElementById("real-name-status");
  const logon = document.getElementById("real-name-logon").value.trim();
  try {
    realName = await api("POST", "/v1/riders/me/real-name", { logon_id: logon });
    status.textContent = realNameText(realName, true);
    status.dataset.realName = realName.status;
    document.getElementById("real-name-form").hidden = realName.status === "certified";
  } catch (e) {
    status.textContent =
      e.code === "not_your_wallet" ? t("real_name_not_yours") : t("load_failed", { error: e.message });
  }
}

/** Whether gates refuse this rider's codes, and each reason (the operator's words, or ours for
 * arrears). */
function renderDenyList(state) {
  const p = document.getElementById("deny-status");
  const ul = document.getElementById("deny-entries");
  p.dataset.denied = String(state.denied);
  p.textContent = t(state.denied ? "gates_refuse" : "gates_accept");
  p.classList.toggle("error", state.denied);
  ul.replaceChildren();
  for (const e of state.entries) {
    const reason = e.reason === "arrears" ? t("deny_reason_arrears") : e.reason;
    const values = { time: when(e.added_at_ms), reason, id: e.subject_id };
    ul.append(el("li", { "data-kind": e.kind, text: t("deny_" + e.kind, values) }));
  }
}

function renderArrears() {
  const failed = charges.filter((c) => c.status === "failed");
  const p = document.getElementById("arrears");
  document.getElementById("repay").hidden = failed.length === 0;
  p.dataset.owed = String(failed.length);
  if (failed.length === 0) {
    p.textContent = t("arrears_none");
    return;
  }
  const total = failed.reduce((sum, c) => sum + c.amount_minor, 0);
  p.textContent = t("arrears_owed", { amount: money(total, failed[0].currency), count: failed.length });
}

async function bindWallet() {
  const status = document.getElementById("wallet-status");
  try {
    const signing = await api("POST", "/v1/riders/me/wallet/signing");
    // Only a web address becomes a link (never a javascript: or data: URL).
    if (!/^https?:\/\//i.test(signing.sign_url)) throw new Error("unexpected signing link");
    const link = document.getElementById("sign-link");
    link.href = signing.sign_url;
    document.getElementById("sign-hint").hidden = false;
    document.getElementById("bind-wallet").hidden = true;
    status.textContent = t("wallet_signing");
    link.focus();
  } catch (e) {
    status.textContent = t("load_failed", { error: e.message });
  }
}

async function repay() {
  const p = document.getElementById("arrears");
  try {
    const r = await api("POST", "/v1/riders/me/arrears/retry");
    p.textContent = t("repay_done", { count: r.requeued });
  } catch (e) {
    p.textContent = t("load_failed", { error: e.message });
  }
}

// ---------------------------------------------------------------- tickets

/** How often an unpaid order shown on screen is looked at again. */
const TICKET_POLL_MS = 2000;
/** The idempotency key of the order being placed: kept until the gateway answers, so a retry
 * after a lost answer is the same order, never a second one. */
let pendingTicketRequest = null;
let ticketPoll = null;
let ticketStations = [];
/** The order last shown under the form (redrawn in another language). */
let shownTicketOrder = null;

function loadTickets() {
  return busy("view-tickets", loadTicketsNow);
}

async function loadTicketsNow() {
  const note = document.getElementById("tickets-real-name");
  const buy = document.getElementById("ticket-buy");
  try {
    realName = (await cachedGet("/v1/riders/me/real-name")).value;
    const blocked = realName.required_for_tickets && realName.status !== "certified";
    note.textContent = t(blocked ? "tickets_need_real_name" : "tickets_real_name_ok");
    note.dataset.realName = realName.status;
    buy.disabled = blocked;
  } catch (e) {
    note.textContent = t("load_failed", { error: e.message });
  }
  const select = document.getElementById("ticket-network");
  if (!select.options.length) {
    const operators = await readNetworks(cachedGet, note, t);
    const metro = (operators || []).filter((o) => o.mode === "metro");
    select.replaceChildren(...metro.map((o) => el("option", { value: o.operator_id, text: o.operator_id })));
    if (metro.length) await loadTicketStations(metro[0].operator_id);
  }
  await renderTickets();
}

/** The network's stations, for both choices (their names as the board shows them). */
async function loadTicketStations(operatorId) {
  try {
    const path = "/v1/flow/stations?operator_id=" + encodeURIComponent(operatorId);
    ticketStations = (await cachedGet(path)).value.stations;
  } catch (e) {
    ticketStations = [];
    document.getElementById("ticket-status").textContent = t("load_failed", { error: e.message });
  }
  const options = () =>
    ticketStations.map((s) => el("option", { value: s.location_id, text: s.name }));
  document.getElementById("ticket-from").replaceChildren(...options());
  document.getElementById("ticket-to").replaceChildren(...options());
  if (ticketStations.length > 1) document.getElementById("ticket-to").selectedIndex = 1;
}

function stationName(id) {
  const s = ticketStations.find((x) => x.location_id === id);
  return s ? s.name : id;
}

function ticketLine(o) {
  const status = t("ticket_status_" + o.status, { code: o.ticket_code || "" });
  return t("ticket_line", {
    from: stationName(o.origin_id),
    to: stationName(o.destination_id),
    amount: moneyView(o.amount),
    when: when(o.created_at_ms),
    status,
  });
}

async function renderTickets() {
  const status = document.getElementById("tickets-status");
  const ul = document.getElementById("tickets");
  try {
    const orders = (await cachedGet("/v1/riders/me/tickets")).value.orders;
    ul.replaceChildren(
      ...orders.map((o) =>
        el("li", { "data-order": o.order_id, "data-status": o.status, text: ticketLine(o) }),
      ),
    );
    status.textContent = orders.length ? "" : t("tickets_none");
  } catch (e) {
    status.textContent = t("load_failed", { error: e.message });
  }
}

async function buyTicket(event) {
  event.preventDefault();
  const status = document.getElementById("ticket-status");
  const from = document.getElementById("ticket-from").value;
  const to = document.getElementById("ticket-to").value;
  if (!from || from === to) {
    status.textContent = t("ticket_same_station");
    return;
  }
  pendingTicketRequest = pendingTicketRequest || "app-" + crypto.randomUUID();
  const body = {
    operator_id: document.getElementById("ticket-network").value,
    origin_id: from,
    destination_id: to,
    request_id: pendingTicketRequest,
  };
  try {
    const order = await api("POST", "/v1/riders/me/tickets", body);
    pendingTicketRequest = null;
    showTicketOrder(order);
    await renderTickets();
  } catch (e) {
    // Refused: the next try is a new order. Not answered: the same one.
    if (!(e instanceof NetworkError)) pendingTicketRequest = null;
    const known = { real_name_required: "tickets_need_real_name", too_many_pending_tickets: "tickets_too_many" };
    status.textContent = known[e.code] ? t(known[e.code]) : t("load_failed", { error: e.message });
  }
}

/** Shows an order: its payment QR while it waits, its code once paid. */
function showTicketOrder(order) {
  const status = document.getElementById("ticket-status");
  const pay = document.getElementById("ticket-pay");
  const values = {
    from: stationName(order.origin_id),
    to: stationName(order.destination_id),
    amount: moneyView(order.amount),
  };
  status.dataset.order = order.order_id;
  status.dataset.status = order.status;
  shownTicketOrder = order;
  stopTicketPoll();
  if (order.status === "paid") {
    pay.hidden = true;
    status.textContent = t("ticket_paid", { code: order.ticket_code });
    return;
  }
  if (order.status !== "pending" || !order.qr_payload) {
    pay.hidden = true;
    status.textContent = ticketLine(order);
    return;
  }
  status.textContent = t("ticket_ordered", { ...values, time: clock(order.expires_at_ms, false) });
  const canvas = document.getElementById("ticket-qr");
  drawQr(canvas, new TextEncoder().encode(order.qr_payload));
  canvas.dataset.payload = order.qr_payload;
  canvas.setAttribute("aria-label", t("ticket_qr_label", values));
  const link = document.getElementById("ticket-pay-link");
  // Only a web address becomes a link (never a javascript: or data: URL).
  if (/^https?:\/\//i.test(order.qr_payload)) link.href = order.qr_payload;
  link.parentElement.hidden = !/^https?:\/\//i.test(order.qr_payload);
  pay.hidden = false;
  canvas.scrollIntoView({ block: "center" });
  ticketPoll = setInterval(async () => {
    try {
      const now = await api("GET", "/v1/riders/me/tickets/" + encodeURIComponent(order.order_id));
      if (now.status !== "pending") {
        showTicketOrder(now);
        await renderTickets();
      }
    } catch (_) {
      // Offline for a moment: the next look will tell.
    }
  }, TICKET_POLL_MS);
}

function stopTicketPoll() {
  if (ticketPoll) clearInterval(ticketPoll);
  ticketPoll = null;
}

// ---------------------------------------------------------------- receipt

async function showReceipt(chargeId) {
  const dl = document.getElementById("receipt");
  dl.replaceChildren();
  try {
    charges = (await cachedGet("/v1/riders/me/charges")).value;
    if (!journeys.length) journeys = (await cachedGet("/v1/riders/me/journeys?limit=100")).value.journeys;
  } catch (_) {
    // Whatever we have.
  }
  const c = charges.find((x) => x.charge_id === chargeId);
  if (!c) {
    dl.append(el("dt", { text: t("receipt_missing") }));
    return;
  }
  const j = journeys.find((x) => x.journey_id === c.journey_id);
  const rows = [
    ["receipt_rider", device.riderId],
    ["receipt_charge", c.charge_id],
    ["receipt_operator", c.operator_id],
    ["receipt_journey", j ? routeName(j) + ", " + when(j.entry_at_ms) : c.journey_id || "—"],
    ["receipt_day", c.business_day],
    ["receipt_amount", money(c.amount_minor, c.currency)],
    ["receipt_status", chargeLabel(c)],
    ["receipt_paid_at", c.captured_at_ms ? when(c.captured_at_ms) : "—"],
    ["receipt_trade", c.provider_trade_no || "—"],
    ["receipt_printed", new Date().toLocaleString(locale())],
  ];
  for (const [key, value] of rows) dl.append(el("dt", { text: t(key) }), el("dd", { text: value }));
}

// ---------------------------------------------------------------- station board (live flow)

let stationsFeed = null;
let stationsAnswer = null;
/** Where the answer shown came from: "live" (the stream), "read" (one fresh read), "cached"
 * (the phone's copy, offline) or "reconnecting" (the stream broke; the last answer stays), and
 * when it was current. */
let stationsSeen = { mode: "read", at: 0 };

/** The networks to choose from, and the one chosen (kept on the phone). */
async function openStations() {
  const select = document.getElementById("stations-network");
  const status = document.getElementById("stations-status");
  const operators = await readNetworks(cachedGet, status, t);
  if (!operators) return;
  const chosen = (await dbGet("flow-operator")) || null;
  const metro = operators.find((o) => o.mode === "metro");
  const pick = operators.some((o) => o.operator_id === chosen)
    ? chosen
    : (metro || operators[0]).operator_id;
  select.replaceChildren(
    ...operators.map((o) => el("option", { value: o.operator_id, text: o.operator_id })),
  );
  select.value = pick;
  followOperator(pick);
}

function followOperator(operatorId) {
  stopStations();
  stationsAnswer = null;
  document.getElementById("stations").replaceChildren();
  const view = document.getElementById("view-stations");
  const status = document.getElementById("stations-status");
  view.setAttribute("aria-busy", "true");
  status.textContent = t("loading");
  stationsFeed = followStations(
    operatorId,
    cachedGet,
    (answer, seen) => {
      stationsAnswer = answer;
      view.removeAttribute("aria-busy");
      if (seen.live) {
        stationsSeen = { mode: "live", at: Date.now() };
        // Kept as a read's answer is, for a phone that goes offline next.
        dbPut("cache:/v1/flow/stations?operator_id=" + encodeURIComponent(operatorId), {
          value: answer,
          at: Date.now(),
        }).catch(() => {});
      } else if (seen.at) {
        stationsSeen = { mode: "cached", at: seen.at };
      } else {
        stationsSeen = { mode: "read", at: Date.now() };
      }
      renderStations();
    },
    (state, error) => {
      if (state === "failed" && !stationsAnswer) {
        view.removeAttribute("aria-busy");
        status.textContent = t("load_failed", { error: error.message });
      } else if (state === "reconnecting" && stationsAnswer && stationsSeen.mode === "live") {
        stationsSeen = { mode: "reconnecting", at: stationsSeen.at };
        renderStations();
      }
    },
  );
}

function stopStations() {
  if (stationsFeed) stationsFeed.stop();
  stationsFeed = null;
}

const STATIONS_STATUS = {
  live: "stations_live",
  read: "stations_updated",
  cached: "stations_cached",
  reconnecting: "stations_reconnecting",
};

function renderStations() {
  const answer = stationsAnswer;
  if (!answer) return;
  // The status line is a live region: it changes (and is announced) only when the board's
  // source changes; the time of each live answer goes to a line that is not announced.
  const status = document.getElementById("stations-status");
  const said = t(STATIONS_STATUS[stationsSeen.mode], { time: clock(stationsSeen.at) });
  if (status.textContent !== said) status.textContent = said;
  status.dataset.mode = stationsSeen.mode;
  document.getElementById("stations-time").textContent =
    stationsSeen.mode === "live" ? t("stations_updated", { time: clock(stationsSeen.at) }) : "";
  const body = document.getElementById("stations");
  body.replaceChildren();
  for (const s of answer.stations) {
    body.append(
      el(
        "tr",
        {
          "data-station": s.location_id,
          "data-percent": String(s.percent_of_usual),
          "data-entries": String(s.entries),
          "data-exits": String(s.exits),
        },
        el("th", { scope: "row", text: s.name }),
        busyCell(s, t),
        el(
          "td",
          { class: "num" },
          el("span", { text: t("in_count", { count: s.entries }) }),
          el("span", { text: t("out_count", { count: s.exits }) }),
        ),
        delayCell(s, t),
      ),
    );
  }
}

// ---------------------------------------------------------------- views

const VIEWS = ["enrol", "code", "journeys", "wallet", "tickets", "stations", "receipt"];
/** Views a phone that is not set up may open (the board is public). */
const PUBLIC_VIEWS = ["enrol", "stations"];

function route() {
  const hash = location.hash.replace(/^#/, "");
  let [name, arg] = hash.split("/");
  if (!device) name = PUBLIC_VIEWS.includes(name) ? name : "enrol";
  else if (!VIEWS.includes(name) || name === "enrol") name = "code";
  for (const v of VIEWS) document.getElementById("view-" + v).hidden = v !== name;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === "#" + name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  // Without a device the menu offers the board only (and the set-up view through its link).
  for (const a of document.querySelectorAll("nav a")) {
    a.parentElement.hidden = !device && a.getAttribute("href") !== "#stations";
  }
  document.querySelector("nav").hidden = !device && name !== "stations";
  if (name === "code") startCode();
  else stopCode();
  if (name === "journeys") loadJourneys();
  if (name === "wallet") loadWallet();
  if (name === "tickets") loadTickets();
  else stopTicketPoll();
  if (name === "stations") openStations();
  else stopStations();
  if (name === "receipt") showReceipt(arg || "");
  document.body.dataset.view = name;
}

function rerender() {
  setLanguage(language());
  renderNotices();
  if (device && !document.getElementById("view-code").hidden) tick();
  if (!document.getElementById("view-journeys").hidden) {
    renderJourneys();
  }
  if (!document.getElementById("view-stations").hidden) renderStations();
  if (!document.getElementById("view-tickets").hidden) {
    loadTickets();
    if (shownTicketOrder) showTicketOrder(shownTicketOrder);
  }
}

async function main() {
  setLanguage(initialLanguage());
  document.getElementById("lang").addEventListener("click", () => {
    setLanguage(language() === "en" ? "zh" : "en");
    rerender();
  });
  document.getElementById("enrol").addEventListener("click", enrol);
  document.getElementById("refresh-journeys").addEventListener("click", loadJourneys);
  document.getElementById("dispute-form").addEventListener("submit", sendDispute);
  document.getElementById("dispute-cancel").addEventListener("click", closeDispute);
  document.getElementById("bind-wallet").addEventListener("click", bindWallet);
  document.getElementById("refresh-wallet").addEventListener("click", loadWallet);
  document.getElementById("repay").addEventListener("click", repay);
  document.getElementById("real-name-form").addEventListener("submit", checkRealName);
  document.getElementById("ticket-form").addEventListener("submit", buyTicket);
  document.getElementById("ticket-network").addEventListener("change", (event) =>
    loadTicketStations(event.target.value),
  );
  document.getElementById("print").addEventListener("click", () => window.print());
  document.getElementById("dismiss-notices").addEventListener("click", dismissNotices);
  document.getElementById("stations-network").addEventListener("change", (event) => {
    const operatorId = event.target.value;
    dbPut("flow-operator", operatorId).catch(() => {});
    followOperator(operatorId);
  });
  window.addEventListener("hashchange", () => {
    route();
    document.getElementById("main").focus();
  });
  window.addEventListener("online", () => setOnline(true));
  window.addEventListener("offline", () => setOnline(false));
  if (!navigator.onLine) setOnline(false);
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/app/sw.js", { scope: "/app/" }).catch(() => {
      // No worker (an untrusted certificate, a private window): the app still works online.
    });
  }
  device = (await dbGet("device")) || null;
  route();
  if (device) renewIfDue();
  await renderNotices();
  watch();
  document.body.dataset.ready = "1";
}

main();
