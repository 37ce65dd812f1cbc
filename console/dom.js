// Building the page with DOM APIs only. Text from the server (task texts,
// errors, questions — written by untrusted agents) only ever becomes a text
// node or an attribute value set through setAttribute: never HTML.

/**
 * el("div", {class: "card", "data-status": s}, child, "text", …)
 * Children may be nodes, strings (become text nodes), null/undefined/false
 * (skipped) or arrays of those.
 */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
}

/** Replace a node's children. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** The first 8 characters of an id, for people; the full id in a title. */
export function shortId(id) {
  return typeof id === "string" ? id.slice(0, 8) : "—";
}

/** An id shown short, with the whole id on hover. */
export function idSpan(id, extraClass = "") {
  return el("span", { class: `id ${extraClass}`.trim(), title: id ?? "" }, shortId(id));
}

/** Local time of day (with the date when it is not today). */
export function time(text) {
  if (!text) return "—";
  const at = new Date(text);
  if (Number.isNaN(at.getTime())) return String(text);
  const now = new Date();
  const clock = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (at.toDateString() === now.toDateString()) return clock;
  return `${at.toLocaleDateString()} ${clock}`;
}

/** "in 4 min" / "3 min ago" for an expiry or age. */
export function relative(text) {
  if (!text) return "";
  const at = new Date(text).getTime();
  if (Number.isNaN(at)) return "";
  const seconds = Math.round((at - Date.now()) / 1000);
  const magnitude = Math.abs(seconds);
  const amount =
    magnitude < 60 ? `${magnitude} s`
    : magnitude < 3600 ? `${Math.round(magnitude / 60)} min`
    : magnitude < 86400 ? `${Math.round(magnitude / 3600)} h`
    : `${Math.round(magnitude / 86400)} d`;
  return seconds >= 0 ? `in ${amount}` : `${amount} ago`;
}

/** Statuses with a colour of their own; anything else is drawn as "other". */
export const KNOWN_STATUSES = [
  "pending", "dispatched", "queued", "received", "in_progress",
  "input_required", "completed", "failed", "canceled", "expired",
];

/** A status as a coloured chip. */
export function statusChip(status) {
  const known = KNOWN_STATUSES.includes(status) ? status : "other";
  return el("span", { class: `chip status-${known}`, "data-chip-status": status ?? "" },
    label(status));
}

/** "in_progress" → "in progress". */
export function label(status) {
  return typeof status === "string" && status ? status.replaceAll("_", " ") : "unknown";
}
