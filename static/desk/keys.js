// Keyboard shortcuts for the desk (the list is in templates/desk/_shortcuts.html).
// List: j/k select the next/previous ticket, Enter opens it. Ticket: r reply, n note,
// a assignee, s status. Anywhere: / search, ? this list. Escape leaves a text field.
// No key fires while a field has focus or with Ctrl, Alt or Meta held: typing is never taken.
(function () {
  "use strict";
  var rowsEl = document.getElementById("ticket-rows");
  var dialog = document.getElementById("shortcuts-dialog");
  var button = document.getElementById("shortcuts-button");
  var selected = null; // the selected ticket's number (rows are re-rendered by live refresh and htmx)
  var selectAfterLoad = -1; // the row index to select once the next page's rows are in

  function isField(el) {
    if (!el || el === document.body) return false;
    if (el.isContentEditable) return true;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
  }

  function rows() {
    return rowsEl ? Array.prototype.slice.call(rowsEl.querySelectorAll("tr[data-number]")) : [];
  }

  function select(row, focus) {
    rows().forEach(function (r) {
      r.classList.remove("selected");
      r.setAttribute("aria-selected", "false");
    });
    if (!row) {
      selected = null;
      return;
    }
    selected = row.dataset.number;
    row.classList.add("selected");
    row.setAttribute("aria-selected", "true");
    if (focus) {
      // Focus the row's subject link: screen readers read it, Enter follows it.
      var link = row.querySelector("a.subject") || row.querySelector("a");
      if (link) link.focus({ preventScroll: true });
      row.scrollIntoView({ block: "nearest" });
    }
  }

  function move(delta) {
    var all = rows();
    if (!all.length) return;
    var index = -1;
    for (var i = 0; i < all.length; i++) if (all[i].dataset.number === selected) index = i;
    var next = index < 0 ? (delta > 0 ? 0 : all.length - 1) : index + delta;
    if (next >= all.length) {
      // Past the last row: load the next page (htmx), then select its first row.
      var more = rowsEl.querySelector("tr.more a");
      if (more) more.click();
      return;
    }
    select(all[Math.max(0, next)], true);
  }

  function open() {
    var row = rows().filter(function (r) { return r.dataset.number === selected; })[0];
    var link = row && (row.querySelector("a.subject") || row.querySelector("a"));
    if (link) link.click();
  }

  function compose(mode) {
    var form = document.getElementById("composer");
    if (!form) return false;
    var radio = document.getElementById("mode-" + mode);
    if (mode === "reply" && !radio) return false; // this agent may only write notes
    if (radio) {
      radio.checked = true;
      radio.dispatchEvent(new Event("change", { bubbles: true }));
    }
    var text = document.getElementById("composer-text");
    if (text) text.focus();
    return true;
  }

  function focusId(id) {
    var el = document.getElementById(id);
    if (!el || el.disabled) return false;
    el.focus();
    if (el.scrollIntoView) el.scrollIntoView({ block: "nearest" });
    return true;
  }

  var returnFocus = null;
  function showShortcuts() {
    if (!dialog || dialog.open) return false;
    returnFocus = document.activeElement;
    dialog.showModal();
    return true;
  }
  if (dialog) {
    dialog.addEventListener("close", function () {
      if (returnFocus && returnFocus.focus && document.contains(returnFocus)) returnFocus.focus();
      returnFocus = null;
    });
  }
  if (button && dialog) {
    button.hidden = false;
    button.addEventListener("click", showShortcuts);
  }

  // The composer shows its mode (a note is set apart from a reply before it is sent).
  var composer = document.getElementById("composer");
  if (composer) {
    composer.addEventListener("change", function (e) {
      if (e.target.name === "mode") composer.dataset.mode = e.target.value;
    });
  }

  // Rows are replaced by the live refresh (desk.js) and by htmx: keep the selection on the same
  // ticket, and after a next page came in select the row that was asked for.
  if (rowsEl) {
    rowsEl.addEventListener("click", function (e) {
      if (e.target.closest && e.target.closest("tr.more")) selectAfterLoad = rows().length;
    });
  }
  if (rowsEl && window.MutationObserver) {
    new MutationObserver(function () {
      var all = rows();
      if (selectAfterLoad >= 0 && all.length > selectAfterLoad) {
        var index = selectAfterLoad;
        selectAfterLoad = -1;
        select(all[index], true);
        return;
      }
      var row = all.filter(function (r) { return r.dataset.number === selected; })[0];
      var hadFocus = document.activeElement === document.body || !document.contains(document.activeElement);
      select(row || null, Boolean(row) && hadFocus);
    }).observe(rowsEl, { childList: true });
  }

  document.addEventListener("keydown", function (e) {
    if (e.defaultPrevented || e.isComposing) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var target = e.target;
    if (isField(target)) {
      if (e.key === "Escape" && !(dialog && dialog.open)) {
        target.blur();
        e.preventDefault();
      }
      return;
    }
    if (dialog && dialog.open) return; // the dialog's own keys: Escape closes it, Tab stays inside
    var done = false;
    switch (e.key) {
      case "j": move(1); done = Boolean(rowsEl); break;
      case "k": move(-1); done = Boolean(rowsEl); break;
      case "Enter":
        // A focused link or button does its own Enter; otherwise open the selected ticket.
        if (rowsEl && selected && !(target.closest && target.closest("a, button, summary"))) {
          open();
          done = true;
        }
        break;
      case "r": done = compose("reply"); break;
      case "n": done = compose("note"); break;
      case "a": done = focusId("assignee-select"); break;
      case "s": done = focusId("status-select"); break;
      case "/": done = focusId("desk-search"); break;
      case "?": done = showShortcuts(); break;
    }
    if (done) e.preventDefault();
  });
})();
