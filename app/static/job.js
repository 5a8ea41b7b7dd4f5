// One job's page: while the job is active, refresh its state and output every 2 seconds;
// once it ends, reload once so outputs and history show in full.
(function () {
  const badge = document.getElementById("job-state");
  if (!badge || badge.dataset.active !== "1") return;
  const id = badge.dataset.job;
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
