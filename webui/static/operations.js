/* Linebox web UI, operations pages: the live monitor redraws itself from /monitor/data.
   The page arrives complete from the server; this only keeps it fresh (short polling, one
   request at a time, paused while the tab is hidden). No inline scripts: CSP script-src 'self'. */
(function () {
  "use strict";

  var live = document.getElementById("monitor-live");
  if (!live || !window.fetch) {
    return;
  }
  var url = live.getAttribute("data-poll-url");
  var interval = parseInt(live.getAttribute("data-interval-ms"), 10) || 1500;
  var lost = document.getElementById("monitor-lost");

  function showLost(isLost) {
    if (lost) {
      lost.hidden = !isLost;
    }
  }

  function schedule() {
    window.setTimeout(poll, interval);
  }

  function poll() {
    if (document.hidden) {
      schedule();
      return;
    }
    fetch(url, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Accept": "application/json" }
    }).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (response.redirected || type.indexOf("application/json") !== 0) {
        // The session ended: loading the page again leads to the login page.
        window.location.reload();
        throw new Error("not signed in");
      }
      return response.json();
    }).then(function (data) {
      // Both answers carry the HTML: the board, or the notice that the service is not running.
      if (typeof data.html === "string") {
        live.innerHTML = data.html;
      }
      live.setAttribute("data-running", data.running ? "yes" : "no");
      showLost(false);
    }).catch(function () {
      showLost(true);
    }).then(schedule);
  }

  schedule();
}());

/* The system page's log: show its newest lines (at the bottom) first. */
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (log) {
    log.scrollTop = log.scrollHeight;
  }
}());
