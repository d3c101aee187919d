/* Writing studio: live candidate text over server-sent events (htmx polling when they fail),
   and the copy button. All text goes in with textContent: nothing from the server is parsed as HTML. */
(function () {
  "use strict";
  var STATUS = { queued: "排队中 queued", running: "生成中 running", done: "完成 done", failed: "失败 failed" };

  var broken = {}; // stream URLs that failed once: polling carries those to the end

  function connect() {
    var cards = document.getElementById("cards");
    if (!cards || cards.dataset.status === "done" || cards.dataset.status === "failed") return;
    if (!window.EventSource || window.studioLive || broken[cards.dataset.streamUrl]) return; // htmx polling stays on
    var url = cards.dataset.streamUrl;
    var source = new EventSource(url);
    window.studioLive = true;
    source.addEventListener("progress", function (e) {
      var state = JSON.parse(e.data);
      var section = document.getElementById("cards");
      if (!section) return;
      section.dataset.status = state.status;
      var label = document.getElementById("req-state");
      label.className = "state state-" + state.status;
      label.textContent = (STATUS[state.status] || state.status) + (state.reason ? "：" + state.reason : "");
      state.candidates.forEach(function (c) {
        var card = document.getElementById("card-" + c.index);
        if (!card) return;
        card.querySelector("[data-text]").textContent = c.text;
        // a failed request's cards stop blinking: nothing more is coming
        card.classList.toggle("writing", !c.finished && state.status !== "failed" && state.status !== "done");
      });
    });
    source.addEventListener("end", function () {
      source.close();
      window.studioLive = false;
      var section = document.getElementById("cards");
      if (section && window.htmx) htmx.ajax("GET", section.dataset.cardsUrl, { target: "#cards", swap: "outerHTML" });
    });
    source.onerror = function () { source.close(); broken[url] = true; window.studioLive = false; }; // polling takes over
  }

  // While the stream is live the cards' polling stands down. Done here rather than with an
  // hx-trigger filter, which htmx would compile with eval (the Content-Security-Policy forbids it).
  document.addEventListener("htmx:beforeRequest", function (e) {
    if (window.studioLive && e.detail.elt && e.detail.elt.id === "cards") {
      e.preventDefault();
    }
  });

  // A rewrite (or any swap) that brings the cards back unfinished streams them again.
  document.addEventListener("htmx:afterSettle", function (e) {
    connect();
  });
  // Refusals (over the rate limit, still writing, model not ready) come back as the cards with
  // a message: show them rather than dropping a 4xx/5xx answer as htmx does by default.
  document.addEventListener("htmx:beforeSwap", function (e) {
    var status = e.detail.xhr.status;
    if ([400, 404, 409, 429, 503].indexOf(status) !== -1) { e.detail.shouldSwap = true; e.detail.isError = false; }
  });

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } finally { document.body.removeChild(area); }
  }

  document.addEventListener("click", function (e) {
    var button = e.target.closest("[data-copy]");
    if (!button) return;
    var card = button.closest(".card");
    var text = card.querySelector("[data-text]").textContent;
    var shown = function () {
      var note = card.querySelector(".copied");
      note.hidden = false;
      clearTimeout(note._timer);
      note._timer = setTimeout(function () { note.hidden = true; }, 2500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(shown, function () { fallbackCopy(text); shown(); });
    } else { fallbackCopy(text); shown(); }
  });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", connect);
  else connect();
  // The request's character counter: the limit follows the model's context (the server says it again).
  function countRequest() {
    var area = document.querySelector("textarea[data-limit]");
    var counter = document.getElementById("query-counter");
    if (!area || !counter) return;
    var limit = parseInt(area.dataset.limit, 10);
    var show = function () {
      var used = Array.from(area.value).length;
      counter.querySelector("[data-count]").textContent = used;
      counter.classList.toggle("over", used > limit);
    };
    area.addEventListener("input", show);
    show();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", countRequest);
  else countRequest();
})();
