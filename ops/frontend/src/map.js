// The map: service areas, riders and active orders, drawn as vector shapes (SVG), so that
// everything shows even when no map tile loads (no internet, tile server down).

import L from "leaflet";

import { el } from "./dom.js";

const COLORS = {
  idle: "#1a9850",
  on_delivery: "#2166ac",
  stale: "#9a9a9a",
  pickup: "#f28e2b",
  drop: "#b2182b",
  trip: "#6b6b6b",
  path: "#2166ac",
  area: "#5e3c99",
};
const DEFAULT_CENTRE = [12.9716, 77.5946]; // Bengaluru, until the snapshot says otherwise

export function riderLook(rider, stale) {
  if (stale) return "stale";
  return rider.status === "on_delivery" ? "on_delivery" : "idle";
}

export class OpsMap {
  constructor(element, { tileUrl, tileAttribution, onOrderClick, onRiderClick }) {
    this.onOrderClick = onOrderClick;
    this.onRiderClick = onRiderClick;
    this.map = L.map(element, { zoomControl: true }).setView(DEFAULT_CENTRE, 12);
    L.control.scale({ imperial: false }).addTo(this.map);
    if (tileUrl) {
      const tiles = L.tileLayer(tileUrl, { attribution: tileAttribution, maxZoom: 19 });
      tiles.on("tileerror", () => this.noteTilesUnavailable());
      tiles.addTo(this.map);
    } else {
      this.noteTilesUnavailable();
    }
    // Riders above orders above areas, however often each is redrawn.
    for (const [pane, zIndex] of [["areas", 405], ["orders", 410], ["riders", 420]]) {
      this.map.createPane(pane).style.zIndex = String(zIndex);
    }
    this.areas = L.layerGroup().addTo(this.map);
    this.orderLayer = L.layerGroup().addTo(this.map);
    this.riderLayer = L.layerGroup().addTo(this.map);
    this.riderMarkers = new Map();
    this.orderShapes = new Map();
    this.fitted = false;
  }

  noteTilesUnavailable() {
    if (this.tilesNote) return;
    this.tilesNote = L.control({ position: "bottomleft" });
    this.tilesNote.onAdd = () => {
      const note = L.DomUtil.create("div", "tiles-note");
      note.textContent = "Map tiles unavailable: positions shown on a plain background.";
      return note;
    };
    this.tilesNote.addTo(this.map);
  }

  showAreas(areas) {
    this.areas.clearLayers();
    for (const area of areas) {
      L.geoJSON(area.geometry, {
        style: { color: COLORS.area, weight: 1.5, fill: true, fillOpacity: 0.04, dashArray: "6 4" },
        interactive: false,
        pane: "areas",
      }).addTo(this.areas);
    }
  }

  // The first time there is something to show, frame it; never again (ops pan and zoom).
  fitOnce(points) {
    if (this.fitted || points.length === 0) return;
    this.fitted = true;
    this.map.fitBounds(L.latLngBounds(points).pad(0.15), { maxZoom: 15 });
  }

  upsertRider(rider, stale) {
    let marker = this.riderMarkers.get(rider.id);
    if (rider.lat === null || rider.lat === undefined) {
      this.removeRider(rider.id);
      return;
    }
    const look = riderLook(rider, stale);
    // Called for every rider every second (positions go stale): touch the SVG only on change.
    const drawn = `${rider.lat},${rider.lng},${look},${rider.name}`;
    if (marker && marker.drawn === drawn) return;
    const style = { radius: 7, weight: 2, color: "#ffffff", fillColor: COLORS[look], fillOpacity: 1, pane: "riders" };
    if (!marker) {
      marker = L.circleMarker([rider.lat, rider.lng], style).addTo(this.riderLayer);
      marker.on("click", () => this.onRiderClick(rider.id));
      marker.bindTooltip("", { direction: "top", offset: [0, -6] });
      this.riderMarkers.set(rider.id, marker);
    } else {
      marker.setLatLng([rider.lat, rider.lng]);
      marker.setStyle(style);
    }
    marker.drawn = drawn;
    const element = marker.getElement();
    if (element) {
      element.dataset.riderId = rider.id;
      element.dataset.look = look;
      element.classList.add("rider-marker");
    }
    // An element, never a string: Leaflet inserts string content as HTML, and names are typed
    // by riders.
    marker.setTooltipContent(el("span", {}, `${rider.name} · ${look.replace("_", " ")}`));
  }

  removeRider(id) {
    const marker = this.riderMarkers.get(id);
    if (marker) {
      marker.remove();
      this.riderMarkers.delete(id);
    }
  }

  riderLatLng(id) {
    const marker = this.riderMarkers.get(id);
    if (!marker) return null;
    const { lat, lng } = marker.getLatLng();
    return { lat, lng };
  }

  upsertOrder(order, selected) {
    this.removeOrder(order.id);
    const pickup = [order.pickup.lat, order.pickup.lng];
    const drop = [order.drop.lat, order.drop.lng];
    const weight = selected ? 4 : 2;
    const radius = selected ? 8 : 6;
    const shapes = [
      L.polyline([pickup, drop], { color: COLORS.trip, weight: 1.5, dashArray: "4 6", opacity: 0.8, pane: "orders" }),
      L.circleMarker(pickup, { radius, weight, color: "#ffffff", fillColor: COLORS.pickup, fillOpacity: 1, pane: "orders" }),
      L.circleMarker(drop, { radius, weight, color: "#ffffff", fillColor: COLORS.drop, fillOpacity: 1, pane: "orders" }),
    ];
    if (order.path && order.path.length > 1) {
      shapes.push(L.polyline(order.path, { color: COLORS.path, weight: 3, opacity: 0.7, pane: "orders" }));
    }
    const group = L.featureGroup(shapes).addTo(this.orderLayer);
    group.on("click", () => this.onOrderClick(order.id));
    // Addresses are typed by customers: text in an element, never an HTML string.
    const label = `Order ${order.id.slice(0, 8)}: ${order.pickup.address} → ${order.drop.address}`;
    group.bindTooltip(el("span", {}, label), { sticky: true });
    for (const layer of shapes) {
      const element = layer.getElement();
      if (element) element.dataset.orderId = order.id;
    }
    this.orderShapes.set(order.id, group);
  }

  removeOrder(id) {
    const group = this.orderShapes.get(id);
    if (group) {
      group.remove();
      this.orderShapes.delete(id);
    }
  }

  focus(lat, lng) {
    this.map.panTo([lat, lng]);
  }
}
