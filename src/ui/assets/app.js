// hookbox dashboard: what scripts add to pages that work without them.
// - times shown in UTC, local time or relative ("3 min ago"), remembered per browser;
// - the events list's live tail: new events appear on top, the scroll position stays;
// - "select all" on the dead-letter list.
(function () {
  "use strict";
  var KEY = "hookbox.time";

  function mode() {
    try { return localStorage.getItem(KEY) || "utc"; } catch (e) { return "utc"; }
  }

  function relative(ms) {
    var s = Math.round((Date.now() - ms) / 1000);
    var future = s < 0;
    s = Math.abs(s);
    var out;
    if (s < 45) out = s + " s";
    else if (s < 2700) out = Math.round(s / 60) + " min";
    else if (s < 64800) out = Math.round(s / 3600) + " h";
    else out = Math.round(s / 86400) + " d";
    return future ? "in " + out : out + " ago";
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function render(root) {
    var m = mode();
    var nodes = (root || document).querySelectorAll("time[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      var iso = el.getAttribute("datetime");
      var t = Date.parse(iso);
      if (isNaN(t)) continue;
      if (!el.hasAttribute("data-utc")) el.setAttribute("data-utc", el.textContent);
      if (m === "local") {
        var d = new Date(t);
        el.textContent = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
          pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
      } else if (m === "relative") {
        el.textContent = relative(t);
      } else {
        el.textContent = el.getAttribute("data-utc");
      }
    }
    var buttons = document.querySelectorAll("[data-time]");
    for (var j = 0; j < buttons.length; j++) {
      buttons[j].classList.toggle("on", buttons[j].getAttribute("data-time") === m);
    }
  }

  function setupTimes() {
    var group = document.querySelector(".timefmt");
    if (!group) return;
    group.hidden = false;
    group.addEventListener("click", function (ev) {
      var b = ev.target.closest("[data-time]");
      if (!b) return;
      try { localStorage.setItem(KEY, b.getAttribute("data-time")); } catch (e) { /* private mode */ }
      render();
    });
    render();
    setInterval(function () { if (mode() === "relative") render(); }, 15000);
  }

  function setupTail() {
    var table = document.querySelector("table[data-tail]");
    var toggle = document.querySelector("[data-live]");
    if (!table || !toggle) return;
    toggle.closest("label").hidden = false;
    var tbody = table.tBodies[0];
    var busy = false;
    function newest() {
      var first = tbody.querySelector("tr[data-id]");
      return first ? first.getAttribute("data-id") : "";
    }
    function poll() {
      if (busy || !toggle.checked || document.hidden) return;
      busy = true;
      var url = table.getAttribute("data-tail") + "&after=" + encodeURIComponent(newest());
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : ""; })
        .then(function (html) {
          if (!html.trim()) return;
          var before = document.documentElement.scrollHeight;
          var y = window.scrollY;
          tbody.insertAdjacentHTML("afterbegin", html);
          var rows = tbody.querySelectorAll("tr[data-id]");
          var added = html.split("<tr").length - 1;
          for (var i = 0; i < added && i < rows.length; i++) rows[i].classList.add("fresh");
          render(tbody);
          // Keep what the reader was looking at in place.
          if (y > 0) window.scrollTo(0, y + document.documentElement.scrollHeight - before);
        })
        .catch(function () { /* the next poll tries again */ })
        .then(function () { busy = false; });
    }
    setInterval(poll, 2000);
  }

  function setupSelectAll() {
    var all = document.querySelector("[data-select-all]");
    if (!all) return;
    all.hidden = false;
    all.addEventListener("change", function () {
      var boxes = document.querySelectorAll("input[type=checkbox][name=id]");
      for (var i = 0; i < boxes.length; i++) boxes[i].checked = all.checked;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupTimes();
    setupTail();
    setupSelectAll();
  });
})();
