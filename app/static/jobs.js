// The jobs table: refreshed from the JSON API every 2 seconds, filtered and paged.
// Values go into the page with textContent only, never as HTML.
(function () {
  const table = document.getElementById("jobs");
  const body = table.querySelector("tbody");
  const filter = document.getElementById("state-filter");
  const info = document.getElementById("page-info");
  const prev = document.getElementById("prev");
  const next = document.getElementById("next");
  const everyone = table.dataset.all === "1";
  const params = new URLSearchParams(location.search);
  const limit = 25;
  let offset = Number(params.get("offset") || 0);
  filter.value = params.get("state") || "";

  function cell(row, text, cls) {
    const td = document.createElement("td");
    if (cls) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      td.appendChild(span);
    } else {
      td.textContent = text == null ? "" : text;
    }
    row.appendChild(td);
    return td;
  }
  function when(iso) { return iso ? new Date(iso).toLocaleString() : ""; }

  async function refresh() {
    const query = new URLSearchParams({limit: String(limit), offset: String(offset)});
    if (filter.value) query.set("state", filter.value);
    if (everyone) query.set("all", "1");
    const response = await fetch("/api/jobs?" + query, {credentials: "same-origin"});
    if (!response.ok) { info.textContent = "Could not load jobs (" + response.status + ")"; return; }
    const page = await response.json();
    const rows = page.jobs.map(function (job) {
      const tr = document.createElement("tr");
      tr.dataset.job = job.id;
      const link = document.createElement("a");
      link.href = "/jobs/" + job.id;
      link.textContent = job.id;
      cell(tr, "").appendChild(link);
      cell(tr, job.tool_id);
      cell(tr, job.state, "state state-" + job.state);
      cell(tr, job.handler);
      cell(tr, job.destination);
      if (everyone) cell(tr, job.user_id);
      cell(tr, when(job.create_time));
      cell(tr, when(job.start_time));
      cell(tr, when(job.end_time));
      return tr;
    });
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = cell(tr, filter.value ? "No " + filter.value + " jobs." : "No jobs yet: pick a tool to run one.");
      td.colSpan = 9;
      td.className = "muted";
      rows.push(tr);
    }
    body.replaceChildren.apply(body, rows);
    const last = Math.min(offset + limit, page.total);
    info.textContent = page.total ? (offset + 1) + "–" + last + " of " + page.total : "";
    prev.disabled = offset === 0;
    next.disabled = last >= page.total;
  }
  function go(newOffset) {
    offset = Math.max(0, newOffset);
    const query = new URLSearchParams(location.search);
    query.set("offset", String(offset));
    if (filter.value) query.set("state", filter.value); else query.delete("state");
    history.replaceState(null, "", "?" + query);
    refresh();
  }
  filter.addEventListener("change", function () { go(0); });
  prev.addEventListener("click", function () { go(offset - limit); });
  next.addEventListener("click", function () { go(offset + limit); });
  refresh();
  setInterval(refresh, 2000);
})();
