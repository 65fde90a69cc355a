// The console's shell: hash router, the live feed (server-sent events) and throttled page refreshes.
import { runsPage, runPage } from "./runs.js";
import { jobPage } from "./job.js";
import { queuesPage, eventsPage, startPage } from "./misc.js";

const ROUTES = { runs: runsPage, run: runPage, job: jobPage, queues: queuesPage, events: eventsPage, start: startPage };
const main = document.getElementById("main");
const live = document.getElementById("live");
let current = null;
let refreshing = false;
let pending = false;
let timer = null;

function parseHash() {
  const [path, query] = (location.hash.replace(/^#\/?/, "") || "runs").split("?");
  const [name, ...rest] = path.split("/");
  return { name: ROUTES[name] ? name : "runs", arg: rest.length ? decodeURIComponent(rest.join("/")) : "",
           query: new URLSearchParams(query || "") };
}

async function refresh() {
  if (!current) return;
  if (refreshing) { pending = true; return; }
  refreshing = true;
  const page = current;
  try {
    await page.refresh();
    if (page === current) main.dataset.loaded = "true";
  } catch (err) {
    if (page === current) page.error?.(err);
  } finally {
    refreshing = false;
    if (pending) { pending = false; schedule(200); }
  }
}

// Events come in bursts: refresh once shortly after, and again later for the run store's
// update that follows the engine's event (the tracker writes it on its own thread).
function schedule(delay = 250) {
  if (timer) return;
  timer = setTimeout(() => { timer = null; refresh(); }, delay);
}

function route() {
  current?.dispose?.();
  const { name, arg, query } = parseHash();
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("current", a.dataset.nav === name || (name === "run" && a.dataset.nav === "runs")));
  main.innerHTML = "";
  main.dataset.page = name;
  main.dataset.loaded = "false";
  current = ROUTES[name](main, arg, query, { refresh: () => schedule(0), go: (hash) => { location.hash = hash; } });
  document.title = `${current.title} · Conveyor`;
  refresh();
}

function connect() {
  const source = new EventSource("/console/api/stream");
  source.addEventListener("hello", () => { live.textContent = "live"; live.className = "live on"; });
  source.onmessage = (msg) => {
    const data = JSON.parse(msg.data);
    current?.onEvents?.(data);
    schedule();
    setTimeout(() => schedule(), 900);
  };
  source.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
}

// A safety net for changes without engine events (a run's end is written by the tracker).
setInterval(() => { if (document.visibilityState === "visible") schedule(0); }, 4000);

document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, textarea, select") || event.ctrlKey || event.metaKey || event.altKey) return;
  const nav = { 1: "#/runs", 2: "#/queues", 3: "#/events", 4: "#/start" }[event.key];
  if (nav) { location.hash = nav; event.preventDefault(); }
});

window.addEventListener("hashchange", route);
window.addEventListener("error", (e) => { live.textContent = `script error: ${e.message}`; });
route();
connect();
