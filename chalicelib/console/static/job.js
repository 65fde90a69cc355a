// Job: status history, attempts, command, dependencies and the log (with follow).
import { api, badge, bar, duration, el, esc, jobLink, problemsList, runLink, TERMINAL, time } from "./core.js";

export function jobPage(main, jobId, _query, nav) {
  main.append(el(`<section><h1>Job <code>${esc(jobId)}</code> <span id="job-status"></span></h1>
    <dl class="meta" id="job-meta"></dl>
    <div id="job-array"></div>
    <div class="cols"><div><h2>Status history</h2><div id="history"></div></div>
    <div><h2>Attempts</h2><div id="attempts"></div></div></div>
    <h2>Log</h2>
    <div class="toolbar"><label>Attempt <select id="attempt"><option value="">latest</option></select></label>
      <label><input type="checkbox" id="follow" checked> follow</label>
      <span class="muted" id="log-note"></span></div>
    <pre class="log" id="log" tabindex="0" aria-label="Job log"></pre></section>`));
  const q = (id) => main.querySelector(id);
  let job = null;
  let attempts = 0;
  const logBox = q("#log");
  const loadLog = async () => {
    const attempt = q("#attempt").value;
    try {
      const out = await api(`jobs/${encodeURIComponent(jobId)}/log${attempt ? `?attempt=${attempt}` : ""}`);
      const atEnd = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
      if (logBox.textContent !== out.text) {
        logBox.textContent = out.text || "(empty)";
        if (q("#follow").checked && atEnd) logBox.scrollTop = logBox.scrollHeight;
      }
      q("#log-note").textContent = out.clipped ? "showing the last 256 KiB" : "";
    } catch (err) { q("#log-note").innerHTML = problemsList(err); }
  };
  q("#attempt").addEventListener("change", loadLog);
  q("#follow").addEventListener("change", () => { if (q("#follow").checked) logBox.scrollTop = logBox.scrollHeight; });
  // A running job's log grows without engine events: poll it while following.
  const poll = setInterval(() => { if (job && !TERMINAL.has(job.status) && q("#follow").checked) loadLog(); }, 1000);
  return {
    title: `Job ${jobId}`,
    dispose() { clearInterval(poll); },
    async refresh() {
      job = await api(`jobs/${encodeURIComponent(jobId)}`);
      q("#job-status").innerHTML = badge(job.status);
      main.dataset.jobStatus = job.status;
      q("#job-meta").innerHTML = meta(job);
      q("#job-array").innerHTML = job.array?.size ? arrayBox(job) : "";
      q("#job-array").querySelector("form")?.addEventListener("submit", (e) => {
        e.preventDefault();
        nav.go(`#/job/${encodeURIComponent(`${job.jobId}:${e.target.index.value}`)}`);
      });
      q("#history").innerHTML = table(["Time", "Status", "Reason"],
        job.history.map((h) => [time(h.time), badge(h.status), esc(h.reason)]));
      q("#attempts").innerHTML = table(["#", "Exit code", "Reason", "Status reason", "Started", "Time"],
        job.attempts.map((a, i) => [i + 1, a.exitCode ?? "–", esc(a.reason), esc(a.statusReason), time(a.startedAt),
          duration(a.startedAt, a.stoppedAt)]));
      if (job.attempts.length !== attempts) {
        attempts = job.attempts.length;
        const chosen = q("#attempt").value;
        q("#attempt").innerHTML = `<option value="">latest</option>` +
          job.attempts.map((_, i) => `<option value="${i + 1}">${i + 1}</option>`).join("");
        q("#attempt").value = chosen;
      }
      await loadLog();
    },
    error(err) { q("#job-meta").innerHTML = problemsList(err); },
  };
}

function meta(job) {
  const rows = [["Name", esc(job.jobName)], ["Queue", esc(job.queue)], ["Status reason", esc(job.statusReason) || "–"],
    ["Created", time(job.createdAt)], ["Started", time(job.startedAt)], ["Time", duration(job.startedAt, job.stoppedAt)],
    ["Exit code", job.exitCode ?? "–"], ["Command", `<code>${esc(job.command.join(" "))}</code>`]];
  if (job.image) rows.push(["Image", `<code>${esc(job.image)}</code>`]);
  if (job.run) rows.push(["Run", `${runLink(job.run.runId)}, stage ${esc(job.run.stage)}`]);
  if (job.parentId) rows.push(["Array job", `${jobLink(job.parentId)}, index ${esc(job.array?.index ?? "")}`]);
  rows.push(["Depends on", job.dependsOn.map((d) => jobLink(d)).join(", ") || "–"]);
  return rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
}

function arrayBox(job) {
  const summary = job.array.statusSummary || {};
  const size = job.array.size || 0;
  return `<h2>Array children</h2><div class="cap">${bar(summary, size)}</div>
    <p class="counts">${Object.entries(summary).filter(([, n]) => n).map(([s, n]) => `${esc(s)} ${n}`).join(" · ")} of ${size}</p>
    <form class="toolbar"><label>Open child <input name="index" type="number" min="0" max="${size - 1}" required class="narrow"></label>
    <button type="submit">Open</button></form>`;
}

export function table(headers, rows) {
  if (!rows.length) return '<p class="muted">None yet.</p>';
  return `<table><thead><tr>${headers.map((h) => `<th>${h}</th>`).join("")}</tr></thead><tbody>${
    rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("")}</tbody></table>`;
}
