// Runs (every run, filterable by status) and Run (stage graph, timing, failures, actions).
import { api, badge, bar, countsText, duration, el, esc, jobLink, problemsList, runLink, STATUS_ORDER, time } from "./core.js";

const RUN_FILTERS = ["", "RUNNING", "SUCCEEDED", "FAILED", "SUBMITTING"];

export function runsPage(main, _arg, query, nav) {
  const status = query.get("status") || "";
  main.append(el(`<section><h1>Runs</h1>
    <div class="filters" role="group" aria-label="Filter by status">${RUN_FILTERS.map((s) =>
      `<button type="button" data-filter="${s}" aria-pressed="${s === status}">${s || "All"}</button>`).join("")}</div>
    <div id="runs-body"></div></section>`));
  main.querySelectorAll("[data-filter]").forEach((b) => b.addEventListener("click", () =>
    nav.go(b.dataset.filter ? `#/runs?status=${b.dataset.filter}` : "#/runs")));
  const body = main.querySelector("#runs-body");
  return {
    title: "Runs",
    async refresh() {
      const data = await api(`runs${status ? `?status=${status}` : ""}`);
      body.innerHTML = data.runs.length ? runsTable(data.runs)
        : `<p class="muted">No runs${status ? ` with status ${esc(status)}` : ""} yet. <a href="#/start">Start one</a>.</p>`;
    },
    error(err) { body.innerHTML = problemsList(err); },
  };
}

function runsTable(runs) {
  const rows = runs.map((r) => `<tr data-run="${esc(r.runId)}">
    <td>${runLink(r.runId)}</td><td>${esc(r.pipeline)}</td><td>${badge(r.status)}</td><td class="num">${r.items}</td>
    <td>${r.stages.map((s) => `<div class="stage-mini" title="${esc(s.stage)}: ${esc(countsText(s.counts, s.items))}">
        <span class="muted">${esc(s.stage)}</span> ${bar(s.counts, s.items)}</div>`).join("")}</td>
    <td>${time(r.createdAt)}</td><td class="num">${duration(r.createdAt, r.endedAt)}</td><td>${esc(r.source)}</td></tr>`).join("");
  return `<table><thead><tr><th>Run</th><th>Pipeline</th><th>Status</th><th class="num">Items</th><th>Items per stage</th>
    <th>Started</th><th class="num">Duration</th><th>Source</th></tr></thead><tbody>${rows}</tbody></table>`;
}

export function runPage(main, runId, _query, nav) {
  main.append(el(`<section><h1>Run <code>${esc(runId)}</code> <span id="run-status"></span></h1>
    <dl class="meta" id="run-meta"></dl>
    <div class="toolbar">
      <button type="button" class="danger" id="cancel">Cancel run…</button>
      <button type="button" class="danger" id="cancel-confirm" hidden>Yes, terminate every job of this run</button>
      <button type="button" id="rerun">Rerun failed items</button>
      <span id="action-result" role="status" aria-live="polite"></span>
    </div>
    <h2>Stages</h2><div class="graph" id="graph"></div>
    <div id="stage-table"></div>
    <h2>Failures</h2><div id="failures"></div></section>`));
  const q = (id) => main.querySelector(id);
  const result = q("#action-result");
  let run = null;
  q("#cancel").addEventListener("click", () => { q("#cancel-confirm").hidden = false; q("#cancel-confirm").focus(); });
  q("#cancel-confirm").addEventListener("click", async () => {
    q("#cancel-confirm").hidden = true;
    try {
      const out = await api(`runs/${encodeURIComponent(runId)}/cancel`, {});
      result.innerHTML = `<span class="notice">Terminating ${out.terminated.length} job(s)…</span>`;
      nav.refresh();
    } catch (err) { result.innerHTML = problemsList(err); }
  });
  q("#rerun").addEventListener("click", async () => {
    try {
      const out = await api(`runs/${encodeURIComponent(runId)}/rerun`, {});
      nav.go(`#/run/${encodeURIComponent(out.runId)}`);
    } catch (err) { result.innerHTML = problemsList(err); }
  });
  let selected = null;
  return {
    title: `Run ${runId}`,
    async refresh() {
      run = await api(`runs/${encodeURIComponent(runId)}`);
      q("#run-status").innerHTML = badge(run.status);
      main.dataset.runStatus = run.status;
      q("#run-meta").innerHTML = meta(run);
      q("#cancel").disabled = run.status === "SUCCEEDED" || run.status === "FAILED";
      q("#rerun").disabled = run.status !== "FAILED";
      const focused = document.activeElement?.closest?.(".node")?.dataset.stage;
      q("#graph").innerHTML = graph(run.stages);
      if (focused) q("#graph").querySelector(`.node[data-stage="${CSS.escape(focused)}"]`)?.focus();
      q("#graph").querySelectorAll(".node").forEach((n) => {
        const pick = () => { selected = n.dataset.stage; q("#stage-table").innerHTML = stageTable(run.stages, selected); mark(); };
        n.addEventListener("click", pick);
        n.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
      });
      const mark = () => q("#graph").querySelectorAll(".node").forEach((n) => n.classList.toggle("selected", n.dataset.stage === selected));
      mark();
      q("#stage-table").innerHTML = stageTable(run.stages, selected);
      q("#failures").innerHTML = failures(run.failures);
    },
    error(err) { q("#run-meta").innerHTML = problemsList(err); },
  };
}

function meta(run) {
  const rows = [["Pipeline", esc(run.pipeline)], ["Items", run.items], ["Started", time(run.createdAt)],
    ["Duration", duration(run.createdAt, run.endedAt)], ["Outputs", `<code>${esc(run.prefix)}</code>`],
    ["Source", esc(run.source)]];
  if (run.parentRunId) rows.push(["Re-run of", runLink(run.parentRunId)]);
  if (run.children?.length) rows.push(["Re-runs", run.children.map(runLink).join(", ")]);
  return rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
}

// Stages as a layered graph: a stage's column is one more than its deepest `after`.
function graph(stages) {
  const W = 190, H = 70, GX = 40, GY = 16, PAD = 12;
  const depth = {};
  const byName = Object.fromEntries(stages.map((s) => [s.stage, s]));
  const depthOf = (name, seen = new Set()) => {
    if (depth[name] !== undefined) return depth[name];
    if (seen.has(name)) return 0;
    seen.add(name);
    const ups = (byName[name]?.after || []).filter((a) => byName[a]);
    return (depth[name] = ups.length ? 1 + Math.max(...ups.map((a) => depthOf(a, seen))) : 0);
  };
  stages.forEach((s) => depthOf(s.stage));
  const rows = {};
  const pos = {};
  stages.forEach((s) => {
    const col = depth[s.stage];
    const row = (rows[col] = (rows[col] ?? -1) + 1);
    pos[s.stage] = { x: PAD + col * (W + GX), y: PAD + row * (H + GY) };
  });
  const width = PAD * 2 + (Math.max(...Object.values(depth), 0) + 1) * (W + GX) - GX;
  const height = PAD * 2 + (Math.max(...Object.values(rows), 0) + 1) * (H + GY) - GY;
  const edges = stages.flatMap((s) => (s.after || []).filter((a) => pos[a]).map((a) => {
    const from = pos[a], to = pos[s.stage];
    const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x, y2 = to.y + H / 2, mx = (x1 + x2) / 2;
    return `<path class="edge" marker-end="url(#arrow)" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 2},${y2}"/>`;
  })).join("");
  const nodes = stages.map((s) => {
    const { x, y } = pos[s.stage];
    const total = Math.max(s.items, 1);
    let offset = 0;
    const segs = STATUS_ORDER.filter((k) => s.counts?.[k]).map((k) => {
      const w = ((W - 20) * s.counts[k]) / total;
      const seg = `<rect class="seg-${k}" x="${x + 10 + offset}" y="${y + 44}" width="${w}" height="10"/>`;
      offset += w;
      return seg;
    }).join("");
    const label = `${s.stage}: ${s.status}, ${countsText(s.counts, s.items)}`;
    return `<g class="node" tabindex="0" role="button" data-stage="${esc(s.stage)}" data-status="${esc(s.status)}" aria-label="${esc(label)}">
      <title>${esc(label)}</title>
      <rect class="box" x="${x}" y="${y}" width="${W}" height="${H}" rx="5"/>
      <text x="${x + 10}" y="${y + 18}" font-weight="600">${esc(s.stage)}</text>
      <text class="sub" x="${x + W - 10}" y="${y + 18}" text-anchor="end">${statusMark(s.status)} ${esc(s.status)}</text>
      <text class="sub stage-counts" x="${x + 10}" y="${y + 36}">${esc(shortCounts(s.counts, s.items))} · ${esc(duration(s.startedAt, s.endedAt))}</text>
      <rect class="track" x="${x + 10}" y="${y + 44}" width="${W - 20}" height="10"/>${segs}
    </g>`;
  }).join("");
  return `<svg width="${width}" height="${height}" role="group" aria-label="Stage graph">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
    <path class="arrowhead" d="M0,0 L10,5 L0,10 z"/></marker></defs>${edges}${nodes}</svg>`;
}

const statusMark = (s) => ({ SUCCEEDED: "✓", FAILED: "✗", RUNNING: "▶" })[s] || "○";

function shortCounts(counts, items) {
  const ok = counts?.SUCCEEDED || 0, failed = counts?.FAILED || 0;
  const active = (counts?.RUNNING || 0) + (counts?.STARTING || 0);
  return `${ok}/${items} ✓${failed ? `  ${failed} ✗` : ""}${active ? `  ${active} ▶` : ""}`;
}

function stageTable(stages, selected) {
  const statuses = STATUS_ORDER.filter((k) => stages.some((s) => s.counts?.[k]));
  const rows = stages.map((s) => `<tr data-stage-row="${esc(s.stage)}"${s.stage === selected ? ' class="selected"' : ""}>
    <td>${esc(s.stage)}</td><td>${badge(s.status)}</td><td class="num">${s.items}</td>
    ${statuses.map((k) => `<td class="num">${s.counts?.[k] || 0}</td>`).join("")}
    <td>${time(s.startedAt)}</td><td class="num">${duration(s.startedAt, s.endedAt)}</td>
    <td>${s.jobs.map((j) => jobLink(j.jobId, j.isArray ? `${j.key} [${j.size}]` : j.key)).join(", ") || '<span class="muted">not submitted yet</span>'}</td></tr>`).join("");
  return `<table><thead><tr><th>Stage</th><th>Status</th><th class="num">Items</th>
    ${statuses.map((k) => `<th class="num">${k.toLowerCase()}</th>`).join("")}<th>Started</th><th class="num">Time</th><th>Batch jobs</th></tr></thead>
    <tbody>${rows}</tbody></table>`;
}

function failures(f) {
  const causes = (f.causes || []).map((c) => `<div class="problems run-cause">Run ended: ${esc(c)}</div>`).join("");
  if (!f.total && !Object.keys(f.skipped).length) return causes || '<p class="muted">No failures.</p>';
  const rows = f.shown.map((x) => `<tr class="failure"><td>${esc(x.stage)}</td><td><code>${esc(x.key)}</code></td>
    <td>${esc(x.reason)}</td><td class="num">${x.exitCode ?? "–"}</td><td>${jobLink(x.jobId, "log")}</td>
    <td>${x.logTail ? `<pre class="tail">${esc(x.logTail)}</pre>` : '<span class="muted">(empty)</span>'}</td></tr>`).join("");
  const skipped = Object.entries(f.skipped).map(([stage, n]) =>
    `<li>stage ${esc(stage)}: ${n} item(s) not run because an upstream item failed</li>`).join("");
  return `${causes}<p>${f.total} failure(s)${f.total > f.shown.length ? `, the first ${f.shown.length} shown` : ""}.</p>
    <table><thead><tr><th>Stage</th><th>Item</th><th>Reason</th><th class="num">Exit code</th><th>Job</th><th>Log tail</th></tr></thead>
    <tbody>${rows}</tbody></table>${skipped ? `<ul class="muted">${skipped}</ul>` : ""}`;
}
