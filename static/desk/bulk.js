// Bulk actions on the ticket lists (templates/desk/ticket_list.html, views/bulk.py). The toolbar is a
// plain form that works without this file; here: its buttons wait for a selection, the header box
// selects every row on the page, shift-click selects a range, and x toggles the row chosen with j/k
// (static/desk/keys.js, which leaves form fields alone: x is only taken outside text fields).
(function () {
  "use strict";
  var form = document.getElementById("bulk-form");
  var rowsEl = document.getElementById("ticket-rows");
  if (!form || !rowsEl) return;
  var all = document.getElementById("bulk-all");
  var count = document.getElementById("bulk-count");
  var idle = count ? count.textContent : "";
  var picked = {}; // ticket number -> true; survives the rows being re-rendered (live refresh, htmx)
  var last = null; // the number of the box clicked last, for shift-click ranges

  function boxes() {
    return Array.prototype.slice.call(rowsEl.querySelectorAll("input[type=checkbox][name=ticket]"));
  }

  function update() {
    var list = boxes();
    var n = 0;
    list.forEach(function (box) {
      box.checked = Boolean(picked[box.value]);
      if (box.checked) n++;
      var row = box.closest("tr");
      if (row) row.classList.toggle("picked", box.checked);
    });
    // A ticket that left the list (live refresh) is no longer selected.
    var present = {};
    list.forEach(function (box) { present[box.value] = true; });
    Object.keys(picked).forEach(function (number) { if (!present[number]) delete picked[number]; });
    Array.prototype.forEach.call(form.querySelectorAll(".bulk-action"), function (button) {
      button.disabled = button.value === "merge" ? n < 2 : n === 0;
    });
    if (count) count.textContent = n ? n + " selected:" : idle;
    if (all) {
      all.checked = n > 0 && n === list.length;
      all.indeterminate = n > 0 && n < list.length;
    }
  }

  function set(box, on) {
    if (on) picked[box.value] = true;
    else delete picked[box.value];
  }

  rowsEl.addEventListener("click", function (e) {
    var box = e.target;
    if (!box.matches || !box.matches("input[type=checkbox][name=ticket]")) return;
    var list = boxes();
    if (e.shiftKey && last !== null) {
      var from = -1, to = list.indexOf(box);
      list.forEach(function (b, i) { if (b.value === last) from = i; });
      if (from >= 0) {
        list.slice(Math.min(from, to), Math.max(from, to) + 1).forEach(function (b) { set(b, box.checked); });
      }
    }
    set(box, box.checked);
    last = box.value;
    update();
    // A mouse click leaves the focus on the page, not in the box, so j and k go on working.
    if (e.detail > 0) box.blur();
  });

  if (all) {
    all.hidden = false;
    all.addEventListener("change", function () {
      boxes().forEach(function (b) { set(b, all.checked); });
      update();
    });
  }

  function isTextField(el) {
    if (!el || el === document.body) return false;
    if (el.isContentEditable) return true;
    if (el.tagName === "INPUT") return el.type !== "checkbox" && el.type !== "radio";
    return el.tagName === "TEXTAREA" || el.tagName === "SELECT";
  }

  document.addEventListener("keydown", function (e) {
    if (e.key !== "x" || e.defaultPrevented || e.isComposing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (isTextField(e.target)) return;
    var dialog = document.getElementById("shortcuts-dialog");
    if (dialog && dialog.open) return;
    var row = rowsEl.querySelector("tr[data-number][aria-selected=true]");
    var box = row && row.querySelector("input[type=checkbox][name=ticket]");
    if (!box) return;
    set(box, !picked[box.value]);
    last = box.value;
    update();
    e.preventDefault();
  });

  form.addEventListener("submit", function (e) {
    if (!boxes().some(function (b) { return b.checked; })) e.preventDefault();
  });

  if (window.MutationObserver) new MutationObserver(update).observe(rowsEl, { childList: true });
  update();
})();
