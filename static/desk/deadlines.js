// SLA countdowns (helpdesk/templatetags/sla_tags.py renders them): every element with a
// data-due attribute (an ISO 8601 time) gets its text and its "overdue" class recomputed every
// 30 s, in the same words as the server ("in 25 min", "in 3 h", "overdue 10 min"). Rows
// replaced by a live refresh arrive freshly rendered and are simply picked up next time.
(function () {
  "use strict";
  var EVERY_MS = 30000;

  function span(seconds) {
    var minutes = Math.floor(seconds / 60);
    if (minutes < 1) return "<1 min";
    if (minutes < 60) return minutes + " min";
    var hours = Math.floor(minutes / 60);
    if (hours < 24) return hours + " h";
    return Math.floor(hours / 24) + " d";
  }

  function tick() {
    var now = Date.now();
    var els = document.querySelectorAll("[data-due]");
    for (var i = 0; i < els.length; i++) {
      var due = Date.parse(els[i].getAttribute("data-due"));
      if (isNaN(due)) continue;
      var left = (due - now) / 1000;
      var overdue = left < 0;
      var text = overdue ? "overdue " + span(-left) : "in " + span(left);
      if (els[i].textContent !== text) els[i].textContent = text;
      els[i].classList.toggle("overdue", overdue);
    }
  }

  tick();
  setInterval(tick, EVERY_MS);
})();
