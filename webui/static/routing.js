/* Caller rules: show only the rule fields that apply to the chosen action. The page works
   without this script. */
(function () {
  "use strict";
  var action = document.getElementById("f-action");
  if (action) {
    var show = function () {
      document.querySelectorAll("[data-actions]").forEach(function (part) {
        var wanted = part.getAttribute("data-actions").split(" ");
        part.hidden = wanted.indexOf(action.value) < 0;
      });
    };
    action.addEventListener("change", show);
    show();
  }
})();
