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

  function updateWeighted() {
    var out = document.getElementById("weighted");
    if (!form() || !out) return;
    var total = 0, complete = true;
    rows().forEach(function (row) {
      var checked = row.querySelector("input:checked");
      var weight = parseFloat(row.querySelector(".weight").textContent);
      if (checked) { total += weight * parseInt(checked.value, 10); } else { complete = false; }
    });
    out.textContent = complete ? total.toFixed(2) : "—";
    document.getElementById("excellent").textContent = complete && total >= 2 ? "优秀 excellent" : "";
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
      var missing = rows().findIndex(function (r) { return !r.querySelector("input:checked"); });
      if (button.name === "verdict" && missing !== -1) { say("Rate all five rubric parts first (1–3)."); focusRow(missing); return; }
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
      if (key === "g") { event.preventDefault(); press("#rate-form button[value=good]"); return; }
      if (key === "b") { event.preventDefault(); press("#rate-form button[value=bad]"); return; }
    } else if (kind === "pairwise") {
      var map = { a: "a", b: "b", t: "tie", x: "both_bad" };
      if (map[key]) { event.preventDefault(); press("#rate-form button[value=" + map[key] + "]"); return; }
    }
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
