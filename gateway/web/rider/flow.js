// Live passenger flow for the rider app's station board and the operator's flow page: what a
// station's "percent of usual" and its next train's delay mean in words, and a live feed of the
// stations answer (the gateway's Server-Sent Events stream, docs/flow.md) that falls back to
// single reads and keeps the last answer for when the network is gone.

import { el } from "./dom.js";

/** The words for how busy a station is, by its percentage of the usual level for that weekday
 * and time (docs/rider-app.md, "Station board"). Without a percentage: nobody is usually there
 * now (`usual` 0), or there is no history to compare with (`usual` null). */
export const LEVELS = [
  { below: 60, key: "level_quiet" },
  { below: 120, key: "level_usual" },
  { below: 160, key: "level_busy" },
  { below: Infinity, key: "level_very_busy" },
];

export function levelKey(percent, usual) {
  if (percent === null || percent === undefined) {
    return usual === 0 ? "level_usually_empty" : "level_unknown";
  }
  return LEVELS.find((l) => percent < l.below).key;
}

/** Meters read 0–200 % of the usual level (a busier station shows a full bar). */
export const METER_MAX_PERCENT = 200;

/** A station's "how busy" cell: a meter (0–200 %, labelled) and the words, in the language of
 * `t`; the level is the cell's class, so colour repeats what the words say. */
export function busyCell(station, t) {
  const level = levelKey(station.percent_of_usual, station.usual);
  const td = el("td", { class: "busy " + level });
  const percent = station.percent_of_usual;
  if (percent === null || percent === undefined) {
    td.append(el("span", { text: t(level) }));
    return td;
  }
  const meter = document.createElement("meter");
  for (const [k, v] of Object.entries({ min: 0, max: METER_MAX_PERCENT, low: 60, high: 120, optimum: 0 })) {
    meter.setAttribute(k, String(v));
  }
  meter.value = Math.min(percent, METER_MAX_PERCENT);
  meter.setAttribute("aria-label", t("busy_meter", { station: station.name, percent }));
  td.append(meter, el("span", { text: t(level) + " · " + t("busy_percent", { percent }) }));
  return td;
}

/** A station's next-train cell ("late" as its class when the train is late). */
export function delayCell(station, t) {
  const delay = delayText(station.delay_s);
  const td = el("td", {}, el("span", { text: t(delay.key, delay.values) }));
  if (delay.key === "delay_late") td.className = "late";
  return td;
}

/** A delay within this many seconds either way is "on time" (as timetables round). */
export const ON_TIME_S = 60;

/** The i18n key and values for a station's next-train delay (`null`: no feed for it). */
export function delayText(delayS) {
  if (delayS === null || delayS === undefined) return { key: "delay_none", values: {} };
  if (Math.abs(delayS) < ON_TIME_S) return { key: "delay_on_time", values: {} };
  const minutes = Math.round(Math.abs(delayS) / 60);
  return { key: delayS > 0 ? "delay_late" : "delay_early", values: { minutes } };
}

/** The networks a board offers (`GET /v1/flow/operators` through `read`, which answers
 * `{value}`), or null after saying in `status` why there are none to show. */
export async function readNetworks(read, status, t) {
  try {
    const operators = (await read("/v1/flow/operators")).value.operators;
    if (operators.length > 0) return operators;
    status.textContent = t("stations_none");
  } catch (e) {
    status.textContent = t("load_failed", { error: e.message });
  }
  return null;
}

/** How long to wait for the stream's first event before reading the stations once instead. */
const FIRST_EVENT_MS = 4000;

/**
 * Follows one operator's stations: `onSnapshot(answer, {live, at})` with each answer. `read()`
 * fetches one answer (the caller's cached GET, so an offline phone gets the last one and its
 * time); the event stream then pushes a fresh one every few seconds. When the stream breaks,
 * the browser reconnects by itself (EventSource), and meanwhile a single read keeps the board
 * as fresh as the network allows. `stop()` closes everything.
 */
export function followStations(operatorId, read, onSnapshot, onState) {
  const path = "/v1/flow/stations?operator_id=" + encodeURIComponent(operatorId);
  let stopped = false;
  let source = null;
  let fallback = null;
  // A read that answers after the stream's first event is older than what is shown: dropped.
  let live = false;

  const readOnce = async () => {
    try {
      const hit = await read(path);
      if (!stopped && !live) onSnapshot(hit.value, { live: false, at: hit.at });
    } catch (e) {
      if (!stopped) onState("failed", e);
    }
  };

  readOnce();
  if (typeof EventSource === "function") {
    source = new EventSource("/v1/flow/stream?operator_id=" + encodeURIComponent(operatorId));
    source.addEventListener("stations", (event) => {
      if (stopped) return;
      clearTimeout(fallback);
      let answer;
      try {
        answer = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      live = true;
      onState("live");
      onSnapshot(answer, { live: true, at: null });
    });
    source.addEventListener("error", () => {
      if (stopped) return;
      live = false;
      onState("reconnecting");
      clearTimeout(fallback);
      fallback = setTimeout(readOnce, FIRST_EVENT_MS);
    });
  }
  return {
    stop() {
      stopped = true;
      clearTimeout(fallback);
      if (source) source.close();
    },
  };
}
