// What every page shares (loaded by base.html before a page's own script; no inline script
// or handler anywhere: the pages run under `script-src 'self'`).
//  - Muleteer.when(iso): a <time> in the one format of every page, "2026-11-29 14:03:07 UTC",
//    as the server's `when` filter writes it (app/pages.py); the date and the time each
//    stay on one line when a narrow column wraps them.
//  - A form with data-confirm="question" is sent only if the person confirms.
(function () {
  function pad(n) { return String(n).padStart(2, "0"); }

  function when(iso) {
    const out = document.createElement("time");
    if (!iso) return out;
    const d = new Date(iso);
    if (isNaN(d.getTime())) { out.textContent = iso; return out; }
    out.dateTime = iso;
    const day = document.createElement("span");
    day.textContent = d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
    const time = document.createElement("span");
    time.textContent = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + " UTC";
    out.append(day, " ", time);
    return out;
  }

  document.addEventListener("submit", function (event) {
    const question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  window.Muleteer = {when: when};
})();
