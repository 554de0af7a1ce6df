// Live desk: one websocket per page; the ticket page and lists refresh when events arrive.
// After a reconnect the ticket subscription replays every event after the last seq seen.
(function () {
  "use strict";
  var ticketEl = document.querySelector("[data-ticket]");
  var listEl = document.querySelector("[data-live-list]");
  if (!ticketEl && !listEl) return;
  var lastSeq = ticketEl ? parseInt(ticketEl.dataset.seq, 10) || 0 : 0;
  var retry = 0;
  var refreshTimer = null;

  function refresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(function () {
      if (ticketEl) {
        fetch(location.pathname + "timeline/", { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) {
            if (html !== null) document.getElementById("timeline").innerHTML = html;
          });
      } else {
        var url = new URL(location.href);
        url.searchParams.set("partial", "1");
        fetch(url, { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) {
            if (html !== null) document.getElementById("ticket-rows").innerHTML = html;
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

  function connect() {
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(proto + location.host + "/ws/desk/");
    ws.onopen = function () {
      retry = 0;
      if (ticketEl) {
        ws.send(JSON.stringify({ action: "subscribe_ticket", number: parseInt(ticketEl.dataset.ticket, 10), last_seq: lastSeq }));
      } else {
        ws.send(JSON.stringify({ action: "subscribe_list" }));
      }
    };
    ws.onmessage = function (e) {
      var msg = JSON.parse(e.data);
      if (msg.type !== "ticket.event") return;
      if (ticketEl) {
        if (msg.seq <= lastSeq) return;
        lastSeq = msg.seq;
        ticketEl.dataset.seq = String(lastSeq);
        announced.push(msg.seq);
        var notice = ticketEl.querySelector(".live-notice");
        if (notice) notice.hidden = false;
      }
      refresh();
    };
    ws.onclose = function () {
      retry += 1;
      var delay = Math.min(30000, 500 * Math.pow(2, retry)) * (0.5 + Math.random() / 2);
      setTimeout(connect, delay);
    };
  }
  connect();
})();
