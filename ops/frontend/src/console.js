// The ops console: a snapshot from /ops/api/snapshot/, then live changes from /ws/ops/.
//
// The socket's first frame ("ready") comes once it has joined the ops group; the snapshot is
// read after it, so no change falls between the two. Frames that arrive while a snapshot is
// loading are replayed on top of it; positions only move forward in time and order statuses
// only forward in their seq, so a replayed frame older than the snapshot changes nothing. The
// snapshot is read again every RESYNC_MS and after every reconnect: the alerts depend on time
// and on rows no frame describes (payments, refunds). An "alerts_changed" frame (a refund
// failed) asks for a read at once.
//
// window.opsConsole exposes the state to tests and to curious ops in the devtools.

import "./console.css";
import { OpsMap } from "./map.js";
import { OrderPanel } from "./panel.js";
import { duration, el, rupees, shortId } from "./dom.js";

const CARRYING = new Set(["rider_assigned", "at_pickup", "picked_up", "at_dropoff"]);
const ACTIVE = new Set(["searching_rider", ...CARRYING]);
const RIDERS_ON_MAP = new Set(["online", "on_delivery"]);
const RESYNC_MS = 30_000;
const PATH_POINTS = 120;
const ALERT_LABELS = {
  no_rider: "No rider",
  rider_stationary: "Rider not moving",
  paid_not_dispatched: "Paid, not dispatched",
  refund_failed: "Refund failed",
};

class OpsConsole {
  constructor(root) {
    const data = root.dataset;
    this.config = {
      snapshotUrl: data.snapshotUrl,
      orderUrlTemplate: data.orderUrl,
      socketPath: data.socketPath,
      loginUrl: data.loginUrl,
    };
    this.riders = new Map();
    this.orders = new Map();
    this.serverAlerts = [];
    this.settings = { stale_after_seconds: 120, no_rider_after_seconds: 300 };
    this.clockOffsetMs = 0;
    this.snapshotLoads = 0;
    this.loading = null;
    this.replay = null;
    this.socketState = "connecting";
    this.retryMs = 1000;
    this.selectedOrderId = null;

    this.connection = root.querySelector("#ops-connection");
    this.counts = root.querySelector("#ops-counts");
    this.alertList = root.querySelector("#ops-alerts ul");
    this.alertCount = root.querySelector("#ops-alerts [data-count]");
    this.queueList = root.querySelector("#ops-queue ol");
    this.queueCount = root.querySelector("#ops-queue [data-count]");

    this.map = new OpsMap(root.querySelector("#ops-map"), {
      tileUrl: data.tileUrl,
      tileAttribution: data.tileAttribution,
      onOrderClick: (id) => this.openOrder(id),
      onRiderClick: (id) => this.openRidersOrder(id),
    });
    this.panel = new OrderPanel(root.querySelector("#ops-panel"), {
      orderUrl: (id) => this.config.orderUrlTemplate.replace("00000000-0000-0000-0000-000000000000", id),
      csrfToken: data.csrfToken,
      now: () => this.now(),
      onClose: () => this.select(null),
      onLoaded: (detail) => this.mergeOrder(detail.order),
    });
  }

  start() {
    this.connect();
    setInterval(() => this.tick(), 1000);
    setInterval(() => this.loadSnapshot(), RESYNC_MS);
  }

  now() {
    return Date.now() + this.clockOffsetMs;
  }

  isStale(rider) {
    return !rider.at || this.now() - Date.parse(rider.at) > this.settings.stale_after_seconds * 1000;
  }

  // --- The snapshot ------------------------------------------------------------------------

  loadSnapshot() {
    if (this.loading) return this.loading;
    this.replay = [];
    this.loading = this.fetchSnapshot().finally(() => {
      this.loading = null;
      this.replay = null;
    });
    return this.loading;
  }

  async fetchSnapshot() {
    let response;
    try {
      response = await fetch(this.config.snapshotUrl, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
    } catch {
      return; // offline for a moment: the next resync tries again
    }
    if (response.status === 401) {
      window.location.assign(this.config.loginUrl);
      return;
    }
    if (!response.ok) return;
    const snapshot = await response.json();
    this.applySnapshot(snapshot);
    for (const frame of this.replay || []) this.onFrame(frame);
  }

  applySnapshot(snapshot) {
    this.clockOffsetMs = Date.parse(snapshot.now) - Date.now();
    this.settings = snapshot.settings;
    this.serverAlerts = snapshot.alerts;
    if (this.snapshotLoads === 0) this.map.showAreas(snapshot.areas);

    const riderIds = new Set(snapshot.riders.map((rider) => rider.id));
    for (const id of [...this.riders.keys()]) if (!riderIds.has(id)) this.removeRider(id);
    for (const rider of snapshot.riders) {
      const known = this.riders.get(rider.id);
      // A frame may have moved the rider past the snapshot's read: keep the newer position.
      const keep = known && known.at && rider.at && Date.parse(known.at) > Date.parse(rider.at);
      this.riders.set(rider.id, keep ? { ...rider, lat: known.lat, lng: known.lng, at: known.at } : rider);
      this.map.upsertRider(this.riders.get(rider.id), this.isStale(this.riders.get(rider.id)));
    }

    const orderIds = new Set(snapshot.orders.map((order) => order.id));
    for (const id of [...this.orders.keys()]) if (!orderIds.has(id)) this.removeOrder(id);
    for (const order of snapshot.orders) {
      const known = this.orders.get(order.id);
      if (known && known.seq > order.seq) continue;
      this.orders.set(order.id, order);
      this.map.upsertOrder(order, order.id === this.selectedOrderId);
    }

    if (this.snapshotLoads === 0) {
      const points = [
        ...snapshot.riders.filter((rider) => rider.lat !== null).map((rider) => [rider.lat, rider.lng]),
        ...snapshot.orders.flatMap((order) => [
          [order.pickup.lat, order.pickup.lng],
          [order.drop.lat, order.drop.lng],
        ]),
      ];
      this.map.fitOnce(points);
    }
    this.snapshotLoads += 1;
    this.render();
  }

  // --- The socket --------------------------------------------------------------------------

  connect() {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${window.location.host}${this.config.socketPath}`);
    this.setConnection("connecting");
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type === "ready") {
        this.retryMs = 1000;
        this.setConnection("live");
        this.loadSnapshot();
        return;
      }
      if (this.replay) this.replay.push(frame);
      this.onFrame(frame);
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4401) {
        this.setConnection("signed-out");
        window.location.assign(this.config.loginUrl);
        return;
      }
      if (event.code === 4403) {
        this.setConnection("forbidden");
        return;
      }
      this.setConnection("reconnecting");
      setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 15_000);
    });
  }

  setConnection(state) {
    this.socketState = state;
    const words = {
      connecting: "Connecting…",
      live: "Live",
      reconnecting: "Reconnecting…",
      "signed-out": "Signed out",
      forbidden: "Not allowed",
    };
    this.connection.dataset.state = state;
    this.connection.textContent = words[state] || state;
  }

  onFrame(frame) {
    if (frame.type === "riders_moved") frame.riders.forEach((move) => this.onRiderMoved(move));
    else if (frame.type === "rider_status") this.onRiderStatus(frame);
    else if (frame.type === "order_status") this.onOrderStatus(frame);
    else if (frame.type === "alerts_changed") this.resyncSoon();
  }

  onRiderMoved(move) {
    const rider = this.riders.get(move.rider_id);
    if (!rider) return; // not at work (offline riders may still ping): not on the map
    if (rider.at && Date.parse(move.at) < Date.parse(rider.at)) return;
    Object.assign(rider, { lat: move.lat, lng: move.lng, at: move.at });
    this.map.upsertRider(rider, this.isStale(rider));
    for (const order of this.orders.values()) {
      if (order.rider_id === rider.id && CARRYING.has(order.status)) {
        order.path = [...(order.path || []), [move.lat, move.lng]].slice(-PATH_POINTS);
        this.map.upsertOrder(order, order.id === this.selectedOrderId);
      }
    }
    this.renderCounts();
  }

  onRiderStatus(frame) {
    if (!RIDERS_ON_MAP.has(frame.status)) {
      this.removeRider(frame.rider_id);
      this.renderCounts();
      return;
    }
    let rider = this.riders.get(frame.rider_id);
    if (!rider) {
      // Came to work since the snapshot: shown now, named by the next snapshot.
      rider = { id: frame.rider_id, name: "Rider", lat: null, lng: null, at: null };
      this.riders.set(rider.id, rider);
      this.resyncSoon();
    }
    rider.status = frame.status;
    if (frame.lat !== null && (!rider.at || Date.parse(frame.at) >= Date.parse(rider.at))) {
      Object.assign(rider, { lat: frame.lat, lng: frame.lng, at: frame.at });
    }
    this.map.upsertRider(rider, this.isStale(rider));
    this.renderCounts();
  }

  onOrderStatus(frame) {
    const order = this.orders.get(frame.order_id);
    if (order && frame.seq <= order.seq) return;
    if (!ACTIVE.has(frame.status)) {
      this.removeOrder(frame.order_id);
    } else if (order) {
      if (frame.status === "searching_rider" && order.status !== "searching_rider") {
        order.searching_since = frame.at;
      }
      if (frame.rider_id !== order.rider_id) {
        order.path = [];
        const rider = frame.rider_id && this.riders.get(frame.rider_id);
        order.rider_name = rider ? rider.name : null;
      }
      Object.assign(order, {
        status: frame.status,
        seq: frame.seq,
        payment_status: frame.payment_status,
        rider_id: frame.rider_id,
      });
      this.map.upsertOrder(order, order.id === this.selectedOrderId);
    } else {
      this.fetchOrder(frame.order_id); // new to this console: its addresses come from the API
    }
    if (frame.order_id === this.selectedOrderId) this.panel.reload();
    this.render();
  }

  async fetchOrder(id) {
    try {
      const response = await fetch(this.panel.orderUrl(id), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (response.ok) this.mergeOrder((await response.json()).order);
    } catch {
      // the next resync brings it
    }
  }

  // An order as the API describes it (the panel's, or a new one): newer seq wins.
  mergeOrder(summary) {
    const known = this.orders.get(summary.id);
    if (known && known.seq > summary.seq) return;
    if (!ACTIVE.has(summary.status)) {
      this.removeOrder(summary.id);
    } else {
      const order = { ...summary, path: known && known.rider_id === summary.rider_id ? known.path : [] };
      this.orders.set(order.id, order);
      this.map.upsertOrder(order, order.id === this.selectedOrderId);
    }
    this.render();
  }

  resyncSoon() {
    clearTimeout(this.resyncTimer);
    this.resyncTimer = setTimeout(() => this.loadSnapshot(), 2000);
  }

  removeRider(id) {
    this.riders.delete(id);
    this.map.removeRider(id);
  }

  removeOrder(id) {
    this.orders.delete(id);
    this.map.removeOrder(id);
  }

  // --- Selection ---------------------------------------------------------------------------

  openOrder(id) {
    this.select(id);
    const order = this.orders.get(id);
    if (order) this.map.focus(order.pickup.lat, order.pickup.lng);
    this.panel.open(id);
  }

  openRidersOrder(riderId) {
    for (const order of this.orders.values()) {
      if (order.rider_id === riderId && CARRYING.has(order.status)) {
        this.openOrder(order.id);
        return;
      }
    }
  }

  select(id) {
    const previous = this.selectedOrderId;
    this.selectedOrderId = id;
    for (const orderId of [previous, id]) {
      const order = orderId && this.orders.get(orderId);
      if (order) this.map.upsertOrder(order, orderId === id);
    }
    this.renderQueue();
  }

  // --- Rendering ---------------------------------------------------------------------------

  tick() {
    // Positions go stale and waits grow without any frame: restyle and re-count each second.
    for (const rider of this.riders.values()) this.map.upsertRider(rider, this.isStale(rider));
    this.render();
  }

  render() {
    this.renderCounts();
    this.renderQueue();
    this.renderAlerts();
  }

  queue() {
    return [...this.orders.values()]
      .filter((order) => order.status === "searching_rider")
      .sort((a, b) => Date.parse(a.searching_since) - Date.parse(b.searching_since));
  }

  renderCounts() {
    let idle = 0;
    let busy = 0;
    let stale = 0;
    for (const rider of this.riders.values()) {
      if (this.isStale(rider)) stale += 1;
      else if (rider.status === "on_delivery") busy += 1;
      else idle += 1;
    }
    const carrying = [...this.orders.values()].filter((order) => CARRYING.has(order.status)).length;
    this.counts.textContent =
      `Riders: ${idle} idle, ${busy} on a delivery, ${stale} stale · ` +
      `Orders: ${this.queue().length} waiting, ${carrying} under way`;
  }

  renderQueue() {
    const waiting = this.queue();
    const lateMs = this.settings.no_rider_after_seconds * 1000;
    const ages = waiting.map((order) => this.now() - Date.parse(order.searching_since));
    // Rebuilt only when the list changes (keeps focus and hover); otherwise the ages tick.
    const shape = waiting
      .map((order, index) => `${order.id}:${ages[index] >= lateMs}:${order.id === this.selectedOrderId}`)
      .join(",");
    if (shape === this.queueShape) {
      this.queueList.querySelectorAll(".queue-item__age").forEach((cell, index) => {
        cell.textContent = duration(ages[index]);
      });
      return;
    }
    this.queueShape = shape;
    this.queueCount.textContent = String(waiting.length);
    this.queueList.replaceChildren(
      ...waiting.map((order, index) => {
        const age = ages[index];
        return el(
          "li",
          {
            class: `queue-item${age >= lateMs ? " queue-item--late" : ""}${
              order.id === this.selectedOrderId ? " queue-item--selected" : ""
            }`,
            dataset: { orderId: order.id },
            tabindex: "0",
            onclick: () => this.openOrder(order.id),
            onkeydown: (event) => event.key === "Enter" && this.openOrder(order.id),
          },
          el("span", { class: "queue-item__age" }, duration(age)),
          el("span", { class: "queue-item__trip" }, `${order.pickup.address} → ${order.drop.address}`),
          el(
            "span",
            { class: "queue-item__meta" },
            `${shortId(order.id)} · ${rupees(order.amount_paise)} · ${order.payment_method}`,
          ),
        );
      }),
    );
  }

  alerts() {
    // The server's, minus those the live state has already answered, plus waits that crossed
    // the line since the last snapshot.
    const relevant = this.serverAlerts.filter((alert) => {
      const order = this.orders.get(alert.order_id);
      if (alert.kind === "no_rider") return order && order.status === "searching_rider";
      if (alert.kind === "rider_stationary") return order && CARRYING.has(order.status);
      if (alert.kind === "paid_not_dispatched") return !order || order.status === "searching_rider";
      return true;
    });
    const flagged = new Set(relevant.filter((a) => a.kind === "no_rider").map((a) => a.order_id));
    const lateMs = this.settings.no_rider_after_seconds * 1000;
    for (const order of this.queue()) {
      const age = this.now() - Date.parse(order.searching_since);
      if (age >= lateMs && !flagged.has(order.id)) {
        relevant.push({
          kind: "no_rider",
          order_id: order.id,
          since: order.searching_since,
          detail: `No rider for ${Math.floor(age / 60000)} min`,
        });
      }
    }
    return relevant.sort((a, b) => Date.parse(a.since) - Date.parse(b.since));
  }

  renderAlerts() {
    const alerts = this.alerts();
    const shape = alerts.map((alert) => `${alert.kind}:${alert.order_id}:${alert.detail}`).join(",");
    if (shape === this.alertsShape) return;
    this.alertsShape = shape;
    this.alertCount.textContent = String(alerts.length);
    this.alertList.replaceChildren(
      ...alerts.map((alert) =>
        el(
          "li",
          {
            class: `alert alert--${alert.kind}`,
            dataset: { orderId: alert.order_id, kind: alert.kind },
            tabindex: "0",
            onclick: () => this.openOrder(alert.order_id),
          },
          el("strong", {}, ALERT_LABELS[alert.kind] || alert.kind),
          el("span", {}, ` ${alert.detail}`),
          el("span", { class: "alert__order" }, ` · order ${shortId(alert.order_id)}`),
        ),
      ),
    );
  }
}

function boot() {
  const root = document.getElementById("ops-console");
  if (!root) return;
  const opsConsole = new OpsConsole(root);
  window.opsConsole = {
    state: opsConsole,
    riderLatLng: (id) => opsConsole.map.riderLatLng(id),
    queuedOrderIds: () => opsConsole.queue().map((order) => order.id),
    snapshotLoads: () => opsConsole.snapshotLoads,
    socketState: () => opsConsole.socketState,
  };
  opsConsole.start();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
else boot();
