// Live desk: one websocket on every desk page. It carries the agent's presence (top bar), the
// agent's own messages (desk:agent-event), the ticket page's events, viewers and typing markers,
// and the lists' refreshes. After a reconnect the ticket subscription replays every event after
// the last seq seen. Frames are described in helpdesk/consumers.py.
(function () {
  "use strict";
  var presenceForm = document.getElementById("presence-menu");
  if (!presenceForm) return; // not signed in
  var ticketEl = document.querySelector("[data-ticket]");
  var listEl = document.querySelector("[data-live-list]");
  var ticketNumber = ticketEl ? parseInt(ticketEl.dataset.ticket, 10) : 0;
  var lastSeq = ticketEl ? parseInt(ticketEl.dataset.seq, 10) || 0 : 0;
  var retry = 0;
  var refreshTimer = null;
  var ws = null;
  var me = { userId: null, heartbeat: 25, idleAfter: 300, typingTtl: 6, viewerTtl: 70 };

  function sendFrame(frame) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
  }

  // --- presence: the top bar's control, idle detection, heartbeats ----------------------
  var LABELS = { online: "Online", away: "Away", offline: "Offline" };
  var choiceSelect = document.getElementById("presence-choice");
  var setButton = document.getElementById("presence-set");
  if (setButton) setButton.hidden = true; // the select posts on change
  function showPresence(state, choice) {
    if (!LABELS[state]) return;
    presenceForm.dataset.presence = state;
    var dot = presenceForm.querySelector(".presence-dot");
    if (dot) dot.className = "presence-dot " + state;
    var label = presenceForm.querySelector(".presence-label");
    if (label) label.textContent = LABELS[state];
    if (choiceSelect && choice && choiceSelect.value !== choice) choiceSelect.value = choice;
  }
  if (choiceSelect) {
    choiceSelect.addEventListener("change", function () {
      fetch(presenceForm.action, {
        method: "POST",
        body: new FormData(presenceForm),
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(function (r) { return r.json(); })
        .then(function (answer) { if (answer.presence) showPresence(answer.presence, answer.choice); })
        .catch(function () { presenceForm.submit(); });
    });
  }

  var idle = false;
  var idleTimer = null;
  function setIdle(value) {
    if (idle === value) return;
    idle = value;
    sendFrame({ action: "heartbeat", idle: idle });
  }
  function activity() {
    setIdle(false);
    clearTimeout(idleTimer);
    idleTimer = setTimeout(function () { setIdle(true); }, me.idleAfter * 1000);
  }
  var lastMove = 0;
  ["keydown", "pointerdown", "wheel", "touchstart", "focus"].forEach(function (type) {
    window.addEventListener(type, activity, { passive: true, capture: true });
  });
  window.addEventListener("mousemove", function () {
    var now = Date.now();
    if (now - lastMove > 1000) { lastMove = now; activity(); }
  }, { passive: true });
  document.addEventListener("visibilitychange", function () { if (!document.hidden) activity(); });
  activity();

  var heartbeatTimer = null;
  function startHeartbeat() {
    clearInterval(heartbeatTimer);
    heartbeatTimer = setInterval(function () { sendFrame({ action: "heartbeat", idle: idle }); }, me.heartbeat * 1000);
  }

  // --- the ticket page: viewers and typing ------------------------------------------------
  var viewers = {}; // token -> {userId, name, presence, typing, typingAt, seenAt}
  var presenceBox = document.getElementById("ticket-presence");
  var viewersEl = document.getElementById("ticket-viewers");
  var typingEl = document.getElementById("ticket-typing");
  function renderViewers() {
    if (!presenceBox) return;
    var now = Date.now();
    var byUser = {};
    Object.keys(viewers).forEach(function (token) {
      var v = viewers[token];
      if (now - v.seenAt > me.viewerTtl * 1000) { delete viewers[token]; return; }
      var typing = v.typing && now - v.typingAt < me.typingTtl * 1000 ? v.typing : null;
      var u = byUser[v.userId] || (byUser[v.userId] = { name: v.name, presence: v.presence, typing: null, seenAt: 0 });
      if (v.seenAt >= u.seenAt) { u.presence = v.presence; u.name = v.name; u.seenAt = v.seenAt; }
      if (typing === "reply" || (typing && !u.typing)) u.typing = typing;
    });
    var users = Object.keys(byUser).map(function (id) { return byUser[id]; });
    users.sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : 0; });
    var signature = JSON.stringify(users.map(function (u) { return [u.name, u.presence]; }));
    if (viewersEl.dataset.shown !== signature) {
      viewersEl.dataset.shown = signature;
      viewersEl.textContent = "";
      users.forEach(addViewer);
    }
    function addViewer(u, i) {
      var item = document.createElement("span");
      item.className = "viewer " + u.presence;
      item.dataset.presence = u.presence;
      item.textContent = u.name + " (" + (LABELS[u.presence] || u.presence).toLowerCase() + ")";
      if (i) viewersEl.appendChild(document.createTextNode(", "));
      viewersEl.appendChild(item);
    }
    var typingLines = users.filter(function (u) { return u.typing; }).map(function (u) {
      return u.name + " is typing " + (u.typing === "note" ? "a note…" : "a reply…");
    });
    if (typingEl.textContent !== typingLines.join(" ")) typingEl.textContent = typingLines.join(" ");
    presenceBox.hidden = users.length === 0;
  }
  if (presenceBox) setInterval(renderViewers, 1000);
  function onViewer(msg) {
    if (msg.number !== ticketNumber || typeof msg.viewer !== "string") return;
    if (msg.left) {
      delete viewers[msg.viewer];
    } else {
      var typing = msg.typing === "reply" || msg.typing === "note" ? msg.typing : null;
      viewers[msg.viewer] = {
        userId: msg.user_id,
        name: String(msg.name || "Agent"),
        presence: LABELS[msg.presence] ? msg.presence : "online",
        typing: typing,
        typingAt: typing ? Date.now() : 0,
        seenAt: Date.now(),
      };
    }
    renderViewers();
  }

  var composer = document.getElementById("composer");
  var composerText = document.getElementById("composer-text");
  var seenSeqInput = document.getElementById("composer-seen-seq");
  var sendButton = composer ? composer.querySelector("button[type=submit]") : null;
  var sendLabel = sendButton ? sendButton.textContent : "Send";
  function composerMode() {
    var checked = composer && composer.querySelector("input[name=mode]:checked");
    return checked && checked.value === "note" ? "note" : "reply";
  }
  var typingSent = { mode: "none", at: 0 };
  var typingStopTimer = null;
  function sendTyping(mode) {
    var now = Date.now();
    if (mode === typingSent.mode && (mode === "none" || now - typingSent.at < 2000)) return;
    typingSent = { mode: mode, at: now };
    sendFrame({ action: "typing", number: ticketNumber, mode: mode });
  }
  if (composerText && ticketEl) {
    composerText.addEventListener("input", function () {
      clearTimeout(typingStopTimer);
      if (!composerText.value.trim()) {
        sendTyping("none");
        clearWarning(true);
        return;
      }
      sendTyping(composerMode());
      typingStopTimer = setTimeout(function () { sendTyping("none"); }, 4000);
    });
  }

  // --- the new-message warning ----------------------------------------------------------
  // A customer message or another agent's reply that arrives while the composer holds a draft
  // is named in the composer; the first Send after it confirms ("Send anyway"), and only then
  // does the form say it saw that news (seen_seq), so the server's 409 stays the backstop.
  var news = []; // {seq, what}
  var warnedAt = 0;
  var warningEl = null;
  function describe(msg) {
    if (msg.event === "message_received") return "a new message from the customer";
    return msg.actor_name ? "a reply from " + msg.actor_name : "a reply from another agent";
  }
  function isNews(msg) {
    if (msg.event === "message_received") return true;
    return msg.event === "reply_added" && msg.actor_id !== me.userId;
  }
  function acknowledge(seq) {
    if (!seenSeqInput) return;
    var current = parseInt(seenSeqInput.value, 10) || 0;
    if (seq > current) seenSeqInput.value = String(seq);
  }
  function showWarning() {
    if (!warningEl) {
      warningEl = document.createElement("div");
      warningEl.className = "stale-warning live-warning";
      warningEl.id = "composer-news-warning";
      warningEl.setAttribute("role", "alert");
      composer.insertBefore(warningEl, composer.firstChild);
    }
    var items = news.map(function (n) { return n.what; });
    warningEl.textContent = "";
    var strong = document.createElement("strong");
    strong.textContent = "New on this ticket while you were writing: ";
    warningEl.appendChild(strong);
    warningEl.appendChild(document.createTextNode(items.join("; ") + ". Read it above; "));
    warningEl.appendChild(document.createTextNode("“Send anyway” sends your draft as it is."));
    warnedAt = Date.now();
    if (sendButton) {
      sendButton.textContent = "Send anyway";
      sendButton.setAttribute("aria-describedby", "composer-news-warning");
    }
  }
  function clearWarning(ack) {
    if (ack && news.length) acknowledge(news[news.length - 1].seq);
    news = [];
    if (warningEl) { warningEl.remove(); warningEl = null; }
    if (sendButton) {
      sendButton.textContent = sendLabel;
      sendButton.removeAttribute("aria-describedby");
    }
  }
  function onNews(msg) {
    if (!composer || !composerText) return;
    if (!composerText.value.trim()) {
      // Nothing drafted yet: what the agent writes next is written with this on screen.
      acknowledge(msg.seq);
      return;
    }
    news.push({ seq: msg.seq, what: describe(msg) });
    showWarning();
  }
  if (composer) {
    composer.addEventListener("submit", function (e) {
      if (!news.length) { sendTyping("none"); return; }
      // A Send within a moment of the warning, or not from the button itself (a shortcut),
      // is not a confirmation: the agent is shown the warning and the button first.
      if (e.submitter !== sendButton || Date.now() - warnedAt < 800) {
        e.preventDefault();
        if (sendButton) sendButton.focus();
        return;
      }
      clearWarning(true);
      sendTyping("none");
    });
  }

  // --- ticket events --------------------------------------------------------------------
  // Only the answer to the latest refresh is shown: an earlier, slower one must not put an older
  // timeline back over a newer one.
  var refreshGen = 0;

  function refresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(function () {
      var gen = ++refreshGen;
      if (ticketEl) {
        fetch(location.pathname + "timeline/", { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) {
            if (html === null || gen !== refreshGen) return;
            var timeline = document.getElementById("timeline");
            timeline.innerHTML = html;
            // The header line (status, priority, team) comes along, so it is never staler than the timeline.
            var fresh = timeline.querySelector("template#ticket-meta-fresh");
            var meta = document.getElementById("ticket-meta");
            if (fresh && meta) meta.replaceWith(fresh.content.cloneNode(true));
            if (fresh) fresh.remove();
          });
      } else if (listEl) {
        var url = new URL(location.href);
        url.searchParams.set("partial", "1");
        fetch(url, { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) {
            if (html !== null && gen === refreshGen) document.getElementById("ticket-rows").innerHTML = html;
          });
      }
    }, 150);
  }

  // A change this page made itself through htmx (status, assignee) names the seq of its event:
  // the timeline refreshes now, and that event is not announced as news, whether its websocket
  // echo comes after the answer (skipped) or before it (the notice goes if nothing else raised it).
  var announced = [];
  if (ticketEl) {
    document.addEventListener("desk:seq", function (e) {
      var seq = e.detail && parseInt(e.detail.value, 10);
      if (!seq) return;
      if (seq > lastSeq) {
        lastSeq = seq;
        ticketEl.dataset.seq = String(lastSeq);
      } else {
        announced = announced.filter(function (s) { return s !== seq; });
        var notice = ticketEl.querySelector(".live-notice");
        if (notice && !announced.length) notice.hidden = true;
      }
      refresh();
    });
  }

  function onTicketEvent(msg) {
    if (ticketEl) {
      if (msg.number !== ticketNumber || msg.seq <= lastSeq) return;
      lastSeq = msg.seq;
      ticketEl.dataset.seq = String(lastSeq);
      announced.push(msg.seq);
      var notice = ticketEl.querySelector(".live-notice");
      if (notice) notice.hidden = false;
      if (isNews(msg)) onNews(msg);
    } else if (!listEl) {
      return;
    }
    refresh();
  }

  function connect() {
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    ws = new WebSocket(proto + location.host + "/ws/desk/");
    ws.onopen = function () {
      retry = 0;
      sendFrame({ action: "hello", idle: idle });
      if (ticketEl) {
        sendFrame({ action: "subscribe_ticket", number: ticketNumber, last_seq: lastSeq });
      } else if (listEl) {
        sendFrame({ action: "subscribe_list" });
      }
      startHeartbeat();
    };
    ws.onmessage = function (e) {
      var msg;
      try { msg = JSON.parse(e.data); } catch (err) { return; }
      switch (msg.type) {
        case "ticket.event":
          onTicketEvent(msg);
          break;
        case "presence.self":
          if (typeof msg.user_id === "number") me.userId = msg.user_id;
          ["heartbeat", "idle_after", "typing_ttl", "viewer_ttl"].forEach(function (k) {
            var key = k.replace(/_(\w)/, function (_, c) { return c.toUpperCase(); });
            if (typeof msg[k] === "number" && msg[k] > 0) me[key] = msg[k];
          });
          showPresence(msg.presence, msg.choice);
          break;
        case "viewer":
          onViewer(msg);
          break;
        case "unsubscribed":
          viewers = {};
          renderViewers();
          break;
        case "agent.event":
          document.dispatchEvent(new CustomEvent("desk:agent-event", { detail: msg }));
          break;
        case "chat.visitor":
          document.dispatchEvent(new CustomEvent("desk:chat-visitor", { detail: msg }));
          break;
      }
    };
    ws.onclose = function () {
      clearInterval(heartbeatTimer);
      viewers = {};
      if (presenceBox) renderViewers();
      retry += 1;
      var delay = Math.min(30000, 500 * Math.pow(2, retry)) * (0.5 + Math.random() / 2);
      setTimeout(connect, delay);
    };
  }
  connect();
})();
