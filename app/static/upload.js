// A small tus 1.0 client (https://tus.io/protocols/resumable-upload), no library: the
// Datasets page sends files with it to /api/upload/resumable_upload/ (app/tus.py), then
// makes a dataset of the finished upload with POST /api/datasets {upload_id, name, format}.
//
//   const up = Muleteer.Upload(file, {onProgress: function (sent, total) {...}});
//   up.start().then(function (uploadId) {...}, function (error) {...});  up.abort();
//
// - creation: POST with Upload-Length and Upload-Metadata (filename, filetype, base64);
// - the file goes up in 4 MiB PATCH requests (XMLHttpRequest, for its upload progress),
//   each at most the server's tus_max_chunk (8 MiB by default);
// - a failed chunk (network, 5xx, 409, 423) is retried after a pause, from the offset the
//   server has (HEAD): nothing is sent twice; after a reload of the page the same file
//   (name, size, date) resumes where it stopped (its upload URL is kept in localStorage).
// Writes carry the page's CSRF token (the session cookie authenticates them).
(function () {
  const ENDPOINT = "/api/upload/resumable_upload/";
  const CHUNK = 4 * 1024 * 1024;
  const RETRY_DELAYS = [500, 1000, 2000, 4000, 8000];
  const STORE = "muleteer-tus:";

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }
  function b64(text) {  // UTF-8, then base64 (Upload-Metadata values)
    const bytes = new TextEncoder().encode(text);
    let binary = "";
    bytes.forEach(function (b) { binary += String.fromCharCode(b); });
    return btoa(binary);
  }
  function errorOf(xhr, what) {
    let message = "";
    try { message = JSON.parse(xhr.responseText).error || ""; } catch (e) { /* not JSON */ }
    const err = new Error(message || (what + " failed (" + (xhr.status || "no answer") + ")"));
    err.status = xhr.status;
    return err;
  }
  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  function Upload(file, options) {
    options = options || {};
    const chunkSize = options.chunkSize || CHUNK;
    const fingerprint = STORE + [file.name, file.size, file.lastModified].join("/");
    let url = null;
    let current = null;   // the XMLHttpRequest in flight
    let aborted = false;

    function request(method, target, headers, body, onUploadProgress) {
      return new Promise(function (resolve, reject) {
        if (aborted) { reject(abortError()); return; }
        const xhr = new XMLHttpRequest();
        current = xhr;
        xhr.open(method, target);
        xhr.setRequestHeader("Tus-Resumable", "1.0.0");
        if (method !== "HEAD" && method !== "GET") xhr.setRequestHeader("X-CSRFToken", csrfToken());
        Object.keys(headers || {}).forEach(function (k) { xhr.setRequestHeader(k, headers[k]); });
        if (onUploadProgress) {
          xhr.upload.addEventListener("progress", function (e) { onUploadProgress(e.loaded); });
        }
        xhr.addEventListener("load", function () { current = null; resolve(xhr); });
        xhr.addEventListener("error", function () {
          current = null;
          const err = new Error("the connection failed");
          err.status = 0;
          reject(err);
        });
        xhr.addEventListener("abort", function () { current = null; reject(abortError()); });
        xhr.send(body === undefined ? null : body);
      });
    }
    function abortError() {
      const err = new Error("cancelled");
      err.aborted = true;
      return err;
    }
    function progress(sent) {
      if (options.onProgress) options.onProgress(Math.min(sent, file.size), file.size);
    }
    function remember() { try { localStorage.setItem(fingerprint, url); } catch (e) { /* private mode */ } }
    function forget() { try { localStorage.removeItem(fingerprint); } catch (e) { /* private mode */ } }

    // The server's offset for our upload, or null if it is gone (expired, finished, another user's).
    async function serverOffset() {
      const xhr = await request("HEAD", url);
      if (xhr.status !== 200) return null;
      const length = Number(xhr.getResponseHeader("Upload-Length"));
      const offset = Number(xhr.getResponseHeader("Upload-Offset"));
      if (length !== file.size || !(offset >= 0 && offset <= file.size)) return null;
      return offset;
    }
    async function create() {
      const metadata = "filename " + b64(file.name) + ",filetype " + b64(file.type || "application/octet-stream");
      const xhr = await request("POST", ENDPOINT, {"Upload-Length": String(file.size), "Upload-Metadata": metadata});
      if (xhr.status !== 201) throw errorOf(xhr, "Starting the upload");
      url = new URL(xhr.getResponseHeader("Location"), location.href).pathname;
      remember();
    }
    async function patch(offset) {
      const end = Math.min(offset + chunkSize, file.size);
      const xhr = await request("PATCH", url, {
        "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream",
      }, file.slice(offset, end), function (loaded) { progress(offset + loaded); });
      if (xhr.status !== 204) throw errorOf(xhr, "Sending a piece of the file");
      const next = Number(xhr.getResponseHeader("Upload-Offset"));
      return next > offset ? next : end;
    }
    function retryable(err) {
      return !err.aborted && (err.status === 0 || err.status >= 500 || err.status === 409 || err.status === 423);
    }

    async function start() {
      let offset = null;
      const saved = (function () { try { return localStorage.getItem(fingerprint); } catch (e) { return null; } })();
      if (saved) {
        url = saved;
        try { offset = await serverOffset(); } catch (e) { if (e.aborted) throw e; offset = null; }
        if (offset === null) forget();
      }
      if (offset === null) { await create(); offset = 0; }
      progress(offset);
      let failures = 0;
      while (offset < file.size) {
        try {
          offset = await patch(offset);
          failures = 0;
          progress(offset);
        } catch (err) {
          if (!retryable(err) || failures >= RETRY_DELAYS.length) throw err;
          if (options.onRetry) options.onRetry(err, failures + 1);
          await sleep(RETRY_DELAYS[failures++]);
          const resumed = await serverOffset().catch(function (e) { if (e.aborted) throw e; return null; });
          if (resumed === null) {
            if (failures >= RETRY_DELAYS.length) throw err;
            continue;  // the server did not answer: try again from the same offset
          }
          offset = resumed;
          progress(offset);
        }
      }
      forget();
      return url.replace(/\/+$/, "").split("/").pop();
    }

    return {
      start: start,
      abort: function () {
        if (aborted) return;
        aborted = true;
        if (current) current.abort();
        forget();
        if (url) {  // termination: the server drops what it has
          const xhr = new XMLHttpRequest();
          xhr.open("DELETE", url);
          xhr.setRequestHeader("Tus-Resumable", "1.0.0");
          xhr.setRequestHeader("X-CSRFToken", csrfToken());
          xhr.send();
        }
      },
    };
  }

  window.Muleteer = window.Muleteer || {};
  window.Muleteer.Upload = Upload;
  window.Muleteer.csrfToken = csrfToken;
})();
