// The Datasets page: upload files (picker or drag and drop) with Muleteer.Upload (upload.js,
// the resumable protocol) then POST /api/datasets {upload_id, name, format}; pasted text
// (POST /api/datasets JSON); my datasets from GET /api/datasets, with their peek, a
// download link and a Delete button that asks first. Values go into the page with
// textContent only, never as HTML; the API's errors ({"error", "field"}) are shown next
// to the form (or the field) they are about.
(function () {
  const uploadForm = document.getElementById("upload-form");
  if (!uploadForm) return;
  const fileInput = document.getElementById("upload-file");
  const dropzone = document.getElementById("dropzone");
  const uploadFormat = document.getElementById("upload-format");
  const uploadError = document.getElementById("upload-error");
  const uploads = document.getElementById("uploads");
  const pasteForm = document.getElementById("paste-form");
  const pasteError = document.getElementById("paste-error");
  const body = document.querySelector("#datasets tbody");
  const listError = document.getElementById("list-error");
  const nameFilter = document.getElementById("name-filter");
  const info = document.getElementById("page-info");
  const prev = document.getElementById("prev");
  const next = document.getElementById("next");
  const limit = 25;
  let offset = 0;
  const named = new URLSearchParams(location.search).get("name");  // a job page's "in Datasets" link
  if (named) nameFilter.value = named;

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }
  async function api(method, path, json) {
    const options = {method: method, credentials: "same-origin", headers: {}};
    if (method !== "GET") options.headers["X-CSRFToken"] = csrfToken();
    if (json !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch (e) {
      return {ok: false, status: 0, data: {error: "The server could not be reached."}};
    }
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok && !(data && data.error)) data = {error: "The server answered " + response.status + "."};
    return {ok: response.ok, status: response.status, data: data};
  }
  function size(bytes) {
    if (bytes == null) return "";
    const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let n = bytes, u = 0;
    while (n >= 1024 && u < units.length - 1) { n /= 1024; u++; }
    return u === 0 ? bytes + " bytes" : n.toFixed(n < 100 ? 1 : 0) + " " + units[u];
  }

  // -- uploads ------------------------------------------------------------------------
  function uploadFile(file) {
    const format = uploadFormat.value || "auto";
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.name;
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", "Upload of " + file.name);
    const percent = document.createElement("span");
    percent.className = "percent";
    percent.textContent = "0%";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "small";
    cancel.textContent = "Cancel";
    const status = document.createElement("small");
    status.className = "upload-status muted";
    status.textContent = "Starting…";
    li.append(name, " ", bar, " ", percent, " ", cancel, document.createElement("br"), status);
    uploads.prepend(li);

    const up = Muleteer.Upload(file, {
      onProgress: function (sent, total) {
        const p = total ? Math.floor(sent * 100 / total) : 100;
        bar.value = p;
        percent.textContent = p + "%";
        status.textContent = size(sent) + " of " + size(total);
      },
      onRetry: function (err, attempt) {
        status.textContent = "Connection trouble (" + err.message + "): resuming, attempt " + attempt + "…";
      },
    });
    cancel.addEventListener("click", function () { up.abort(); });
    up.start().then(async function (uploadId) {
      cancel.remove();
      status.textContent = "Checking the file…";
      const result = await api("POST", "/api/datasets", {upload_id: uploadId, name: file.name, format: format});
      if (!result.ok) throw Object.assign(new Error(result.data.error), {field: result.data.field});
      li.classList.add("done");
      li.dataset.dataset = result.data.id;
      status.textContent = "Stored as dataset " + result.data.id + " (" + result.data.format + ", " + size(result.data.size) + ").";
      refresh();
    }).catch(function (err) {
      cancel.remove();
      li.classList.add("failed");
      status.className = "upload-status field-error";
      status.textContent = err.aborted ? "Cancelled." : file.name + ": " + err.message;
      if (!err.aborted) uploadError.textContent = file.name + ": " + err.message;
    });
  }
  function uploadFiles(files) {
    uploadError.textContent = "";
    Array.prototype.forEach.call(files, uploadFile);
  }
  fileInput.addEventListener("change", function () {
    uploadFiles(fileInput.files);
    fileInput.value = "";
  });
  uploadForm.addEventListener("submit", function (e) { e.preventDefault(); });
  ["dragenter", "dragover"].forEach(function (type) {
    dropzone.addEventListener(type, function (e) {
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
      dropzone.classList.add("over");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    dropzone.addEventListener(type, function () { dropzone.classList.remove("over"); });
  });
  dropzone.addEventListener("drop", function (e) {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) uploadFiles(e.dataTransfer.files);
  });

  // -- pasted text --------------------------------------------------------------------
  function showPasteErrors(error, field) {
    pasteForm.querySelectorAll(".field").forEach(function (div) {
      const input = div.querySelector("input, select, textarea");
      const here = !!field && input && input.name === field;
      div.classList.toggle("invalid", here);
      div.querySelector(".field-error").textContent = here ? error : "";
    });
    const shown = field && pasteForm.querySelector('.field [name="' + field + '"]');
    pasteError.textContent = shown ? "" : (error || "");
    if (shown) shown.focus();
  }
  pasteForm.addEventListener("submit", async function (e) {
    e.preventDefault();
    const content = pasteForm.elements.content.value;
    if (!content) { showPasteErrors("Paste or type the text to store.", "content"); return; }
    showPasteErrors("", null);
    const button = pasteForm.querySelector("button[type=submit]");
    button.disabled = true;
    const json = {content: content, format: pasteForm.elements.format.value || "auto"};
    if (pasteForm.elements.name.value.trim()) json.name = pasteForm.elements.name.value.trim();
    const result = await api("POST", "/api/datasets", json);
    button.disabled = false;
    if (!result.ok) { showPasteErrors(result.data.error, result.data.field); return; }
    pasteForm.elements.content.value = "";
    pasteForm.elements.name.value = "";
    pasteError.textContent = "";
    const done = document.createElement("span");
    done.className = "muted";
    done.setAttribute("role", "status");
    done.textContent = "Stored as dataset " + result.data.id + ".";
    pasteError.replaceChildren(done);
    refresh();
  });

  // -- the list -----------------------------------------------------------------------
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    if (text != null) td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  const open = new Set();  // datasets whose peek is shown: kept open across refreshes
  function row(ds) {
    const tr = document.createElement("tr");
    tr.dataset.dataset = ds.id;
    const nameCell = cell(tr, null, "name");
    if (ds.peek != null && ds.peek !== "") {
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = ds.name;
      const pre = document.createElement("pre");
      pre.className = "peek";
      pre.textContent = ds.peek;
      details.append(summary, pre);
      details.open = open.has(ds.id);
      details.addEventListener("toggle", function () {
        if (details.open) open.add(ds.id); else open.delete(ds.id);
      });
      nameCell.appendChild(details);
    } else {
      nameCell.textContent = ds.name;
    }
    cell(tr, ds.format, "format");
    const sizeCell = cell(tr, size(ds.size), "size");
    sizeCell.dataset.bytes = ds.size;
    sizeCell.title = ds.size + " bytes";
    const state = document.createElement("span");
    state.className = "state state-" + ds.state;
    state.textContent = ds.state;
    cell(tr, null).appendChild(state);
    cell(tr, null, "time").appendChild(Muleteer.when(ds.create_time));
    const actions = cell(tr, null, "actions");
    if (ds.state === "ok") {
      const link = document.createElement("a");
      link.href = ds.display_url;
      link.textContent = "Download";
      link.setAttribute("download", ds.name);
      const del = document.createElement("button");
      del.type = "button";
      del.className = "small danger";
      del.textContent = "Delete";
      del.setAttribute("aria-label", "Delete " + ds.name);
      del.addEventListener("click", async function () {
        if (!window.confirm('Delete dataset "' + ds.name + '"? Its file is removed.')) return;
        del.disabled = true;
        const result = await api("DELETE", ds.url);
        if (!result.ok) { listError.textContent = ds.name + ": " + result.data.error; del.disabled = false; return; }
        listError.textContent = "";
        refresh();
      });
      actions.append(link, " ", del);
    }
    return tr;
  }
  let pending = null;
  async function refresh() {
    const query = new URLSearchParams({limit: String(limit), offset: String(offset)});
    if (nameFilter.value.trim()) query.set("name", nameFilter.value.trim());
    const mine = pending = api("GET", "/api/datasets?" + query);
    const result = await mine;
    if (mine !== pending) return;  // a newer refresh started meanwhile
    if (!result.ok) { listError.textContent = "Could not load datasets: " + result.data.error; return; }
    const page = result.data;
    if (page.datasets.length === 0 && offset > 0 && page.total > 0) { offset = 0; refresh(); return; }
    const rows = page.datasets.map(row);
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = cell(tr, nameFilter.value.trim() ? "No dataset with that name." : "No datasets yet: upload a file or paste some text.", "muted");
      td.colSpan = 6;
      rows.push(tr);
    }
    body.replaceChildren.apply(body, rows);
    const last = Math.min(offset + limit, page.total);
    info.textContent = page.total ? (offset + 1) + "–" + last + " of " + page.total : "";
    prev.disabled = offset === 0;
    next.disabled = last >= page.total;
  }
  prev.addEventListener("click", function () { offset = Math.max(0, offset - limit); refresh(); });
  next.addEventListener("click", function () { offset += limit; refresh(); });
  let typing = null;
  nameFilter.addEventListener("input", function () {
    clearTimeout(typing);
    typing = setTimeout(function () { offset = 0; refresh(); }, 250);
  });
  // Jobs add their outputs: look again when the page comes back into view.
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
  refresh();
})();
