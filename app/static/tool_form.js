// The tool form of a Galaxy wrapper (app/templates/tool_form.html, app/tool_form.py):
//  - a conditional shows only the <when> its test selects; the fields of hidden blocks are
//    disabled so they are not sent;
//  - a repeat adds blocks from its <template> and removes them within min..max, and
//    renumbers the blocks after a removed one so the flat names ("r_0|x") have no gaps;
//  - a data_column offers the columns of the chosen dataset (GET /api/datasets/N:
//    metadata.columns, column_names), else a number input;
//  - the version selector shows the chosen version's form.
(function () {
  const form = document.getElementById("tool-form");
  if (!form) return;
  const INDEX = "__index__";
  // The attributes that carry a flat name, or ids made from one ("p-", "e-", "h-"...).
  const NAMED = ["name", "id", "for", "aria-describedby", "aria-labelledby", "data-prefix",
                 "data-pattern", "data-name", "data-param", "data-ref"];

  // -- flat names: rename a block's prefix everywhere inside it ---------------------------
  function renameToken(token, from, to) {
    const m = /^([a-z]-)?(.*)$/.exec(token);
    const head = m[1] || "", rest = m[2];
    return rest.startsWith(from) ? head + to + rest.slice(from.length) : token;
  }

  function rename(root, from, to) {
    const elements = root.querySelectorAll ? Array.from(root.querySelectorAll("*")) : [];
    if (root.nodeType === 1) elements.unshift(root);
    elements.forEach(function (el) {
      NAMED.forEach(function (attr) {
        const value = el.getAttribute(attr);
        if (value === null) return;
        const renamed = value.split(" ").map(function (t) { return renameToken(t, from, to); }).join(" ");
        if (renamed !== value) el.setAttribute(attr, renamed);
      });
      if (el.tagName === "TEMPLATE") rename(el.content, from, to);
    });
  }

  // -- conditionals and what is sent --------------------------------------------------------
  function testValue(conditional) {
    const field = conditional.querySelector(":scope > .field");
    const inputs = field ? field.querySelectorAll(".cond-test") : [];
    for (const input of inputs) {
      if (input.type === "checkbox") return input.checked ? input.dataset.true : input.dataset.false;
      if (input.type === "radio") { if (input.checked) return input.value; continue; }
      return input.value;
    }
    return null;
  }

  function refresh() {
    form.querySelectorAll(".conditional").forEach(function (conditional) {
      const value = testValue(conditional);
      conditional.querySelectorAll(":scope > .cases > .when").forEach(function (when) {
        when.hidden = when.dataset.when !== value;
      });
    });
    form.querySelectorAll("input, select, textarea").forEach(function (input) {
      if (input.name === "csrf_token" || input.name === "tool_version") return;
      input.disabled = !!input.closest(".when[hidden]") || input.dataset.off === "1";
    });
    form.querySelectorAll(".repeat").forEach(updateRepeat);
  }

  // -- repeats --------------------------------------------------------------------------------
  function blocksOf(repeat) {
    return Array.from(repeat.querySelectorAll(":scope > .repeat-blocks > .repeat-block"));
  }

  function updateRepeat(repeat) {
    const blocks = blocksOf(repeat);
    const min = parseInt(repeat.dataset.min || "0", 10);
    const max = repeat.dataset.max === "" ? Infinity : parseInt(repeat.dataset.max, 10);
    const title = repeat.querySelector(":scope > legend").textContent;
    repeat.querySelector(":scope > .repeat-add").disabled = blocks.length >= max;
    blocks.forEach(function (block, i) {
      block.querySelector(":scope > .repeat-head .repeat-number").textContent = String(i + 1);
      const remove = block.querySelector(":scope > .repeat-head > .repeat-remove");
      remove.disabled = blocks.length <= min;
      remove.setAttribute("aria-label", "Remove " + title + " " + (i + 1));
    });
  }

  function addBlock(repeat) {
    const blocks = blocksOf(repeat);
    const template = repeat.querySelector(":scope > template");
    const fresh = template.content.cloneNode(true);
    rename(fresh, repeat.dataset.pattern, repeat.dataset.name + "_" + blocks.length + "|");
    const block = fresh.querySelector(".repeat-block");
    repeat.querySelector(":scope > .repeat-blocks").appendChild(fresh);
    refresh();
    columns(block);
    const first = block.querySelector("input:not([type=hidden]):not(:disabled), select:not(:disabled), textarea:not(:disabled)");
    if (first) first.focus();
  }

  function removeBlock(repeat, block) {
    block.remove();
    blocksOf(repeat).forEach(function (b, i) {
      const prefix = repeat.dataset.name + "_" + i + "|";
      if (b.dataset.prefix !== prefix) rename(b, b.dataset.prefix, prefix);
    });
    refresh();
    repeat.querySelector(":scope > .repeat-add").focus();
  }

  form.addEventListener("click", function (event) {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.classList.contains("repeat-add")) {
      addBlock(button.closest(".repeat"));
    } else if (button.classList.contains("repeat-remove")) {
      removeBlock(button.closest(".repeat"), button.closest(".repeat-block"));
    }
  });

  // -- data_column: the chosen dataset's columns ----------------------------------------------
  const metadata = {};  // dataset id -> a promise of its metadata (or null)

  function datasetMetadata(id) {
    if (!(id in metadata)) {
      metadata[id] = fetch("/api/datasets/" + encodeURIComponent(id), {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) { return d && d.metadata ? d.metadata : null; })
        .catch(function () { return null; });
    }
    return metadata[id];
  }

  function chosenDataset(ref) {
    const picker = form.querySelector('select[name="' + CSS.escape(ref) + '"].datasets-picker');
    if (!picker) return null;
    const option = Array.from(picker.selectedOptions).find(function (o) { return o.value; });
    return option ? option.value : null;
  }

  function showSelect(picker, on) {
    const number = picker.querySelector(".column-number");
    const select = picker.querySelector(".column-select");
    // Back to the number input: it takes what the select had chosen.
    if (!on && select.dataset.off !== "1") number.value = picker.dataset.value || "";
    number.hidden = on; select.hidden = !on;
    number.dataset.off = on ? "1" : "";
    select.dataset.off = on ? "" : "1";
    // The label names the visible one.
    document.getElementById("l-" + number.name).htmlFor = on ? select.id : number.id;
    number.disabled = on || !!picker.closest(".when[hidden]");
    select.disabled = !on || !!picker.closest(".when[hidden]");
  }

  function fillColumns(picker) {
    const id = chosenDataset(picker.dataset.ref);
    const number = picker.querySelector(".column-number");
    const select = picker.querySelector(".column-select");
    if (!id) { showSelect(picker, false); return Promise.resolve(); }
    return datasetMetadata(id).then(function (meta) {
      if (chosenDataset(picker.dataset.ref) !== id) return;  // changed meanwhile
      const count = meta && parseInt(meta.columns, 10);
      if (!count) { showSelect(picker, false); return; }
      // Keep what was chosen (or typed) across a change of dataset where it still exists.
      const current = (select.dataset.off === "1" ? number.value : Array.from(select.selectedOptions)
        .map(function (o) { return o.value; }).join(",")) || picker.dataset.value || "";
      const wanted = current.split(",").map(function (v) { return v.trim(); }).filter(Boolean);
      const names = picker.dataset.header === "1" && Array.isArray(meta.column_names) ? meta.column_names : null;
      select.textContent = "";
      if (picker.dataset.optional === "1" && !select.multiple) select.add(new Option("(nothing selected)", ""));
      for (let c = 1; c <= count; c++) {
        const label = "Column " + c + (names && names[c - 1] ? ": " + names[c - 1] : "");
        select.add(new Option(label, String(c), false, wanted.indexOf(String(c)) >= 0));
      }
      number.value = wanted.join(",");
      showSelect(picker, true);
    });
  }

  function columns(root) {
    const pickers = Array.from((root || form).querySelectorAll(".column-picker"));
    return Promise.all(pickers.map(fillColumns));
  }

  form.addEventListener("change", function (event) {
    const target = event.target;
    if (target.classList.contains("cond-test")) refresh();
    if (target.classList.contains("datasets-picker")) {
      form.querySelectorAll('.column-picker[data-ref="' + CSS.escape(target.name) + '"]').forEach(fillColumns);
    }
    if (target.classList.contains("column-select")) {
      target.closest(".column-picker").dataset.value = Array.from(target.selectedOptions)
        .map(function (o) { return o.value; }).join(",");
    }
  });

  // -- the version selector -------------------------------------------------------------------
  const version = document.getElementById("tool-version");
  if (version) version.addEventListener("change", function () { version.form.submit(); });

  refresh();
  form.dataset.columns = "loading";
  columns().then(function () { form.dataset.columns = "ready"; });
})();
