// The ticket page's chat panel, live: "Visitor is typing…" and the visitor's current page.
// desk.js receives the desk websocket's `chat.visitor` frames ({number, typing, url, title}, sent
// by the visitor's widget through the ticket's group) and dispatches them as the DOM event
// `desk:chat-visitor`. Targets inside #chat-panel: [data-chat-typing] (shown while typing),
// [data-chat-current-url] (a link to the page), [data-chat-page-title] (its title). The elements
// are looked up on every frame: htmx may have swapped the panel since.
(function () {
  "use strict";
  // A typing marker not refreshed for this long is stale (the widget re-sends while typing).
  var TYPING_TTL_MS = 6000;
  var typingTimer = null;

  function panel() {
    return document.getElementById("chat-panel");
  }

  function ticketNumber() {
    var root = panel();
    if (root && root.dataset.ticketNumber) return parseInt(root.dataset.ticketNumber, 10);
    var el = document.querySelector("[data-ticket]");
    return el ? parseInt(el.dataset.ticket, 10) : 0;
  }

  function safeUrl(value) {
    if (typeof value !== "string" || !value) return "";
    try {
      var url = new URL(value);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : "";
    } catch (err) {
      return "";
    }
  }

  function showTyping(on) {
    var root = panel();
    var el = root && root.querySelector("[data-chat-typing]");
    clearTimeout(typingTimer);
    if (!el) return;
    el.hidden = !on;
    if (on) typingTimer = setTimeout(function () { showTyping(false); }, TYPING_TTL_MS);
  }

  function showPage(url, title) {
    var root = panel();
    if (!root) return;
    var href = safeUrl(url);
    var link = root.querySelector("[data-chat-current-url]");
    if (link && url) {
      // Only http(s) becomes a link; anything else is shown as text (never a javascript: href).
      if (link.tagName === "A") {
        if (href) {
          link.href = href;
          link.rel = "noopener noreferrer";
          link.target = "_blank";
        } else {
          link.removeAttribute("href");
        }
      }
      link.textContent = href || String(url);
      link.title = href || "";
      link.hidden = false;
    }
    var titleEl = root.querySelector("[data-chat-page-title]");
    if (titleEl && typeof title === "string") {
      titleEl.textContent = title;
      titleEl.hidden = !title;
    }
  }

  document.addEventListener("desk:chat-visitor", function (e) {
    var msg = e.detail || {};
    var number = ticketNumber();
    if (number && msg.number !== number) return;
    showTyping(msg.typing === true);
    if (msg.url || msg.title) showPage(msg.url, msg.title);
  });
})();
