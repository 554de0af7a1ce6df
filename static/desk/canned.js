// The composer's canned responses: choosing one fetches its text, filled in for this ticket
// (GET /desk/tickets/<n>/canned/<id>/ → {"text": …}), and inserts it at the cursor of the
// composer's textarea. Without JavaScript the picker's form reloads the page with the text
// prefilled (?canned=<id>).
(function () {
  "use strict";
  var form = document.getElementById("canned-picker");
  var select = document.getElementById("canned-select");
  var text = document.getElementById("composer-text");
  if (!form || !select || !text) return;
  var button = document.getElementById("canned-insert");
  var status = form.querySelector(".canned-status");
  var url = form.dataset.textUrl; // ends in /canned/0/
  if (button) button.hidden = true;

  function say(message) {
    if (status) status.textContent = message;
  }

  function insert(value) {
    var start = text.selectionStart;
    var end = text.selectionEnd;
    text.focus();
    text.setRangeText(value, start, end, "end");
    text.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function choose() {
    var id = select.value;
    if (!/^[0-9]+$/.test(id)) return;
    say("");
    fetch(url.replace(/\/0\/$/, "/" + id + "/"), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (resp) {
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        return resp.json();
      })
      .then(function (data) {
        select.value = "";
        insert(String(data.text));
      })
      .catch(function () {
        say("The canned response could not be loaded.");
      });
  }

  select.addEventListener("change", choose);
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    choose();
  });
})();
