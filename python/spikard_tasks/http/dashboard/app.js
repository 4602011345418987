// spikard-tasks dashboard: vanilla JS, no dependencies. Every value from the API reaches
// the page through textContent or setAttribute (never innerHTML): job arguments, task
// names and errors are whatever a producer sent.
"use strict";

(function () {
  const API = document.querySelector('meta[name="spikard-api"]').content;
  const READ_ONLY = document.querySelector('meta[name="spikard-read-only"]').content === "true";
  const STATES = ["pending", "scheduled", "running", "retrying", "succeeded", "failed", "cancelled"];
  const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
  const REFRESH_MS = 2000;
  const SAMPLES = 90; // three minutes of samples at one per 2 s

  const main = document.getElementById("main");
  const problem = document.getElementById("problem");
  const announcer = document.getElementById("announcer");
  const liveToggle = document.getElementById("live-toggle");
  const samples = []; // {at, succeeded, failed} per stats poll
  let live = true;
  let timer = null;
  let view = null; // the current page: {refresh()}
  let generation = 0; // bumps on navigation; late answers for an old page are dropped

  // -- DOM helpers -----------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) throw new Error("no inline handlers");
      if (key === "hidden" && value === true) el.hidden = true;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    append(el, children);
    return el;
  }

  function append(el, ...children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function svg(tag, attrs) {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
    return el;
  }

  function replace(el, ...children) {
    el.replaceChildren();
    return append(el, children);
  }

  // Re-renders a region; the control that had the focus (matched by its data-key) gets
  // it back, so a keyboard user is not thrown out by the live refresh.
  function rerender(el, ...children) {
    const active = document.activeElement;
    const key = active && el.contains(active) ? active.getAttribute("data-key") : null;
    replace(el, ...children);
    if (key) {
      const again = [...el.querySelectorAll("[data-key]")].find((e) => e.getAttribute("data-key") === key);
      if (again) again.focus();
    }
  }

  function announce(text) {
    announcer.textContent = "";
    window.setTimeout(() => { announcer.textContent = text; }, 30);
    const toast = document.getElementById("toast");
    toast.textContent = text;
    toast.hidden = false;
    window.clearTimeout(announce.timer);
    announce.timer = window.setTimeout(() => { toast.hidden = true; }, 4000);
  }

  function badge(status) {
    return h("span", { class: "badge s-" + status, "data-status": status }, status);
  }

  // -- formatting ------------------------------------------------------------------------

  function ago(iso) {
    if (!iso) return "—";
    const seconds = (Date.now() - Date.parse(iso)) / 1000;
    return duration(Math.abs(seconds)) + (seconds >= 0 ? " ago" : " from now");
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 1) return "now";
    if (seconds < 60) return Math.round(seconds) + "s";
    if (seconds < 3600) return Math.round(seconds / 60) + "m";
    if (seconds < 86400) return (seconds / 3600).toFixed(1).replace(/\.0$/, "") + "h";
    return (seconds / 86400).toFixed(1).replace(/\.0$/, "") + "d";
  }

  function when(iso) {
    if (!iso) return h("span", { class: "muted" }, "—");
    return h("time", { datetime: iso, title: new Date(iso).toLocaleString() }, ago(iso));
  }

  function number(n) {
    return Number(n || 0).toLocaleString();
  }

  function pretty(value) {
    return JSON.stringify(value, null, 2);
  }

  function shortId(id) {
    return id.length > 13 ? id.slice(0, 8) + "…" + id.slice(-4) : id;
  }

  // -- the API -----------------------------------------------------------------------------

  async function api(path, options) {
    const init = { credentials: "same-origin", headers: { Accept: "application/json" } };
    if (options && options.body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    let response;
    try {
      response = await fetch(API + path, init);
    } catch (err) {
      throw new Error("cannot reach the server (" + err.message + ")");
    }
    const text = await response.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
    if (!response.ok) {
      const reason = body && body.error ? body.error : response.statusText;
      const error = new Error(reason + " (HTTP " + response.status + ")");
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function showProblem(err) {
    if (!err) { problem.hidden = true; return; }
    replace(problem, h("strong", null, "Problem: "), err.message);
    problem.hidden = false;
  }

  // -- confirmation ----------------------------------------------------------------------

  function confirmAction(title, text, verb) {
    const dialog = document.getElementById("confirm");
    const ok = document.getElementById("confirm-ok");
    const cancel = document.getElementById("confirm-cancel");
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = text;
    ok.textContent = verb;
    const opener = document.activeElement;
    return new Promise((resolve) => {
      function done(answer) {
        ok.removeEventListener("click", yes);
        cancel.removeEventListener("click", no);
        dialog.removeEventListener("cancel", no);
        if (dialog.open) dialog.close();
        if (opener && opener.focus) opener.focus();
        resolve(answer);
      }
      function yes() { done(true); }
      function no(event) { if (event) event.preventDefault(); done(false); }
      ok.addEventListener("click", yes);
      cancel.addEventListener("click", no);
      dialog.addEventListener("cancel", no);
      dialog.showModal();
      cancel.focus();
    });
  }

  async function act(title, text, verb, run) {
    if (!(await confirmAction(title, text, verb))) return;
    try {
      announce(await run());
      showProblem(null);
    } catch (err) {
      showProblem(err);
      announce("Failed: " + err.message);
    }
    refresh();
  }

  function actionButton(label, attrs, onClick) {
    const button = h("button", { type: "button", class: "btn", ...attrs }, label);
    button.addEventListener("click", onClick);
    return button;
  }

  // -- stats samples and sparklines ------------------------------------------------------

  function sample(stats) {
    let succeeded = 0;
    let failed = 0;
    for (const q of stats.queues) {
      succeeded += q.succeeded_last_minute;
      failed += q.failed_last_minute;
    }
    samples.push({ at: Date.parse(stats.at), succeeded, failed });
    while (samples.length > SAMPLES) samples.shift();
  }

  function sparkline(values, label, unit, kind) {
    const width = 240;
    const height = 48;
    const box = h("figure", { class: "spark " + kind });
    const last = values.length ? values[values.length - 1] : 0;
    const max = Math.max(1, ...values);
    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img",
      "aria-label": `${label}: now ${last.toFixed(kind === "rate" ? 1 : 0)}${unit}`,
    });
    if (values.length > 1) {
      const step = width / (SAMPLES - 1);
      const x0 = width - step * (values.length - 1);
      const points = values.map((v, i) => [x0 + i * step, height - 2 - (v / max) * (height - 6)]);
      const line = points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
      chart.append(svg("polygon", { points: `${x0},${height} ${line} ${width},${height}`, class: "area" }));
      chart.append(svg("polyline", { points: line, class: "line" }));
    } else {
      chart.append(svg("line", { x1: 0, y1: height - 1, x2: width, y2: height - 1, class: "line" }));
    }
    append(box,
      h("figcaption", null, h("span", null, label),
        h("strong", { "data-spark": kind }, last.toFixed(kind === "rate" ? 1 : 0) + unit)),
      chart);
    return box;
  }

  // -- pages -----------------------------------------------------------------------------

  function queueFilterLink(queue, status) {
    const query = new URLSearchParams();
    if (status) query.set("status", status);
    if (queue) query.set("queue", queue);
    const text = query.toString();
    return "#/jobs" + (text ? "?" + text : "");
  }

  function overviewPage() {
    // built once and updated in place, so a focused card keeps its focus across refreshes
    const values = {};
    const cards = h("section", { class: "cards", "aria-label": "Jobs per state" },
      STATES.map((state) => h("a", { class: "card s-" + state, href: queueFilterLink(null, state), "data-count": state },
        h("span", { class: "card-label" }, state),
        values[state] = h("span", { class: "card-value" }, "–"))));
    const sparks = h("section", { class: "sparks", "aria-label": "Last minutes" });
    const queues = h("div", { class: "table-wrap" });
    const limits = h("div", { class: "table-wrap" });
    const limitsSection = h("section", { "aria-labelledby": "limits-title", id: "limits", hidden: true },
      h("h2", { id: "limits-title" }, "Limits"), limits);
    const workers = h("div", { class: "table-wrap" });
    replace(main,
      h("h1", null, "Overview"),
      cards, sparks,
      h("section", { "aria-labelledby": "queues-title" },
        h("h2", { id: "queues-title" }, "Queues"), queues),
      limitsSection,
      h("section", { "aria-labelledby": "workers-title" },
        h("h2", { id: "workers-title" }, "Workers ", h("span", { class: "count", id: "worker-count" })),
        workers));
    let shownQueues = "";
    let shownLimits = "";
    let shownWorkers = "";
    return {
      async refresh(stats) {
        for (const state of STATES) values[state].textContent = number(stats.counts[state]);
        const throughput = samples.map((s) => s.succeeded);
        const rates = samples.map((s) => (s.succeeded + s.failed ? (100 * s.failed) / (s.succeeded + s.failed) : 0));
        replace(sparks,
          sparkline(throughput, "Succeeded per minute", "/min", "throughput"),
          sparkline(samples.map((s) => s.failed), "Failed per minute", "/min", "failures"),
          sparkline(rates, "Failure rate", "%", "rate"));
        const key = JSON.stringify(stats.queues);
        if (key !== shownQueues) {
          shownQueues = key;
          rerender(queues, queuesTable(stats.queues));
        }
        const foundLimits = stats.limits || [];
        const lkey = JSON.stringify(foundLimits);
        if (lkey !== shownLimits) {
          shownLimits = lkey;
          limitsSection.hidden = !foundLimits.length;
          rerender(limits, limitsTable(foundLimits));
        }
        const found = await api("workers");
        const wkey = JSON.stringify(found.workers);
        document.getElementById("worker-count").textContent = String(found.workers.length);
        if (wkey !== shownWorkers) {
          shownWorkers = wkey;
          rerender(workers, workersTable(found.workers));
        }
      },
    };
  }

  function queuesTable(queues) {
    if (!queues.length) return h("p", { class: "empty" }, "No queue has a job yet.");
    const head = ["Queue", "Pending", "Scheduled", "Running", "Retrying", "Failed", "Oldest ready",
      "Done/min", "Failed/min", READ_ONLY ? null : "Actions"];
    return h("table", { class: "grid", "aria-label": "Queues" },
      h("thead", null, h("tr", null, head.filter(Boolean).map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", null, queues.map((q) => h("tr", { "data-queue": q.queue },
        h("th", { scope: "row" }, h("a", { href: queueFilterLink(q.queue, null), "data-key": "q:" + q.queue }, q.queue),
          q.paused ? h("span", { class: "badge paused", "data-paused": q.queue }, "paused") : null),
        ["pending", "scheduled", "running", "retrying", "failed"].map((state) =>
          h("td", { class: "num" }, h("a", { href: queueFilterLink(q.queue, state), "data-key": `q:${q.queue}:${state}` },
            number(q.counts[state])))),
        h("td", { class: "num" }, q.oldest_ready_age === null ? "—" : duration(q.oldest_ready_age)),
        h("td", { class: "num" }, number(q.succeeded_last_minute)),
        h("td", { class: "num" }, number(q.failed_last_minute)),
        READ_ONLY ? null : h("td", null, pauseButton(q))))));
  }

  // Flow control kept in the store: one row per task or queue limit, with its running count.
  function limitsTable(limits) {
    return h("table", { class: "grid", "aria-label": "Limits" },
      h("thead", null, h("tr", null, ["Scope", "Name", "Rate", "Max running", "Running now", "Next start"]
        .map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", null, limits.map((l) => h("tr", { "data-limit": l.scope + ":" + l.name },
        h("td", null, l.scope),
        h("th", { scope: "row", class: "mono" }, l.name),
        h("td", null, l.rate_limit === null ? "—" : l.rate_limit),
        h("td", { class: "num" }, l.max_running === null ? "—" : number(l.max_running)),
        h("td", { class: "num" }, number(l.running)),
        h("td", null, nextStart(l))))));
  }

  // When a limit's rate lets the next job start: "now", "in <1s", "in 5m".
  function nextStart(l) {
    if (l.rate_limit === null) return "—";
    if (l.next_start === null) return "now";
    const seconds = (Date.parse(l.next_start) - Date.now()) / 1000;
    const label = seconds <= 0 ? "now" : seconds < 1 ? "in <1s" : "in " + duration(seconds);
    return h("time", { datetime: l.next_start, title: new Date(l.next_start).toLocaleString() }, label);
  }

  function pauseButton(q) {
    const verb = q.paused ? "Resume" : "Pause";
    const attrs = { "aria-label": `${verb} queue ${q.queue}`, "data-action": verb.toLowerCase(), "data-key": "pause:" + q.queue };
    return actionButton(verb, attrs, () =>
      act(`${verb} queue ${q.queue}?`,
        q.paused ? "Workers will claim jobs from this queue again."
          : "Workers stop claiming jobs from this queue within one poll interval. Running jobs finish; enqueueing still works.",
        verb,
        async () => {
          await api(`queues/${encodeURIComponent(q.queue)}/${verb.toLowerCase()}`, { body: {} });
          return `Queue ${q.queue} ${q.paused ? "resumed" : "paused"}.`;
        }));
  }

  function workersTable(workers) {
    if (!workers.length) return h("p", { class: "empty" }, "No live worker.");
    return h("table", { class: "grid", "aria-label": "Workers" },
      h("thead", null, h("tr", null, ["Worker", "Host", "PID", "Queues", "Busy", "Started", "Heartbeat", "Version"]
        .map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", null, workers.map((w) => h("tr", { "data-worker": w.name },
        h("th", { scope: "row", class: "mono" }, w.name),
        h("td", null, w.host), h("td", { class: "num" }, w.pid), h("td", null, w.queues.join(", ")),
        h("td", null, h("meter", { min: 0, max: Math.max(1, w.concurrency), value: w.jobs_held,
          "aria-label": `${w.jobs_held} of ${w.concurrency} slots busy` }),
        ` ${w.jobs_held}/${w.concurrency}`),
        h("td", null, when(w.started_at)), h("td", null, when(w.last_heartbeat)),
        h("td", { class: "mono" }, w.version)))));
  }

  function jobsPage(params) {
    const form = h("form", { class: "filters", "aria-label": "Filter jobs" });
    const statusSelect = h("select", { id: "f-status", name: "status" },
      h("option", { value: "" }, "any"), STATES.map((s) => h("option", { value: s }, s)));
    statusSelect.value = params.get("status") || "";
    const task = h("input", { id: "f-task", name: "task", type: "search", placeholder: "module.function", autocomplete: "off" });
    task.value = params.get("task") || "";
    const queue = h("input", { id: "f-queue", name: "queue", type: "search", placeholder: "default", autocomplete: "off" });
    queue.value = params.get("queue") || "";
    const limit = h("select", { id: "f-limit", name: "limit" }, [25, 50, 100, 200].map((n) => h("option", { value: n }, n)));
    limit.value = params.get("limit") || "50";
    append(form,
      h("div", { class: "field" }, h("label", { for: "f-status" }, "Status"), statusSelect),
      h("div", { class: "field" }, h("label", { for: "f-task" }, "Task"), task),
      h("div", { class: "field" }, h("label", { for: "f-queue" }, "Queue"), queue),
      h("div", { class: "field" }, h("label", { for: "f-limit" }, "Per page"), limit),
      h("div", { class: "field actions" }, h("button", { type: "submit", class: "btn primary" }, "Apply"),
        h("a", { class: "btn ghost", href: "#/jobs" }, "Clear")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const query = new URLSearchParams();
      for (const [key, el] of [["status", statusSelect], ["task", task], ["queue", queue]]) {
        if (el.value.trim()) query.set(key, el.value.trim());
      }
      if (limit.value !== "50") query.set("limit", limit.value);
      location.hash = "#/jobs" + (query.toString() ? "?" + query : "");
    });
    const filter = {};
    for (const key of ["status", "task", "queue"]) if (params.get(key)) filter[key] = params.get(key);
    const describe = Object.entries(filter).map(([k, v]) => `${k} = ${v}`).join(", ") || "every job";
    const bulk = READ_ONLY ? null : bulkActions(filter, describe);
    const table = h("div", { class: "table-wrap", "aria-live": "polite", "aria-busy": "true" });
    const pager = h("nav", { class: "pager", "aria-label": "Pages" });
    const title = params.get("status") === "failed" && Object.keys(filter).length === 1 ? "Failed jobs" : "Jobs";
    replace(main, h("h1", null, title), form, bulk, table, pager);
    let shown = "";
    return {
      async refresh() {
        const query = new URLSearchParams(filter);
        query.set("limit", limit.value);
        if (params.get("cursor")) query.set("cursor", params.get("cursor"));
        const page = await api("jobs?" + query);
        table.setAttribute("aria-busy", "false");
        const key = JSON.stringify(page);
        if (key === shown) return;
        shown = key;
        rerender(table, jobsTable(page.jobs));
        const first = new URLSearchParams(params);
        first.delete("cursor");
        const firstLink = params.get("cursor") ? h("a", { class: "btn", href: "#/jobs" + (first.toString() ? "?" + first : ""), "data-key": "first" }, "« Newest") : null;
        let nextLink = null;
        if (page.next_cursor) {
          const next = new URLSearchParams(params);
          next.set("cursor", page.next_cursor);
          nextLink = h("a", { class: "btn", href: "#/jobs?" + next, rel: "next", "data-next": "", "data-key": "next" }, "Older »");
        }
        rerender(pager, firstLink, h("span", { class: "muted" }, `${page.jobs.length} shown`), nextLink);
      },
    };
  }

  function bulkActions(filter, describe) {
    const amount = h("input", { id: "purge-age", type: "number", min: 0, step: "any", value: 7, inputmode: "decimal" });
    const unit = h("select", { id: "purge-unit", "aria-label": "Unit" },
      [["86400", "days"], ["3600", "hours"], ["60", "minutes"]].map(([v, t]) => h("option", { value: v }, t)));
    const box = h("section", { class: "bulk", "aria-label": "Actions on the matching jobs" },
      actionButton("Retry matching", { "data-action": "retry-all" }, () =>
        act("Retry matching jobs?", `Failed and cancelled jobs matching ${describe} go back to pending with a fresh attempt budget.`,
          "Retry", async () => `Retried ${(await api("jobs/retry", { body: filter })).retried} job(s).`)),
      actionButton("Cancel matching", { "data-action": "cancel-all", class: "btn danger-outline" }, () =>
        act("Cancel matching jobs?", `Unfinished jobs matching ${describe} are cancelled (running ones are asked to stop).`,
          "Cancel jobs", async () => `Cancelled ${(await api("jobs/cancel", { body: filter })).cancelled} job(s).`)),
      h("div", { class: "purge" },
        h("label", { for: "purge-age" }, "Purge finished older than"), amount, unit,
        actionButton("Purge", { "data-action": "purge", class: "btn danger-outline" }, () => {
          const seconds = Number(amount.value) * Number(unit.value);
          if (!Number.isFinite(seconds) || seconds < 0) { announce("Enter an age of 0 or more."); amount.focus(); return; }
          const age = `${amount.value} ${unit.options[unit.selectedIndex].text}`;
          act("Purge finished jobs?", `Finished jobs matching ${describe} that ended more than ${age} ago are deleted for good.`,
            "Purge", async () => `Purged ${(await api("jobs/purge", { body: { ...filter, older_than: seconds } })).purged} job(s).`);
        })));
    return box;
  }

  function jobsTable(jobs) {
    if (!jobs.length) return h("p", { class: "empty" }, "No job matches.");
    return h("table", { class: "grid jobs", "aria-label": "Jobs" },
      h("thead", null, h("tr", null, ["Job", "Task", "Queue", "Status", "Attempts", "Enqueued", "Finished", "Last error"]
        .map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", null, jobs.map((job) => {
        const error = job.errors.length && job.status !== "succeeded" ? job.errors[job.errors.length - 1].error : "";
        return h("tr", { "data-job": job.task_id },
          h("th", { scope: "row" }, h("a", { class: "mono", href: "#/jobs/" + encodeURIComponent(job.task_id),
            title: job.task_id, "data-key": "job:" + job.task_id }, shortId(job.task_id))),
          h("td", { class: "mono" }, job.task), h("td", null, job.queue), h("td", null, badge(job.status)),
          h("td", { class: "num" }, `${job.attempts}/${job.max_attempts}`),
          h("td", null, when(job.enqueued_at)), h("td", null, when(job.finished_at)),
          h("td", { class: "error-cell", title: error }, error));
      })));
  }

  function jobPage(id) {
    const body = h("div", { class: "job", "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"));
    replace(main, h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " / ", h("span", { class: "mono" }, id)), body);
    let shown = "";
    let rendered = false;
    return {
      async refresh() {
        let job;
        try {
          job = await api("jobs/" + encodeURIComponent(id) + "?view=full");
        } catch (err) {
          if (err.status !== 404) throw err;
          replace(body, h("h1", null, "Job not found"), h("p", null, "It never existed, or it was purged."));
          return;
        }
        const key = JSON.stringify(job);
        if (key === shown) return;
        shown = key;
        const opened = new Set([...body.querySelectorAll("details[open]")].map((d) => d.dataset.attempt));
        rerender(body, jobDetail(job, opened, rendered));
        rendered = true;
      },
    };
  }

  function jobDetail(job, opened, keep) {
    const actions = [];
    if (!READ_ONLY && (job.status === "failed" || job.status === "cancelled")) {
      actions.push(actionButton("Retry", { class: "btn primary", "data-action": "retry", "data-key": "retry" }, () =>
        act("Retry this job?", `Job ${job.task_id} (${job.task}) goes back to pending with a fresh budget of ${job.max_attempts} attempt(s); its errors are kept.`,
          "Retry", async () => { await api(`jobs/${encodeURIComponent(job.task_id)}/retry`, { body: {} }); return "Job retried."; })));
    }
    if (!READ_ONLY && !FINISHED.has(job.status)) {
      actions.push(actionButton("Cancel", { class: "btn danger-outline", "data-action": "cancel", "data-key": "cancel" }, () =>
        act("Cancel this job?", job.status === "running" ? "The running attempt is asked to stop." : "The job will not run.",
          "Cancel job", async () => { await api(`jobs/${encodeURIComponent(job.task_id)}/cancel`, { body: {} }); return "Job cancelled."; })));
    }
    const facts = [
      ["Queue", job.queue], ["Attempts", `${job.attempts} of ${job.max_attempts}`], ["Priority", job.priority],
      ["Run at", job.run_at ? new Date(job.run_at).toLocaleString() : "—"],
      ["Unique key", job.unique_key], ["Cancel reason", job.cancel_reason],
    ].filter(([, v]) => v !== null && v !== undefined);
    const progress = job.progress ? h("div", { class: "progress" },
      h("label", { for: "job-progress" }, "Progress"),
      h("progress", { id: "job-progress", max: 1, value: job.progress.fraction }),
      h("span", null, `${Math.round(job.progress.fraction * 100)}%`, job.progress.message ? ` — ${job.progress.message}` : "")) : null;
    return [
      h("div", { class: "job-head" },
        h("div", null, h("h1", { class: "mono" }, job.task), h("p", { class: "mono muted" }, job.task_id)),
        h("div", { class: "job-status" }, badge(job.status), actions)),
      h("dl", { class: "facts" }, facts.map(([k, v]) => h("div", null, h("dt", null, k), h("dd", null, String(v))))),
      progress,
      h("div", { class: "panels" },
        h("section", { "aria-labelledby": "args-title" }, h("h2", { id: "args-title" }, "Arguments"),
          h("h3", null, "args"), h("pre", { class: "code", "data-field": "args", tabindex: 0 }, pretty(job.args)),
          h("h3", null, "kwargs"), h("pre", { class: "code", "data-field": "kwargs", tabindex: 0 }, pretty(job.kwargs))),
        h("section", { "aria-labelledby": "result-title" }, h("h2", { id: "result-title" }, "Result"),
          job.status === "succeeded" ? h("pre", { class: "code", "data-field": "result", tabindex: 0 }, pretty(job.result))
            : h("p", { class: "muted" }, FINISHED.has(job.status) ? "No result." : "Not finished yet."))),
      h("section", { "aria-labelledby": "errors-title" },
        h("h2", { id: "errors-title" }, `Errors (${job.errors.length})`),
        job.errors.length ? h("ol", { class: "errors" }, job.errors.map((e, i) => {
          const last = i === job.errors.length - 1;
          return h("li", { "data-attempt": e.attempt },
            h("div", { class: "error-head" }, h("strong", null, `Attempt ${e.attempt}`), " ", when(e.at)),
            h("pre", { class: "error-text" }, e.error),
            e.traceback ? h("details", { "data-attempt": String(e.attempt), open: keep ? opened.has(String(e.attempt)) : last },
              h("summary", null, "Traceback"), h("pre", { class: "code traceback", tabindex: 0 }, e.traceback)) : null);
        })) : h("p", { class: "muted" }, "No attempt failed.")),
      h("section", { "aria-labelledby": "timeline-title" }, h("h2", { id: "timeline-title" }, "Timeline"), timeline(job)),
    ];
  }

  function timeline(job) {
    const events = [];
    if (job.enqueued_at) events.push([job.enqueued_at, "Enqueued", ""]);
    if (job.run_at && job.enqueued_at && Date.parse(job.run_at) > Date.parse(job.enqueued_at) + 1000) {
      events.push([job.run_at, FINISHED.has(job.status) ? "Was due" : "Due", "scheduled"]);
    }
    for (const e of job.errors) if (e.at) events.push([e.at, `Attempt ${e.attempt} failed`, "failed"]);
    if (job.started_at) events.push([job.started_at, "Started (latest attempt)", "running"]);
    if (job.finished_at) events.push([job.finished_at, `Finished: ${job.status}`, job.status]);
    events.sort((a, b) => Date.parse(a[0]) - Date.parse(b[0]));
    return h("ol", { class: "timeline" }, events.map(([at, text, kind]) =>
      h("li", { class: kind ? "t-" + kind : null }, h("span", { class: "t-text" }, text), " ",
        h("time", { datetime: at }, new Date(at).toLocaleString()))));
  }

  // -- routing and refresh ---------------------------------------------------------------

  function route() {
    const hash = location.hash || "#/";
    if (!hash.startsWith("#/")) return;
    generation += 1;
    const [path, query] = hash.slice(1).split("?");
    const params = new URLSearchParams(query || "");
    let jobId = null;
    if (path.startsWith("/jobs/")) {
      try { jobId = decodeURIComponent(path.slice("/jobs/".length)); } catch (_) { jobId = path.slice(6); }
    }
    let nav = "overview";
    if (path === "/jobs") {
      view = jobsPage(params);
      nav = params.get("status") === "failed" && [...params.keys()].length === 1 ? "failed" : "jobs";
    } else if (jobId !== null) {
      view = jobPage(jobId);
      nav = "jobs";
    } else {
      view = overviewPage();
    }
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === nav) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    refresh();
  }

  async function refresh() {
    const mine = generation;
    const current = view;
    try {
      const stats = await api("stats");
      if (mine !== generation) return;
      sample(stats);
      await current.refresh(stats);
      if (mine !== generation) return;
      showProblem(null);
      const stamp = document.getElementById("updated");
      stamp.textContent = "updated " + new Date().toLocaleTimeString();
      main.dataset.refreshed = String(Date.now());
    } catch (err) {
      if (mine === generation) showProblem(err);
    }
  }

  function setLive(on) {
    live = on;
    liveToggle.setAttribute("aria-pressed", String(on));
    document.getElementById("live-label").textContent = on ? "Live" : "Paused";
    window.clearInterval(timer);
    if (on) timer = window.setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
    announce(on ? "Live refresh on." : "Live refresh paused.");
  }

  liveToggle.addEventListener("click", () => setLive(!live));
  document.getElementById("skip").addEventListener("click", () => main.focus());
  document.getElementById("read-only").hidden = !READ_ONLY;
  window.addEventListener("hashchange", () => { route(); main.focus({ preventScroll: true }); });
  route();
  timer = window.setInterval(() => { if (live && !document.hidden) refresh(); }, REFRESH_MS);
})();
