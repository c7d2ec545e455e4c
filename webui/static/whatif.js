/* Linebox web UI, What if: while a replay runs, show its progress and reload the page when it
   is done (short polling, one request at a time). No inline scripts: CSP script-src 'self'. */
(function () {
  "use strict";

  var box = document.getElementById("whatif-progress");
  if (!box || !window.fetch) {
    return;
  }
  var url = box.getAttribute("data-status-url");
  var bar = box.querySelector("progress");
  var percent = box.querySelector(".whatif-percent");

  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (status) {
        if (status.state !== "running") {
          window.location.reload();
          return;
        }
        bar.value = status.progress;
        percent.textContent = Math.round(status.progress * 100) + "%";
        window.setTimeout(poll, 1000);
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 1000);
})();
