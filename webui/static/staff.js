// Employees and departments pages: show only the fields that matter for the chosen strategy,
// queue and no-answer action; move member rows without a round trip; confirm deletions.
// Without JavaScript every field is shown and the buttons work through the server.
(function () {
  "use strict";

  function toggle(element, visible) {
    // A field with an error message stays in view whatever the choice.
    var wrong = element.querySelector(".error") !== null;
    element.classList.toggle("staff-hidden", !visible && !wrong);
  }

  function refresh(form) {
    var strategy = form.querySelector("[name=strategy]");
    var explanation = document.getElementById("strategy-explanation");
    if (strategy && explanation && strategy.selectedOptions.length) {
      explanation.textContent = strategy.selectedOptions[0].dataset.explanation || "";
    }
    if (strategy) {
      form.querySelectorAll("[data-strategies]").forEach(function (element) {
        toggle(element, element.dataset.strategies.split(" ").indexOf(strategy.value) >= 0);
      });
    }
    form.querySelectorAll("[data-when]").forEach(function (element) {
      var box = form.querySelector("input[type=checkbox][name=" + element.dataset.when + "]");
      if (box) { toggle(element, box.checked); }
    });
    var mode = form.querySelector("[name=no_answer]");
    if (mode) {
      form.querySelectorAll("[data-na]").forEach(function (element) {
        toggle(element, element.dataset.na.split(" ").indexOf(mode.value) >= 0);
      });
    }
  }

  // Member rows are named m-<index>-<field>, in table order: renumber after a move.
  function renumber(tbody) {
    Array.prototype.forEach.call(tbody.rows, function (row, index) {
      row.querySelectorAll("[name^='m-']").forEach(function (input) {
        input.name = input.name.replace(/^m-\d+-/, "m-" + index + "-");
        if (input.id) { input.id = input.id.replace(/^f-m-\d+-/, "f-m-" + index + "-"); }
        if (/-position$/.test(input.name)) { input.value = String(index + 1); }
      });
      row.querySelectorAll("button[data-move]").forEach(function (button) {
        button.value = button.value.replace(/-\d+$/, "-" + index);
      });
    });
  }

  function move(button) {
    var row = button.closest("tr");
    var tbody = row.parentNode;
    if (button.dataset.move === "up" && row.previousElementSibling) {
      tbody.insertBefore(row, row.previousElementSibling);
    } else if (button.dataset.move === "down" && row.nextElementSibling) {
      tbody.insertBefore(row.nextElementSibling, row);
    }
    renumber(tbody);
    button.focus();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form").forEach(function (form) {
      refresh(form);
      form.addEventListener("change", function () { refresh(form); });
    });
    document.addEventListener("click", function (event) {
      var target = event.target;
      if (!(target instanceof Element)) { return; }
      var button = target.closest("button");
      if (!button) { return; }
      if (button.dataset.move === "up" || button.dataset.move === "down") {
        event.preventDefault();
        move(button);
      } else if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) {
        event.preventDefault();
      }
    });
  });
}());
