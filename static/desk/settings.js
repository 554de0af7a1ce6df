// The settings screens' editors (templates/desk/settings/). The forms post without this script:
// rows are parallel arrays (all-field / all-op / all-value, act-type / act-value / act-value2,
// hours-<day>-start / -end, holiday-date / -name) and a blank row is ignored. With it:
// - "Add" and "Remove" buttons for rows (a new row is a blank copy of the group's last one);
// - a condition row's operators and value input follow its field and operator (from
//   #condition-fields, the JSON of helpdesk.conditions.describe_fields()); the custom-field key
//   input shows only for a custom field;
// - a step row's value input follows its type (from #step-kinds, describe_steps()).
(function () {
  "use strict";

  function readJson(id) {
    var node = document.getElementById(id);
    if (!node) return null;
    try {
      return JSON.parse(node.textContent);
    } catch (e) {
      return null;
    }
  }

  var fields = readJson("condition-fields") || [];
  var kinds = readJson("step-kinds") || [];
  var CUSTOM = "custom_field.<key>";
  var TEXT_STEPS = ["reply", "note"];

  function byName(list, key, value) {
    for (var i = 0; i < list.length; i++) if (list[i][key] === value) return list[i];
    return null;
  }

  function option(value, label, selected) {
    var o = document.createElement("option");
    o.value = value;
    o.textContent = label;
    if (selected) o.selected = true;
    return o;
  }

  // Replace a row's value control by a select (choices) or an input/textarea, keeping its name.
  function valueControl(old, choices, multiline) {
    var current = old.value;
    var control;
    if (choices) {
      control = document.createElement("select");
      var found = false;
      choices.forEach(function (c) {
        var selected = c[0] === current;
        found = found || selected;
        control.appendChild(option(c[0], c[1], selected));
      });
      if (!found && current) control.appendChild(option(current, current, true));
    } else {
      control = document.createElement(multiline ? "textarea" : "input");
      if (multiline) control.rows = 2;
      control.maxLength = 20000;
      control.value = old.tagName === "SELECT" ? "" : current;
    }
    control.name = old.name;
    control.dataset.role = old.dataset.role;
    control.setAttribute("aria-label", old.getAttribute("aria-label") || "Value");
    old.replaceWith(control);
    return control;
  }

  // What an operator takes: "none", "one" or "list" (describe_fields' `values`).
  function shape(field, op) {
    return (field.values && field.values[op]) || "one";
  }

  function syncValue(row, field) {
    var op = row.querySelector('[data-role="op"]').value;
    var kind = shape(field, op);
    var control = valueControl(row.querySelector('[data-role="value"]'), kind === "one" ? field.choices : null, false);
    control.hidden = kind === "none";
    if (kind === "none") control.value = "";
    control.placeholder = kind === "list" ? "a, b, c" : "";
  }

  function syncCondition(row) {
    var fieldSelect = row.querySelector('[data-role="field"]');
    var opSelect = row.querySelector('[data-role="op"]');
    var key = row.querySelector('[data-role="key"]');
    if (key) key.hidden = fieldSelect.value !== CUSTOM;
    var field = byName(fields, "name", fieldSelect.value);
    if (!field) return;
    var currentOp = opSelect.value;
    opSelect.textContent = "";
    field.operators.forEach(function (o) {
      opSelect.appendChild(option(o[0], o[1], o[0] === currentOp));
    });
    syncValue(row, field);
  }

  function syncStep(row) {
    var typeSelect = row.querySelector('[data-role="type"]');
    var kind = byName(kinds, "type", typeSelect.value);
    valueControl(
      row.querySelector('[data-role="value"]'),
      kind ? kind.choices : null,
      !kind || TEXT_STEPS.indexOf(kind.type) >= 0
    );
    var second = row.querySelector('[data-role="value2"]');
    if (!second) return;
    var wanted = kind && kind.second;
    if (wanted) {
      second.type = kind.type === "webhook" ? "password" : "text";
      second.placeholder = wanted;
      second.setAttribute("aria-label", wanted.charAt(0).toUpperCase() + wanted.slice(1));
    } else {
      second.type = "hidden";
      second.value = "";
    }
  }

  function blankCopy(row) {
    var copy = row.cloneNode(true);
    copy.querySelectorAll("input, textarea").forEach(function (el) {
      if (el.type === "checkbox") el.checked = false;
      else el.value = "";
    });
    copy.querySelectorAll("select").forEach(function (el) {
      el.selectedIndex = 0;
    });
    copy.querySelectorAll(".field-error").forEach(function (el) {
      el.remove();
    });
    return copy;
  }

  // Rows whose field is not chosen yet hide the custom-field key until it is.
  document.querySelectorAll(".cond-row").forEach(function (row) {
    var key = row.querySelector('[data-role="key"]');
    var fieldSelect = row.querySelector('[data-role="field"]');
    if (key && fieldSelect) key.hidden = fieldSelect.value !== CUSTOM;
  });

  // Every container of rows: condition groups, step editors, a day's periods, holidays.
  document.querySelectorAll(".cond-group, [data-step-editor], [data-repeat]").forEach(function (box) {
    var rows = box.querySelector(".rows");
    var add = box.querySelector(":scope > .add-row");
    if (!rows || !add) return;
    add.hidden = false;
    add.addEventListener("click", function () {
      var last = rows.lastElementChild;
      if (!last) return;
      var copy = blankCopy(last);
      rows.appendChild(copy);
      var first = copy.querySelector("select, input, textarea");
      if (first) first.focus();
    });
    rows.addEventListener("click", function (event) {
      var button = event.target.closest(".remove-row");
      if (!button) return;
      var row = button.closest(".row");
      if (rows.children.length > 1) {
        row.remove();
        add.focus();
      } else {
        var copy = blankCopy(row);
        row.replaceWith(copy);
      }
    });
    rows.querySelectorAll(".remove-row").forEach(function (b) {
      b.hidden = false;
    });
    rows.addEventListener("change", function (event) {
      var row = event.target.closest(".row");
      if (!row) return;
      var role = event.target.dataset.role;
      if (role === "field") syncCondition(row);
      else if (role === "op" && row.classList.contains("cond-row")) {
        var field = byName(fields, "name", row.querySelector('[data-role="field"]').value);
        if (field) syncValue(row, field);
      } else if (role === "type") syncStep(row);
    });
  });

  // Bring the summary of problems into view after a failed save.
  var summary = document.getElementById("form-errors");
  if (summary) summary.focus();
})();
