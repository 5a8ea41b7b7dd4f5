// The jobs table: refreshed from the JSON API every 2 seconds, filtered and paged.
// Values go into the page with textContent only, never as HTML. Times in the one format
// of every page (Muleteer.when, app/static/muleteer.js); in the all-users view (admins) the
// owner's email, from GET /api/users (admins only), read once.
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
  function timeCell(row, iso) {
    const td = cell(row, "");
    td.className = "time";
    td.appendChild(Muleteer.when(iso));
  }
  let owners = null;  // {user id: email}, for the all-users view
  async function loadOwners() {
    const response = await fetch("/api/users", {credentials: "same-origin"});
    if (!response.ok) return;
    owners = {};
    (await response.json()).forEach(function (u) { owners[u.id] = u.email; });
  }

  async function refresh() {
    const query = new URLSearchParams({limit: String(limit), offset: String(offset)});
    if (filter.value) query.set("state", filter.value);
    if (everyone) query.set("all", "1");
    const response = await fetch("/api/jobs?" + query, {credentials: "same-origin"});
    if (!response.ok) { info.textContent = "Could not load jobs (" + response.status + ")"; return; }
    const page = await response.json();
    if (everyone && (owners === null || page.jobs.some(function (j) { return j.user_id != null && !(j.user_id in owners); }))) {
      await loadOwners();  // once, and again only for a user created since
      owners = owners || {};
      page.jobs.forEach(function (j) {  // not in the list (or no list): asked once only
        if (j.user_id != null && !(j.user_id in owners)) owners[j.user_id] = "user " + j.user_id;
      });
    }
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
      if (everyone) {
        // A long email may wrap after its "@" (a narrow screen, a long address), nowhere else.
        const email = job.user_id == null ? "" : owners[job.user_id];
        const td = cell(tr, "");
        td.className = "owner";
        const at = email.indexOf("@");
        if (at < 0) td.textContent = email;
        else td.append(email.slice(0, at + 1), document.createElement("wbr"), email.slice(at + 1));
      }
      timeCell(tr, job.create_time);
      timeCell(tr, job.start_time);
      timeCell(tr, job.end_time);
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
