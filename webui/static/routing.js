/* Numbers, schedules and caller rules: ask before deleting, and show only the rule fields that
   apply to the chosen action. The pages work without this script. */
(function () {
  "use strict";
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  });
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
