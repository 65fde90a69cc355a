// Queues & compute environments, Events, and Start a run.
import { api, badge, el, esc, jobLink, problemsList, runLink, STATUS_ORDER, time } from "./core.js";
import { table } from "./job.js";

export function queuesPage(main) {
  main.append(el(`<section><h1>Queues &amp; compute environments</h1><div id="host"></div>
    <h2>Job queues</h2><div id="queues"></div><h2>Compute environments</h2><div id="ces"></div>
    <h2>Spot</h2><div id="spot"></div></section>`));
  const q = (id) => main.querySelector(id);
  return {
    title: "Queues",
    async refresh() {
      const d = await api("queues");
      const h = d.host;
      q("#host").innerHTML = `<div class="cols">${capacity("vCPUs", h.usedVcpus, h.vcpus)}${
        capacity("Memory (MiB)", h.usedMemoryMiB, h.memoryMiB)}${capacity("GPUs", h.usedGpus, h.gpus)}</div>`;
      const statuses = STATUS_ORDER.slice().reverse();
      q("#queues").innerHTML = table(["Queue", "State", "Priority", "Environments", ...statuses.map((s) => `<span class="num">${s.toLowerCase()}</span>`)],
        d.queues.map((x) => [esc(x.name), esc(x.state), x.priority, esc(x.environments.join(", ")),
          ...statuses.map((s) => `<span class="num" data-count="${s}">${x.counts[s] || 0}</span>`)]));
      q("#ces").innerHTML = table(["Environment", "Type", "State", "vCPUs in use", "max vCPUs", "Spot reclaim rate"],
        d.computeEnvironments.map((c) => [esc(c.name), esc(c.type), esc(c.state), fmt(c.usedVcpus), c.maxVcpus ?? "–",
          c.type.includes("SPOT") ? pct(c.reclaimRate) : "–"]));
      const s = d.spot;
      q("#spot").innerHTML = `<p>Declared reclaim rate ${pct(s.declaredRate)} (<code>--spot-reclaim-rate</code>); observed:
        ${s.reclaimed} of ${s.attempts} attempts reclaimed (${pct(s.observedRate)}).</p>`;
    },
    error(err) { q("#host").innerHTML = problemsList(err); },
  };
}

const fmt = (n) => (Math.round(n * 100) / 100).toString();
const pct = (r) => `${(100 * r).toFixed(1)}%`;

function capacity(label, used, declared) {
  const share = declared ? Math.min(1, used / declared) : 0;
  return `<div class="cap"><strong>${label}</strong> <span class="counts">${fmt(used)} in use of ${fmt(declared)} declared</span>
    <svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" aria-label="${label}: ${fmt(used)} of ${fmt(declared)}">
    <rect class="track" x="0" y="0" width="100" height="10"/><rect class="seg-RUNNING" x="0" y="0" width="${100 * share}" height="10"/></svg></div>`;
}

export function eventsPage(main) {
  main.append(el(`<section><h1>Events</h1>
    <div class="filters"><label>Kind <select id="kind"><option value="">all</option><option value="batch">Batch Job State Change</option>
      <option value="pipeline">Pipeline run and stage changes</option></select></label>
      <label>Status <select id="status"><option value="">any</option>${["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"].map((s) => `<option>${s}</option>`).join("")}</select></label>
      <label>Text <input id="text" type="search" placeholder="job id, name, run, stage, reason"></label>
      <button type="button" id="pause" aria-pressed="false">Pause</button>
      <span class="muted" id="event-count"></span></div>
    <div id="events"></div></section>`));
  const q = (id) => main.querySelector(id);
  const rows = [];
  let after = -1, pipelineAfter = 0;
  const render = () => {
    const kind = q("#kind").value, status = q("#status").value, text = q("#text").value.toLowerCase();
    const shown = rows.filter((r) => (!kind || r.kind === kind) && (!status || r.status === status)
      && (!text || r.search.includes(text))).slice(-500).reverse();
    q("#event-count").textContent = `${shown.length} shown of ${rows.length} loaded`;
    q("#events").innerHTML = table(["Time", "Kind", "Status", "Subject", "Detail"], shown.map((r) => r.cells));
  };
  ["#kind", "#status"].forEach((id) => q(id).addEventListener("change", render));
  q("#text").addEventListener("input", render);
  q("#pause").addEventListener("click", () => {
    const paused = q("#pause").getAttribute("aria-pressed") !== "true";
    q("#pause").setAttribute("aria-pressed", String(paused));
    q("#pause").textContent = paused ? "Paused" : "Pause";
  });
  return {
    title: "Events",
    async refresh() {
      if (q("#pause").getAttribute("aria-pressed") === "true") return;
      // The first read (after=-1) starts near the end of the feed: recent events, not all history.
      const d = await api(`events?after=${after}&pipelineAfter=${pipelineAfter}`);
      after = d.next; pipelineAfter = d.pipelineNext;
      d.batch.forEach((e) => rows.push({ t: e.time, kind: "batch", status: e.status, search: `${e.jobId} ${e.jobName} ${e.status} ${e.reason}`.toLowerCase(),
        cells: [time(e.time), esc(e.type), e.status ? badge(e.status) : "", jobLink(e.jobId, e.jobName || e.jobId), esc(e.reason)] }));
      d.pipeline.forEach((e) => rows.push({ t: e.time, kind: "pipeline", status: e.status, search: `${e.runId} ${e.stage} ${e.status} ${e.type}`.toLowerCase(),
        cells: [time(e.time), esc(e.type), badge(e.status), runLink(e.runId), e.stage ? `stage ${esc(e.stage)}` : ""] }));
      if (rows.length > 5000) rows.splice(0, rows.length - 5000);
      rows.sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : 0));
      if (d.batch.length || d.pipeline.length || !q("#events").innerHTML) render();
    },
    error(err) { q("#events").innerHTML = problemsList(err); },
  };
}

export function startPage(main, _arg, _query, nav) {
  main.append(el(`<section><h1>Start a run</h1>
    <form id="start-form" class="start">
      <p><label>Pipeline spec <select id="spec" name="spec" required></select></label> <span class="muted" id="specs-dir"></span></p>
      <p><label for="input">Input (JSON): <code>items</code> a folder, manifest or <code>s3://</code> prefix (default: the spec's own);
        <code>runId</code> optional</label>
      <textarea id="input" name="input" spellcheck="false">{\n  "items": ""\n}</textarea></p>
      <p><button type="submit" class="primary" id="start">Start run</button></p>
    </form><div id="start-result" role="status" aria-live="polite"></div></section>`));
  const q = (id) => main.querySelector(id);
  q("#start-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const out = q("#start-result");
    let input;
    try { input = JSON.parse(q("#input").value || "{}"); } catch (err) {
      out.innerHTML = problemsList({ payload: { problems: [{ path: "$", message: `not valid JSON: ${err.message}` }] } });
      return;
    }
    q("#start").disabled = true;
    out.innerHTML = '<p class="notice">Planning and submitting…</p>';
    try {
      const res = await api("runs", { spec: q("#spec").value, input });
      nav.go(`#/run/${encodeURIComponent(res.runId)}`);
    } catch (err) { out.innerHTML = problemsList(err); } finally { q("#start").disabled = false; }
  });
  let loaded = false;
  return {
    title: "Start a run",
    async refresh() {
      if (loaded) return;
      const d = await api("specs");
      loaded = true;
      q("#spec").innerHTML = d.specs.map((s) => `<option value="${esc(s.file)}">${esc(s.pipeline)} (${esc(s.file)})</option>`).join("");
      q("#specs-dir").innerHTML = d.specsDir ? `from <code>${esc(d.specsDir)}</code>` : "no specs: start <code>conveyor serve --specs DIR</code>";
    },
    error(err) { q("#start-result").innerHTML = problemsList(err); },
  };
}
