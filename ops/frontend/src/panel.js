// The order panel: one order's events, offers and payments, and the manual assign.
// Assigning and unassigning call the console's JSON endpoints, which use the same services as
// the admin; whatever they refuse is shown here, in their words.

import { clock, duration, el, metres, rupees, shortId, statusLabel } from "./dom.js";

export class OrderPanel {
  constructor(element, { orderUrl, csrfToken, now, onClose, onLoaded }) {
    this.element = element;
    this.orderUrl = orderUrl;
    this.csrfToken = csrfToken;
    this.now = now;
    this.onClose = onClose;
    this.onLoaded = onLoaded;
    this.orderId = null;
    this.message = null;
  }

  async open(orderId) {
    if (this.orderId !== orderId) this.message = null;
    this.orderId = orderId;
    this.element.hidden = false;
    if (!this.detail || this.detail.order.id !== orderId) {
      this.element.replaceChildren(el("p", { class: "muted" }, "Loading…"));
    }
    await this.reload();
  }

  close() {
    this.orderId = null;
    this.detail = null;
    this.element.hidden = true;
    this.element.replaceChildren();
    this.onClose();
  }

  async reload() {
    const orderId = this.orderId;
    if (!orderId) return;
    try {
      const response = await fetch(this.orderUrl(orderId), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      const body = await response.json();
      if (orderId !== this.orderId) return; // another order was opened meanwhile
      if (!response.ok) throw new Error(errorText(body, response.status));
      this.detail = body;
      this.render();
      this.onLoaded(body);
    } catch (error) {
      if (orderId !== this.orderId) return;
      this.message = { kind: "error", text: `Could not load the order: ${error.message}` };
      this.render();
    }
  }

  async act(path, payload, done) {
    this.busy = true;
    this.render();
    try {
      const response = await fetch(`${this.orderUrl(this.orderId)}${path}/`, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          Accept: "application/json",
          "Content-Type": "application/json",
          "X-CSRFToken": this.csrfToken,
        },
        body: JSON.stringify(payload),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        this.message = { kind: "error", text: errorText(body, response.status) };
      } else {
        this.detail = body;
        this.message = { kind: "success", text: done(body) };
        this.onLoaded(body);
      }
    } catch (error) {
      this.message = { kind: "error", text: `The request failed: ${error.message}` };
    } finally {
      this.busy = false;
      this.render();
    }
  }

  assign(riderId) {
    this.act("assign", { rider_id: riderId }, (detail) => `Assigned to ${detail.order.rider_name}.`);
  }

  unassign() {
    this.act("unassign", {}, () => "Unassigned: the order searches for a rider again.");
  }

  render() {
    if (!this.orderId) return;
    const detail = this.detail;
    const children = [
      el(
        "div",
        { class: "panel__head" },
        el("h2", {}, `Order ${shortId(this.orderId)}`),
        el("button", { type: "button", class: "link", onclick: () => this.close(), "aria-label": "Close" }, "×"),
      ),
    ];
    if (this.message) {
      children.push(
        el("p", { id: "ops-panel-message", class: `message message--${this.message.kind}`, role: "alert" }, this.message.text),
      );
    }
    if (detail && detail.order.id === this.orderId) {
      children.push(this.summary(detail.order), this.actions(detail));
      children.push(this.section("Events", detail.events, eventsTable, "needs orders.view_orderevent"));
      children.push(this.section("Offers", detail.offers, offersTable, "needs delivery.view_offer"));
      children.push(this.section("Payments", detail.payments, paymentsTable, "needs payments.view_payment"));
    }
    this.element.replaceChildren(...children);
    this.element.dataset.orderId = this.orderId;
  }

  summary(order) {
    const waiting =
      order.status === "searching_rider" && order.searching_since
        ? ` for ${duration(this.now() - Date.parse(order.searching_since))}`
        : "";
    return el(
      "dl",
      { class: "summary" },
      el("dt", {}, "Status"),
      el("dd", { "data-field": "status" }, statusLabel(order.status) + waiting),
      el("dt", {}, "Pickup"),
      el("dd", {}, order.pickup.address),
      el("dt", {}, "Drop"),
      el("dd", {}, order.drop.address),
      el("dt", {}, "Rider"),
      el("dd", { "data-field": "rider" }, order.rider_name || "–"),
      el("dt", {}, "Amount"),
      el("dd", {}, `${rupees(order.amount_paise)} · ${order.payment_method} · ${order.payment_status}`),
      el("dt", {}, "Booked"),
      el("dd", {}, clock(order.created_at)),
    );
  }

  actions(detail) {
    const box = el("div", { class: "actions" });
    if (detail.can_assign) {
      if (detail.candidates.length === 0) {
        box.append(el("p", { class: "muted" }, "No online, free rider near the pickup to assign."));
      } else {
        const select = el(
          "select",
          { id: "ops-assign-rider", "aria-label": "Rider to assign" },
          detail.candidates.map((rider) =>
            el(
              "option",
              { value: rider.id },
              `${rider.name}: ${metres(rider.distance_m)} away, seen ${
                rider.at ? duration(this.now() - Date.parse(rider.at)) : "never"
              } ago${rider.stale ? " (stale)" : ""}`,
            ),
          ),
        );
        const button = el(
          "button",
          { type: "button", id: "ops-assign", disabled: this.busy, onclick: () => this.assign(select.value) },
          "Assign",
        );
        box.append(el("label", { for: "ops-assign-rider" }, "Assign by hand"), select, button);
      }
    }
    if (detail.can_unassign) {
      box.append(
        el("button", { type: "button", id: "ops-unassign", disabled: this.busy, onclick: () => this.unassign() }, "Unassign the rider"),
      );
    }
    return box;
  }

  section(title, rows, table, hiddenReason) {
    const section = el("section", { class: "panel__section" }, el("h3", {}, title));
    if (rows === null) section.append(el("p", { class: "muted" }, `Hidden: ${hiddenReason}.`));
    else if (rows.length === 0) section.append(el("p", { class: "muted" }, "None."));
    else section.append(table(rows));
    return section;
  }
}

function errorText(body, status) {
  const error = body && body.error;
  if (!error) return `HTTP ${status}`;
  const fields = error.fields
    ? Object.entries(error.fields)
        .map(([name, messages]) => `${name}: ${[].concat(messages).join(" ")}`)
        .join("; ")
    : "";
  return fields ? `${error.message} (${fields})` : error.message;
}

function table(headings, rows) {
  return el(
    "table",
    {},
    el("thead", {}, el("tr", {}, headings.map((heading) => el("th", {}, heading)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((cell) => el("td", {}, cell))))),
  );
}

function eventsTable(events) {
  return table(
    ["Time", "Change", "By", "Reason"],
    events.map((event) => [
      clock(event.at),
      `${event.from_status ? statusLabel(event.from_status) + " → " : ""}${statusLabel(event.to_status)}`,
      event.actor_name,
      event.reason || "",
    ]),
  );
}

function offersTable(offers) {
  return table(
    ["Round", "Rider", "Distance", "Outcome", "Offered"],
    offers.map((offer) => [
      offer.round === 0 ? "by hand" : String(offer.round),
      offer.rider_name,
      metres(offer.distance_m),
      offer.withdrawn_reason ? `${offer.status} (${offer.withdrawn_reason})` : offer.status,
      clock(offer.offered_at),
    ]),
  );
}

function paymentsTable(payments) {
  return table(
    ["Razorpay order", "Amount", "Status", "Refunds"],
    payments.map((payment) => [
      payment.razorpay_order_id,
      rupees(payment.amount_paise),
      payment.last_error ? `${payment.status}: ${payment.last_error}` : payment.status,
      payment.refunds === null
        ? "hidden"
        : payment.refunds.map((refund) => `${refund.status}${refund.last_error ? ` (${refund.last_error})` : ""}`).join(", ") ||
          "none",
    ]),
  );
}
