// teguh dashboard: live updates over Server-Sent Events, and confirmations.
// No inline script anywhere (the Content-Security-Policy forbids it): the
// page names its event stream in <body data-events>.
(function () {
  "use strict";
  var body = document.body;
  var badge = document.getElementById("live");

  document.addEventListener("submit", function (e) {
    var form = e.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) e.preventDefault();
  });

  var src = body.getAttribute("data-events");
  if (!src || !window.EventSource) return;

  var timer = null, busy = false, again = false;
  function setBadge(text, cls) {
    if (!badge) return;
    badge.textContent = text;
    badge.className = "live " + (cls || "");
  }

  // Fetch this very page and swap the live regions (elements with
  // data-live and an id): rows change state without a reload, and the
  // filters the user is typing into stay as they are.
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Teguh-Live": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh) el.replaceWith(document.importNode(fresh, true));
        });
        body.setAttribute("data-refreshes", String(Number(body.getAttribute("data-refreshes") || 0) + 1));
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  var es = new EventSource(src);
  es.onopen = function () {
    setBadge("● live", "on");
    body.setAttribute("data-live-ready", "1");
  };
  es.onerror = function () { setBadge("○ reconnecting", "off"); };
  es.addEventListener("change", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 100);
  });
})();
