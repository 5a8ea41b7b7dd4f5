// One job's page: while the job is active, refresh its state, its history and its output
// every 2 seconds (one request for the state and history: they always agree); once it
// ends, reload once so outputs, exit code and info show in full.
(function () {
  const badge = document.getElementById("job-state");
  if (!badge || badge.dataset.active !== "1") return;
  const id = badge.dataset.job;
  const historyList = document.getElementById("history");

  function showHistory(history) {
    if (!historyList || !Array.isArray(history)) return;
    const items = history.map(function (h) {
      const li = document.createElement("li");
      const state = document.createElement("span");
      state.className = "state state-" + h.state;
      state.textContent = h.state;
      li.append(state, " ", Muleteer.when(h.time));
      if (h.handler) li.append(" · " + h.handler);
      if (h.info) {
        const small = document.createElement("small");
        small.textContent = h.info;
        li.append(document.createElement("br"), small);
      }
      return li;
    });
    historyList.replaceChildren.apply(historyList, items);
  }
  // Outputs stored as datasets while the job runs (GET /api/jobs/N "outputs": {name:
  // {id, name, format, size}}): each links to its bytes and to the Datasets page.
  function size(bytes) {
    const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let n = bytes, u = 0;
    while (n >= 1024 && u < units.length - 1) { n /= 1024; u++; }
    return u === 0 ? bytes + " bytes" : n.toFixed(n < 100 ? 1 : 0) + " " + units[u];
  }
  function showOutputs(outputs) {
    const list = document.getElementById("job-outputs");
    if (!list || !outputs || Array.isArray(outputs)) return;
    list.querySelectorAll("li[data-name]").forEach(function (li) {
      const d = outputs[li.dataset.name];
      if (!d || String(li.dataset.dataset) === String(d.id)) return;
      const label = li.dataset.label || li.dataset.name;
      const name = document.createElement("span");
      name.className = "muted";
      name.textContent = label + ":";
      const link = document.createElement("a");
      link.href = "/api/datasets/" + d.id + "/display";
      link.textContent = d.name;
      const meta = document.createElement("span");
      meta.className = "muted";
      meta.textContent = d.format + ", " + size(d.size);
      const page = document.createElement("a");
      page.className = "small";
      page.href = "/datasets?" + new URLSearchParams({name: d.name});
      page.textContent = "in Datasets";
      li.dataset.dataset = d.id;
      li.replaceChildren(name, " ", link, " ", meta, " · ", page);
    });
  }
  async function text(path) {
    const r = await fetch(path, {credentials: "same-origin"});
    return r.ok ? r.text() : "";
  }
  async function refresh() {
    const r = await fetch("/api/jobs/" + id, {credentials: "same-origin"});
    if (!r.ok) return;
    const job = await r.json();
    badge.textContent = job.state;
    badge.className = "state state-" + job.state;
    showHistory(job.history);
    showOutputs(job.outputs);
    const cancel = document.getElementById("cancel-form");
    if (cancel && ["new", "queued", "running"].indexOf(job.state) < 0) cancel.remove();
    document.getElementById("job-handler").textContent = job.handler || "";
    document.getElementById("stdout").textContent = (await text("/api/jobs/" + id + "/stdout")).slice(-16384);
    document.getElementById("stderr").textContent = (await text("/api/jobs/" + id + "/stderr")).slice(-16384);
    if (["ok", "error", "deleted"].indexOf(job.state) >= 0) {
      clearInterval(timer);
      location.reload();
    }
  }
  const timer = setInterval(refresh, 2000);
})();
