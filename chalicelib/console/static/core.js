// Shared helpers of the console pages: escaping, formatting, the JSON API and status rendering.
export const TOKEN = document.querySelector('meta[name="conveyor-console-token"]').content;
export const STATUS_ORDER = ["SUCCEEDED", "FAILED", "RUNNING", "STARTING", "RUNNABLE", "PENDING", "SUBMITTED"];
export const TERMINAL = new Set(["SUCCEEDED", "FAILED"]);

export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function el(html) {
  const t = document.createElement("template");
  t.innerHTML = html.trim();
  return t.content.firstElementChild;
}

export function time(ms) {
  if (ms === null || ms === undefined) return "–";
  const d = new Date(typeof ms === "string" ? Date.parse(ms) : ms);
  return d.toLocaleString(undefined, { hour12: false, month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function duration(start, end) {
  if (start === null || start === undefined) return "–";
  const s = Math.max(0, ((end ?? Date.now()) - start) / 1000);
  const text = s < 60 ? `${s.toFixed(1)}s` : s < 3600 ? `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`
    : `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return end === null || end === undefined ? `${text} so far` : text;
}

export function badge(status) {
  return `<span class="st st-${esc(status)}" data-status="${esc(status)}">${esc(status)}</span>`;
}

// A bar of items by status, drawn in SVG (the page's CSP allows no inline styles); its label
// and title carry the same numbers as text.
export function bar(counts, total) {
  const all = Math.max(total || 0, Object.values(counts || {}).reduce((a, b) => a + b, 0), 1);
  let x = 0;
  const segs = STATUS_ORDER.filter((s) => counts?.[s]).map((s) => {
    const w = (100 * counts[s]) / all;
    const seg = `<rect class="seg-${s}" x="${x}" y="0" width="${w}" height="10"/>`;
    x += w;
    return seg;
  }).join("");
  const label = esc(countsText(counts, total));
  return `<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" aria-label="${label}"><title>${label}</title>` +
    `<rect class="track" x="0" y="0" width="100" height="10"/>${segs}</svg>`;
}

export function countsText(counts, total) {
  const parts = STATUS_ORDER.filter((s) => counts?.[s]).map((s) => `${counts[s]} ${s.toLowerCase()}`);
  return `${parts.join(", ") || "none yet"} of ${total ?? 0}`;
}

export class ApiError extends Error {
  constructor(status, payload) {
    super(payload?.message || `HTTP ${status}`);
    this.status = status;
    this.payload = payload || {};
  }
}

export async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-Conveyor-Console-Token": TOKEN },
  };
  const response = await fetch(`/console/api/${path}`, init);
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, payload);
  return payload;
}

export function problemsList(err) {
  const problems = err.payload?.problems || [];
  if (!problems.length) return `<div class="problems" role="alert">${esc(err.message)}</div>`;
  return `<div class="problems" role="alert"><strong>${problems.length} problem${problems.length > 1 ? "s" : ""}</strong><ul>${
    problems.map((p) => `<li><code>${esc(p.path)}</code>: ${esc(p.message)}</li>`).join("")}</ul></div>`;
}

export function jobLink(id, text) {
  return `<a href="#/job/${encodeURIComponent(id)}">${esc(text ?? id)}</a>`;
}

export function runLink(id) {
  return `<a href="#/run/${encodeURIComponent(id)}">${esc(id)}</a>`;
}
