// Small DOM and formatting helpers. Text always goes in as text nodes, never as HTML.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function duration(milliseconds) {
  const seconds = Math.max(0, Math.floor(milliseconds / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${seconds % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function clock(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function rupees(paise) {
  return `₹${(paise / 100).toFixed(2)}`;
}

export function metres(value) {
  return value >= 1000 ? `${(value / 1000).toFixed(1)} km` : `${Math.round(value)} m`;
}

export function shortId(id) {
  return id ? id.slice(0, 8) : "";
}

export const STATUS_LABELS = {
  created: "Created",
  payment_pending: "Payment pending",
  searching_rider: "Searching for a rider",
  rider_assigned: "Rider assigned",
  at_pickup: "Rider at pickup",
  picked_up: "Picked up",
  at_dropoff: "Rider at drop",
  delivered: "Delivered",
  cancelled: "Cancelled",
  failed: "Failed",
};

export function statusLabel(status) {
  return STATUS_LABELS[status] || status;
}
