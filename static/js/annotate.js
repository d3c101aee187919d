// Keyboard-first annotation. The forms work without this file (plain POST); this adds keys,
// the focused rubric row, the time actually spent on the item, and shows refusals (4xx).
(function () {
  "use strict";
  var shownAt = Date.now(), activeMs = 0;

  function resetClock() { shownAt = Date.now(); activeMs = 0; }
  document.addEventListener("visibilitychange", function () {
    // Count only the time the page was visible: a tab left in the background is not work.
    if (document.hidden) { activeMs += Date.now() - shownAt; } else { shownAt = Date.now(); }
  });
  function secondsSpent() { return (activeMs + (document.hidden ? 0 : Date.now() - shownAt)) / 1000; }

  function form() { return document.getElementById("rate-form"); }
  function rows() { var f = form(); return f ? Array.prototype.slice.call(f.querySelectorAll(".rubric-row")) : []; }
  function focusedIndex() { return rows().findIndex(function (r) { return r.classList.contains("focused"); }); }
  function focusRow(i) {
    var all = rows();
    if (!all.length) return;
    i = Math.max(0, Math.min(all.length - 1, i));
    all.forEach(function (r, j) { r.classList.toggle("focused", j === i); });
    all[i].focus();
  }

  // The weighted score is a suggestion only: it never gives a grade label of its own,
  // it says which way the rubric leans, and the Good/Bad button pressed is the verdict.
  function updateWeighted() {
    var out = document.getElementById("weighted");
    if (!form() || !out) return;
    var total = 0, filled = 0;
    rows().forEach(function (row) {
      var checked = row.querySelector("input:checked");
      var weight = parseFloat(row.querySelector(".weight").textContent);
      if (checked) { total += weight * parseInt(checked.value, 10); filled += 1; }
    });
    var complete = filled === rows().length;
    out.textContent = complete ? total.toFixed(2) : (filled ? "…" : "—");
    var hint = document.getElementById("rubric-suggests");
    if (hint) {
      hint.textContent = complete
        ? "评分倾向" + (total >= 2 ? "「好」" : "「不好」") + "，仅供参考 the rubric leans " + (total >= 2 ? "Good" : "Bad") +
          "; your Good/Bad decides"
        : (filled ? "填完五项才有加权分 rate all five parts for a score, or clear them" : "");
    }
  }

  function clearRubric() {
    rows().forEach(function (row) {
      row.querySelectorAll("input:checked").forEach(function (input) { input.checked = false; });
    });
    updateWeighted(); focusRow(0);
  }

  function say(text) {
    var box = document.getElementById("messages");
    if (!box) return;
    box.innerHTML = "";
    var p = document.createElement("p");
    p.className = "message error";
    p.textContent = text;
    box.appendChild(p);
  }

  function press(selector) {
    var button = document.querySelector(selector);
    if (!button) return;
    var owner = button.form;
    if (owner && owner.id === "rate-form") {
      // The rubric is optional, but a begun one must be finished (or cleared) to give a score.
      var missing = rows().findIndex(function (r) { return !r.querySelector("input:checked"); });
      var filled = rows().some(function (r) { return r.querySelector("input:checked"); });
      if (button.name === "verdict" && filled && missing !== -1) {
        say("评分表只填了一部分：填完五项，或按 Delete 清空后只交好/不好。 The rubric is half filled: rate all five parts (1–3), or press Delete to clear it and give Good/Bad alone.");
        focusRow(missing); return;
      }
      owner.querySelector("input[name=seconds]").value = secondsSpent().toFixed(1);
    }
    button.click();  // a click (not requestSubmit) lets htmx see which button submitted
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target.matches && target.matches("textarea, input[type=text], select")) {
      if (event.key === "Escape") { target.blur(); focusRow(Math.max(focusedIndex(), 0)); }
      return;
    }
    var f = form(), key = event.key.toLowerCase(), kind = f ? f.dataset.kind : null;
    if (key === "u") { event.preventDefault(); press("#undo-form button"); return; }
    if (!f) return;
    if (kind === "pointwise") {
      var i = focusedIndex();
      if (key === "1" || key === "2" || key === "3") {
        event.preventDefault();
        var row = rows()[Math.max(i, 0)], input = row && row.querySelector("input[value='" + key + "']");
        if (input) { input.checked = true; updateWeighted(); focusRow(Math.max(i, 0) + 1); }
        return;
      }
      if (event.key === "ArrowDown" || event.key === "ArrowUp" || event.key === "Tab") {
        var step = (event.key === "ArrowUp" || (event.key === "Tab" && event.shiftKey)) ? -1 : 1;
        var next = i + step;
        // Tab past the last (or before the first) part leaves the rubric the usual way.
        if (event.key === "Tab" && (next < 0 || next >= rows().length)) return;
        event.preventDefault(); focusRow(next); return;
      }
      if (key === "delete") { event.preventDefault(); clearRubric(); return; }
    }
    // Verdict and choice buttons carry their keys (annotation/keys.py: one map for every page).
    var action = /^[a-z0-9]+$/.test(key) && f.querySelector('button[data-key="' + key + '"], button[data-alt-key="' + key + '"]');
    if (action) { event.preventDefault(); press('#rate-form button[value="' + action.value + '"]'); return; }
    if (key === "s") { event.preventDefault(); press("#skip-form button"); return; }
    if (key === "c") { event.preventDefault(); var c = f.querySelector("textarea"); if (c) c.focus(); }
  });

  document.addEventListener("change", function (event) {
    var row = event.target.closest && event.target.closest(".rubric-row");
    if (!row) return;
    updateWeighted();
    rows().forEach(function (r) { r.classList.toggle("focused", r === row); });
  });
  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("#clear-rubric")) { clearRubric(); return; }
    var row = event.target.closest && event.target.closest(".rubric-row");
    if (row) rows().forEach(function (r) { r.classList.toggle("focused", r === row); });
  });

  // Mouse submits fill in the time too.
  document.addEventListener("submit", function (event) {
    var seconds = event.target.querySelector && event.target.querySelector("input[name=seconds]");
    if (seconds && !seconds.value) seconds.value = secondsSpent().toFixed(1);
  }, true);

  // htmx leaves 4xx responses unswapped by default; ours are short messages meant to be shown.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status === 400 || status === 403 || status === 404 || status === 409) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (document.getElementById("rate-form") && !document.querySelector("#item[data-seen]")) {
      var item = document.getElementById("item");
      item.setAttribute("data-seen", "1");
      // The new item arrives with its first part marked focused; keys typed since already moved it.
      resetClock(); updateWeighted(); focusRow(Math.max(focusedIndex(), 0));
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    var item = document.getElementById("item");
    if (item) item.setAttribute("data-seen", "1");
    resetClock(); updateWeighted(); focusRow(0);
  });
})();
