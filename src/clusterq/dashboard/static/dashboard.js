// clusterq dashboard: live counts (server-sent events, polling as fallback) and confirmation prompts.
// Loaded as a file under a nonce-based Content-Security-Policy: no inline script, no eval, no innerHTML.
(function () {
  "use strict";
  var root = document.body.getAttribute("data-root") || "";

  var refreshing = false;

  // A queue the page does not list yet (created since it loaded), or workers that came or went: fetch
  // the page again and swap in its tables, parsed as an inert document (nothing in it runs), instead of
  // reloading the page.
  function stale(data) {
    var table = document.getElementById("queues");
    if (!table) { return false; }
    var shown = {};
    var cells = table.querySelectorAll("[data-s=waiting]");
    for (var i = 0; i < cells.length; i++) { shown[cells[i].getAttribute("data-q")] = true; }
    var workers = document.querySelectorAll("#workers [data-worker]").length;
    return Object.keys(data.queues).some(function (name) { return !shown[name]; }) ||
      (typeof data.workers === "number" && data.workers !== workers);
  }

  function refreshTables(data) {
    if (refreshing || !stale(data)) { return; }
    refreshing = true;
    fetch(window.location.href, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        ["queues", "workers", "workers-count"].forEach(function (id) {
          var mine = document.getElementById(id), theirs = fresh.getElementById(id);
          if (mine && theirs) { mine.replaceWith(document.importNode(theirs, true)); }
        });
      })
      .catch(function () {})
      .then(function () { refreshing = false; });
  }

  function apply(data) {
    if (!data || !data.queues) { return; }
    refreshTables(data);
    var cells = document.querySelectorAll("[data-s]");
    for (var i = 0; i < cells.length; i++) {
      var el = cells[i];
      var counts = data.queues[el.getAttribute("data-q")];
      if (counts && el.getAttribute("data-s") in counts) {
        el.textContent = String(counts[el.getAttribute("data-s")]);
      }
    }
  }

  function poll() {
    setInterval(function () {
      fetch(root + "/api/counts", {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { return r.ok ? r.json() : null; }).then(apply).catch(function () {});
    }, 2000);
  }

  function live() {
    if (!document.querySelector("[data-live]")) { return; }
    if (!window.EventSource) { poll(); return; }
    var source = new EventSource(root + "/events");
    var got = false;
    source.onmessage = function (e) { got = true; try { apply(JSON.parse(e.data)); } catch (err) { /* skip */ } };
    source.onerror = function () {
      // a proxy that buffers or refuses event streams: fall back to polling the same snapshot
      if (!got || source.readyState === EventSource.CLOSED) { source.close(); poll(); }
    };
  }

  function confirmations() {
    var forms = document.querySelectorAll("form[data-confirm]");
    for (var i = 0; i < forms.length; i++) {
      forms[i].addEventListener("submit", function (e) {
        if (!window.confirm(this.getAttribute("data-confirm"))) { e.preventDefault(); }
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () { live(); confirmations(); });
})();
