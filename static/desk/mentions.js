// Notifications in the top bar, live; and @mention suggestions in the composer's internal notes.
// The badge listens to "desk:agent-event" (dispatched by desk.js for each agent.event frame of
// the page's websocket). The suggestions come from /desk/tickets/<number>/mentionable/?q=…,
// shown as a listbox the textarea drives with aria-activedescendant.
(function () {
  "use strict";

  // --- the unread badge -------------------------------------------------------------------
  var badge = document.getElementById("notif-badge");
  var countEl = document.getElementById("notif-count");
  var countText = document.getElementById("notif-count-text");
  var live = document.getElementById("notif-live");

  function setUnread(n) {
    if (!badge || typeof n !== "number" || n < 0 || !isFinite(n)) return;
    n = Math.floor(n);
    badge.dataset.unread = String(n);
    badge.classList.toggle("has-unread", n > 0);
    countEl.textContent = String(n);
    countEl.hidden = n === 0;
    countText.textContent = n > 0 ? ", " + n + " unread" : "";
  }

  document.addEventListener("desk:agent-event", function (e) {
    var frame = e.detail || {};
    var payload = frame.payload || {};
    if (frame.kind === "notification") {
      setUnread(payload.unread);
      if (live && typeof payload.text === "string") live.textContent = payload.text.slice(0, 200);
    } else if (frame.kind === "notifications_read") {
      setUnread(payload.unread);
    }
  });

  // --- @mention suggestions ---------------------------------------------------------------
  var textarea = document.getElementById("composer-text");
  var form = document.getElementById("composer");
  if (!textarea || !form) return;
  var url = new URL("../mentionable/", new URL(form.getAttribute("action"), location.href));
  var noteMode = document.getElementById("mode-note");
  var box = document.createElement("ul");
  box.id = "mention-listbox";
  box.className = "mention-listbox";
  box.setAttribute("role", "listbox");
  box.setAttribute("aria-label", "Agents to mention");
  box.hidden = true;
  textarea.insertAdjacentElement("afterend", box);
  textarea.setAttribute("aria-autocomplete", "list");
  textarea.setAttribute("aria-controls", box.id);
  var options = [];
  var active = -1;
  var start = -1; // index of the "@" being completed
  var timer = null;
  var asked = 0;

  function close() {
    box.hidden = true;
    box.textContent = "";
    options = [];
    active = -1;
    start = -1;
    textarea.removeAttribute("aria-activedescendant");
  }

  function setActive(i) {
    if (!options.length) return;
    active = (i + options.length) % options.length;
    options.forEach(function (o, j) { o.el.setAttribute("aria-selected", j === active ? "true" : "false"); });
    textarea.setAttribute("aria-activedescendant", options[active].el.id);
    options[active].el.scrollIntoView({ block: "nearest" });
  }

  function choose(i) {
    var o = options[i];
    if (!o || start < 0) return;
    var caret = textarea.selectionStart;
    var before = textarea.value.slice(0, start);
    var after = textarea.value.slice(caret);
    var insert = "@" + o.handle + " ";
    textarea.value = before + insert + after;
    var at = before.length + insert.length;
    textarea.setSelectionRange(at, at);
    close();
    textarea.focus();
  }

  function show(agents) {
    box.textContent = "";
    options = [];
    agents.forEach(function (a, i) {
      if (typeof a.handle !== "string" || typeof a.name !== "string") return;
      var li = document.createElement("li");
      li.id = "mention-option-" + i;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", "false");
      var name = document.createElement("span");
      name.textContent = a.name;
      var handle = document.createElement("small");
      handle.textContent = " @" + a.handle;
      li.appendChild(name);
      li.appendChild(handle);
      li.addEventListener("mousedown", function (ev) { ev.preventDefault(); choose(i); });
      box.appendChild(li);
      options.push({ el: li, handle: a.handle });
    });
    if (!options.length) { close(); return; }
    box.hidden = false;
    setActive(0);
  }

  // The "@word" just before the caret, if it starts a mention (not an email address).
  function query() {
    if (noteMode && !noteMode.checked) return null;
    var caret = textarea.selectionStart;
    if (caret !== textarea.selectionEnd) return null;
    var text = textarea.value.slice(Math.max(0, caret - 101), caret);
    var m = /(^|[^\w@.+-])@([\w.+-]{0,100})$/.exec(text);
    if (!m) return null;
    return { at: caret - m[2].length - 1, q: m[2] };
  }

  function lookup() {
    var found = query();
    if (!found) { close(); return; }
    start = found.at;
    var ticket = ++asked;
    url.searchParams.set("q", found.q);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (ticket !== asked || !data || !Array.isArray(data.agents)) return;
        if (query() === null) { close(); return; }
        show(data.agents.slice(0, 8));
      })
      .catch(function () { close(); });
  }

  textarea.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(lookup, 120);
  });
  textarea.addEventListener("keydown", function (e) {
    if (box.hidden) return;
    if (e.key === "ArrowDown") { e.preventDefault(); setActive(active + 1); }
    else if (e.key === "ArrowUp") { e.preventDefault(); setActive(active - 1); }
    else if (e.key === "Enter" || e.key === "Tab") { e.preventDefault(); choose(active); }
    else if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); close(); }
  });
  textarea.addEventListener("blur", function () { setTimeout(close, 100); });
  if (noteMode) form.addEventListener("change", function () { if (!noteMode.checked) close(); });
})();
