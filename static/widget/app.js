/* Switchboard chat widget — the app inside the iframe (templates/widget/frame.html) and the hosted
 * conversation page (templates/widget/conversation.html, data-mode="page"). Plain ES2019, no build step,
 * no third-party code. Protocol: /work/notes/common5.md; docs/chat.md.
 * Safety: everything a visitor or an agent wrote is rendered with textContent (links are built as <a>
 * elements with http(s) hrefs only); postMessage only to/from the `site` origin this frame was given. */
(function () {
  "use strict";

  /* The UI strings. Kept as strict JSON between the markers: channels_inbox/tests/test_widget_assets.py
   * checks that every key exists in every language. Plural entries are {one, few, many, other}. */
  var I18N = /*i18n*/ {
    "en": {
      "title": "Chat with us",
      "close": "Close chat",
      "end": "End chat",
      "sound": "Sound",
      "inputLabel": "Message",
      "placeholder": "Type a message…",
      "send": "Send",
      "attach": "Attach a file",
      "remove": "Remove",
      "name": "Name",
      "email": "Email",
      "optional": "(optional)",
      "start": "Start chat",
      "required": "Please fill this in.",
      "badEmail": "Please enter a valid email address.",
      "queue": "You are number {n} in the queue — about {t}",
      "queueNoEta": "You are number {n} in the queue",
      "minutes": {"one": "{n} minute", "other": "{n} minutes"},
      "lessMinute": "less than a minute",
      "typing": "{name} is typing…",
      "agent": "Agent",
      "you": "You",
      "joined": "{name} joined the chat",
      "ended": "The chat has ended.",
      "seen": "Seen",
      "sending": "Sending…",
      "failed": "Not sent — tap to retry",
      "rateQ": "How was this chat?",
      "rateN": "{n} of 5",
      "comment": "Comment (optional)",
      "rateSend": "Send rating",
      "thanks": "Thank you for your feedback!",
      "transcript": "Email me the transcript",
      "transcriptDone": "The transcript is on its way to your inbox.",
      "tooBig": "{name} is too large (max {max}).",
      "tooMany": "You can attach up to {n} files.",
      "uploadFailed": "{name} could not be uploaded.",
      "offline": "We are away right now. Leave a message and we will reply by email.",
      "reconnecting": "Reconnecting…",
      "error": "Something went wrong. Please try again.",
      "history": "Previous conversations",
      "loading": "Loading…",
      "continue": "Continue this chat",
      "ongoing": "open"
    },
    "zh-Hans": {
      "title": "与我们聊天",
      "close": "关闭聊天",
      "end": "结束聊天",
      "sound": "声音",
      "inputLabel": "消息",
      "placeholder": "输入消息…",
      "send": "发送",
      "attach": "添加附件",
      "remove": "移除",
      "name": "姓名",
      "email": "电子邮件",
      "optional": "（可选）",
      "start": "开始聊天",
      "required": "请填写此项。",
      "badEmail": "请输入有效的电子邮件地址。",
      "queue": "您在队列中排第 {n} 位，大约需要 {t}",
      "queueNoEta": "您在队列中排第 {n} 位",
      "minutes": {"other": "{n} 分钟"},
      "lessMinute": "不到一分钟",
      "typing": "{name} 正在输入…",
      "agent": "客服",
      "you": "您",
      "joined": "{name} 加入了聊天",
      "ended": "聊天已结束。",
      "seen": "已读",
      "sending": "正在发送…",
      "failed": "未发送，点击重试",
      "rateQ": "您对本次聊天满意吗？",
      "rateN": "{n} / 5",
      "comment": "评论（可选）",
      "rateSend": "提交评价",
      "thanks": "感谢您的反馈！",
      "transcript": "将聊天记录发送到我的邮箱",
      "transcriptDone": "聊天记录已发送到您的邮箱。",
      "tooBig": "{name} 太大（最大 {max}）。",
      "tooMany": "最多可添加 {n} 个文件。",
      "uploadFailed": "{name} 上传失败。",
      "offline": "我们现在不在线。请留言，我们会通过电子邮件回复您。",
      "reconnecting": "正在重新连接…",
      "error": "出了点问题，请重试。",
      "history": "以前的对话",
      "loading": "正在加载…",
      "continue": "继续此对话",
      "ongoing": "进行中"
    },
    "cs": {
      "title": "Napište nám",
      "close": "Zavřít chat",
      "end": "Ukončit chat",
      "sound": "Zvuk",
      "inputLabel": "Zpráva",
      "placeholder": "Napište zprávu…",
      "send": "Odeslat",
      "attach": "Přiložit soubor",
      "remove": "Odebrat",
      "name": "Jméno",
      "email": "E-mail",
      "optional": "(nepovinné)",
      "start": "Zahájit chat",
      "required": "Vyplňte prosím toto pole.",
      "badEmail": "Zadejte prosím platnou e-mailovou adresu.",
      "queue": "Jste {n}. ve frontě — asi {t}",
      "queueNoEta": "Jste {n}. ve frontě",
      "minutes": {"one": "{n} minutu", "few": "{n} minuty", "many": "{n} minuty", "other": "{n} minut"},
      "lessMinute": "méně než minutu",
      "typing": "{name} píše…",
      "agent": "Operátor",
      "you": "Vy",
      "joined": "{name} je v chatu",
      "ended": "Chat byl ukončen.",
      "seen": "Zobrazeno",
      "sending": "Odesílání…",
      "failed": "Neodesláno — klepnutím zkusíte znovu",
      "rateQ": "Jak jste byli s chatem spokojeni?",
      "rateN": "{n} z 5",
      "comment": "Komentář (nepovinné)",
      "rateSend": "Odeslat hodnocení",
      "thanks": "Děkujeme za zpětnou vazbu!",
      "transcript": "Poslat mi přepis e-mailem",
      "transcriptDone": "Přepis je na cestě do vaší schránky.",
      "tooBig": "{name} je příliš velký (max. {max}).",
      "tooMany": "Můžete přiložit nejvýše {n} souborů.",
      "uploadFailed": "{name} se nepodařilo nahrát.",
      "offline": "Právě nejsme k dispozici. Zanechte nám zprávu a odpovíme e-mailem.",
      "reconnecting": "Znovu se připojuji…",
      "error": "Něco se pokazilo. Zkuste to prosím znovu.",
      "history": "Předchozí konverzace",
      "loading": "Načítání…",
      "continue": "Pokračovat v chatu",
      "ongoing": "otevřený"
    },
    "ru": {
      "title": "Напишите нам",
      "close": "Закрыть чат",
      "end": "Завершить чат",
      "sound": "Звук",
      "inputLabel": "Сообщение",
      "placeholder": "Введите сообщение…",
      "send": "Отправить",
      "attach": "Прикрепить файл",
      "remove": "Удалить",
      "name": "Имя",
      "email": "Эл. почта",
      "optional": "(необязательно)",
      "start": "Начать чат",
      "required": "Пожалуйста, заполните это поле.",
      "badEmail": "Введите корректный адрес эл. почты.",
      "queue": "Вы {n}-й в очереди — примерно {t}",
      "queueNoEta": "Вы {n}-й в очереди",
      "minutes": {"one": "{n} минуту", "few": "{n} минуты", "many": "{n} минут", "other": "{n} минуты"},
      "lessMinute": "меньше минуты",
      "typing": "{name} печатает…",
      "agent": "Оператор",
      "you": "Вы",
      "joined": "{name} в чате",
      "ended": "Чат завершён.",
      "seen": "Просмотрено",
      "sending": "Отправка…",
      "failed": "Не отправлено — нажмите, чтобы повторить",
      "rateQ": "Как вам этот чат?",
      "rateN": "{n} из 5",
      "comment": "Комментарий (необязательно)",
      "rateSend": "Отправить оценку",
      "thanks": "Спасибо за отзыв!",
      "transcript": "Прислать мне переписку по почте",
      "transcriptDone": "Переписка отправлена вам на почту.",
      "tooBig": "Файл {name} слишком большой (максимум {max}).",
      "tooMany": "Можно прикрепить не более {n} файлов.",
      "uploadFailed": "Не удалось загрузить {name}.",
      "offline": "Сейчас нас нет на месте. Оставьте сообщение, и мы ответим по почте.",
      "reconnecting": "Переподключение…",
      "error": "Что-то пошло не так. Попробуйте ещё раз.",
      "history": "Предыдущие диалоги",
      "loading": "Загрузка…",
      "continue": "Продолжить этот чат",
      "ongoing": "открыт"
    }
  } /*end-i18n*/;

  var D = document;
  var W = window;
  var C = JSON.parse(D.getElementById("sb-config").textContent || "{}");
  var PAGE_MODE = D.body.getAttribute("data-mode") === "page";
  var FRAMED = !PAGE_MODE && W.parent !== W;
  var SITE = C.site || location.origin;
  var API = String(C.api || "").replace(/\/?$/, "/");
  var POLL_MS = Math.max(1, +C.poll_seconds || 3) * 1000;
  var MAX_FILES = +C.max_files || 5;
  var MAX_BYTES = +C.max_upload_bytes || 10485760;
  var PRE = C.prechat || {};
  var EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
  var URL_RE = /\bhttps?:\/\/[^\s<>"']+/gi;
  var KEY = "sb:" + (C.inbox || "") + ":";

  /* ---------- small helpers ---------- */
  /* The visitor token lives in this frame's localStorage (partitioned per top-level site). Where a
   * browser denies storage to third-party frames, the loader keeps it in the host page's storage
   * instead (sent back in "init"), as Chatwoot's SDK keeps its cookie on the host site. */
  var mem = {};
  var LS = null;
  try {
    LS = W.localStorage;
    LS.setItem("sb:probe", "1");
    LS.removeItem("sb:probe");
  } catch (e) { LS = null; }
  var store = {
    get: function (k) {
      try { if (LS) return LS.getItem(k); } catch (e) { /* denied */ }
      return mem[k] == null ? null : mem[k];
    },
    set: function (k, v) {
      try {
        if (LS) { if (v == null) LS.removeItem(k); else LS.setItem(k, v); return; }
      } catch (e) { /* denied or full */ }
      if (v == null) delete mem[k]; else mem[k] = v;
      // only the token goes to the host page; unsent messages stay in this frame's memory
      if (!LS && !PAGE_MODE && k === KEY + "token") post("store", {key: k, value: v == null ? null : v});
    }
  };

  function uuid() {
    if (W.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    var x = Array.prototype.map.call(b, function (v) { return (v + 256).toString(16).slice(1); }).join("");
    return x.slice(0, 8) + "-" + x.slice(8, 12) + "-" + x.slice(12, 16) + "-" + x.slice(16, 20) + "-" + x.slice(20);
  }

  function h(tag, attrs, kids) {
    var el = D.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v == null || v === false) return;
      if (k === "text") el.textContent = v;
      else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    });
    (kids || []).forEach(function (c) { if (c != null) el.appendChild(typeof c === "string" ? D.createTextNode(c) : c); });
    return el;
  }

  function icon(d) {
    var ns = "http://www.w3.org/2000/svg";
    var s = D.createElementNS(ns, "svg");
    s.setAttribute("viewBox", "0 0 24 24");
    s.setAttribute("aria-hidden", "true");
    var p = D.createElementNS(ns, "path");
    p.setAttribute("d", d);
    s.appendChild(p);
    return s;
  }

  function $(id) { return D.getElementById(id); }
  function show(el, on) { el.hidden = !on; }

  function fmtSize(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return Math.round(n / 1024) + " KB";
    return (n / 1048576).toFixed(n < 10485760 ? 1 : 0) + " MB";
  }

  /* ---------- languages ---------- */
  function pickLang(list) {
    for (var i = 0; i < list.length; i++) {
      var l = String(list[i] || "").toLowerCase();
      if (!l) continue;
      if (/^zh/.test(l)) return "zh-Hans";
      var base = l.split(/[-_]/)[0];
      if (I18N[base]) return base;
    }
    return null;
  }
  var lang = pickLang([C.lang]) || pickLang(navigator.languages || [navigator.language]) || "en";

  function t(key, args) {
    var s = I18N[lang][key];
    if (s == null) s = I18N.en[key];
    if (s == null) return key;
    args = args || {};
    if (typeof s === "object") {
      var form = "other";
      try { form = new Intl.PluralRules(lang).select(args.n); } catch (e) { /* old browser */ }
      s = s[form] || s.other;
    }
    return s.replace(/\{(\w+)\}/g, function (m, k) { return args[k] != null ? String(args[k]) : m; });
  }

  var binds = new WeakMap();
  function paint(el, b) {
    var s = typeof b.k === "function" ? b.k() : t(b.k, b.x);
    if (b.a) el.setAttribute(b.a, s); else el.textContent = s;
  }
  /* Bind an element's text (attr "") or an attribute to a string key; re-painted on setLocale. */
  function tr(el, key, args, attr) {
    var list = (binds.get(el) || []).filter(function (b) { return b.a !== (attr || ""); });
    var b = {a: attr || "", k: key, x: args};
    list.push(b);
    binds.set(el, list);
    el.setAttribute("data-i18n", "");
    paint(el, b);
    return el;
  }
  function applyLang() {
    D.documentElement.lang = lang;
    root.setAttribute("data-lang", lang);
    D.querySelectorAll("[data-i18n]").forEach(function (el) {
      (binds.get(el) || []).forEach(function (b) { paint(el, b); });
    });
    timeFmt = dateFmt = null;
    D.querySelectorAll(".sb-time").forEach(function (el) { el.textContent = fmtTime(el.getAttribute("data-at")); });
    D.querySelectorAll(".sb-past-date").forEach(function (el) { el.textContent = fmtDate(el.getAttribute("data-at")); });
  }
  var timeFmt = null, dateFmt = null;
  function fmtDate(iso) {
    var d = new Date(iso);
    if (isNaN(d)) return "";
    try {
      dateFmt = dateFmt || new Intl.DateTimeFormat(lang, {dateStyle: "medium", timeStyle: "short"});
      return dateFmt.format(d);
    } catch (e) { return d.toISOString().slice(0, 16).replace("T", " "); }
  }
  function fmtTime(iso) {
    var d = new Date(iso);
    if (isNaN(d)) return "";
    try {
      timeFmt = timeFmt || new Intl.DateTimeFormat(lang, {hour: "2-digit", minute: "2-digit"});
      return timeFmt.format(d);
    } catch (e) { return ""; }
  }

  /* ---------- colour ---------- */
  function textOn(hex) {
    var m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(hex);
    if (!m) return "#fff";
    var x = m[1].length === 3 ? m[1].replace(/./g, "$&$&") : m[1];
    var r = parseInt(x.slice(0, 2), 16), g = parseInt(x.slice(2, 4), 16), b = parseInt(x.slice(4, 6), 16);
    return 0.299 * r + 0.587 * g + 0.114 * b > 160 ? "#111" : "#fff";
  }

  /* ---------- the DOM ---------- */
  var root, list, scroller, input, sendBtn, fileInput, uploadsEl, uploadErr, queueEl, typingEl, statusEl,
    prechatForm, composer, afterEl, endBtn, soundBtn, histEl, histList;

  function field(id, key, type, mode) {
    var inp = h("input", {id: id, name: id, type: type, autocomplete: type === "email" ? "email" : "name",
      required: mode === "required", "aria-describedby": id + "-error"});
    var lab = h("label", {"for": id}, [tr(h("span"), key)]);
    if (mode !== "required") lab.appendChild(tr(h("span", {"class": "sb-opt"}), "optional"));
    return h("div", {"class": "sb-field"}, [lab, inp, h("div", {id: id + "-error", "class": "sb-err", hidden: true})]);
  }

  function build() {
    var color = /^#[0-9a-f]{3,8}$/i.test(C.color || "") ? C.color : "#2563eb";
    root = h("div", {id: "sb-root", "class": "sb-root", role: PAGE_MODE ? "main" : "dialog", "aria-labelledby": "sb-title",
      "data-transport": "offline", "data-conversation": "", "data-status": "", "data-last-seq": "0",
      "data-unread": "0", "data-pending": "0", "data-open": PAGE_MODE ? "1" : "0"});
    root.style.setProperty("--sb-c", color);
    root.style.setProperty("--sb-ct", textOn(color));
    if (PAGE_MODE) root.classList.add("sb-page");

    soundBtn = h("button", {id: "sb-sound", type: "button", "class": "sb-icon", hidden: !C.sound,
      "aria-pressed": muted ? "false" : "true", onclick: function () {
        muted = !muted;
        store.set("sb:muted", muted ? "1" : null);
        soundBtn.setAttribute("aria-pressed", muted ? "false" : "true");
      }}, [icon("M4 9v6h4l5 4V5L8 9H4zm12.5 3a4.5 4.5 0 0 0-2.5-4v8a4.5 4.5 0 0 0 2.5-4z")]);
    tr(soundBtn, "sound", null, "aria-label");
    tr(soundBtn, "sound", null, "title");
    endBtn = tr(h("button", {id: "sb-end", type: "button", "class": "sb-link", hidden: true, onclick: endChat}), "end");
    var closeBtn = h("button", {id: "sb-close", type: "button", "class": "sb-icon", hidden: !FRAMED,
      onclick: function () { post("close"); }}, [icon("M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12l5.6 5.6-1.4 1.4-5.6-5.6L6.4 19 5 17.6 10.6 12 5 6.4z")]);
    tr(closeBtn, "close", null, "aria-label");
    tr(closeBtn, "close", null, "title");
    var head = h("header", {"class": "sb-head"}, [tr(h("h1", {id: "sb-title"}), "title"),
      h("div", {"class": "sb-actions"}, [endBtn, soundBtn, closeBtn])]);

    statusEl = tr(h("div", {id: "sb-status", "class": "sb-status", hidden: true, role: "status"}), "reconnecting");
    var offline = h("div", {id: "sb-offline", "class": "sb-notice", hidden: C.online !== false},
      [h("p", {text: C.offline_message || ""}), C.office_hours_text ? h("p", {"class": "sb-hours", text: C.office_hours_text}) : null]);
    if (!C.offline_message) tr(offline.firstChild, "offline");
    var greeting = h("div", {id: "sb-greeting", "class": "sb-greeting", hidden: !C.greeting, text: C.greeting || ""});
    list = h("div", {id: "sb-messages", "class": "sb-list", role: "log", "aria-live": "polite"});
    afterEl = h("div", {id: "sb-after", "class": "sb-after"});
    histList = h("ul", {"class": "sb-past-list"});
    histEl = h("section", {id: "sb-history", "class": "sb-history", hidden: true, "aria-labelledby": "sb-history-title"},
      [tr(h("h2", {id: "sb-history-title"}), "history"), histList]);
    scroller = h("div", {id: "sb-scroll", "class": "sb-scroll"}, [offline, histEl, greeting, list, afterEl]);
    queueEl = h("div", {id: "sb-queue", "class": "sb-queue", hidden: true, role: "status"});
    typingEl = h("div", {id: "sb-typing", "class": "sb-typing", hidden: true, "aria-live": "polite"});

    prechatForm = h("form", {id: "sb-prechat", "class": "sb-prechat", hidden: true, novalidate: true, onsubmit: submitPrechat},
      [PRE.message ? h("p", {"class": "sb-intro", text: PRE.message}) : null,
        PRE.name && PRE.name !== "off" ? field("sb-prechat-name", "name", "text", PRE.name) : null,
        PRE.email && PRE.email !== "off" ? field("sb-prechat-email", "email", "email", PRE.email) : null,
        tr(h("button", {id: "sb-prechat-submit", type: "submit", "class": "sb-primary"}), "start")]);

    input = h("textarea", {id: "sb-input", name: "message", rows: "1", maxlength: C.max_chars || 5000, onkeydown: onKey,
      oninput: onInput, onpaste: function (e) {
        var f = e.clipboardData && e.clipboardData.files;
        if (f && f.length) { e.preventDefault(); addFiles(f); }
      }});
    tr(input, "placeholder", null, "placeholder");
    fileInput = h("input", {id: "sb-file", type: "file", multiple: true, "class": "sb-vh", tabindex: "-1",
      onchange: function () { addFiles(fileInput.files); fileInput.value = ""; }});
    var attach = h("button", {id: "sb-attach", type: "button", "class": "sb-icon sb-attach",
      onclick: function () { fileInput.click(); }},
      [icon("M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5H9v9a3 3 0 0 0 6 0V5a4.5 4.5 0 0 0-9 0v11.5a6 6 0 0 0 12 0v-10z")]);
    tr(attach, "attach", null, "aria-label");
    tr(attach, "attach", null, "title");
    sendBtn = h("button", {id: "sb-send", type: "submit", "class": "sb-icon sb-send"}, [icon("M3 20.5 21 12 3 3.5v6.6l12 1.9-12 1.9z")]);
    tr(sendBtn, "send", null, "aria-label");
    tr(sendBtn, "send", null, "title");
    uploadsEl = h("div", {id: "sb-uploads", "class": "sb-uploads"});
    uploadErr = h("div", {id: "sb-upload-error", "class": "sb-err", role: "alert", hidden: true});
    composer = h("form", {id: "sb-composer", "class": "sb-composer", onsubmit: function (e) { e.preventDefault(); submit(); }},
      [uploadsEl, uploadErr, h("div", {"class": "sb-row"},
        [tr(h("label", {"for": "sb-input", "class": "sb-vh"}), "inputLabel"), attach, fileInput, input, sendBtn])]);

    root.append(head, statusEl, scroller, queueEl, typingEl, prechatForm, composer);
    root.addEventListener("dragover", function (e) { e.preventDefault(); });
    root.addEventListener("drop", function (e) {
      e.preventDefault();
      if (e.dataTransfer && e.dataTransfer.files.length) addFiles(e.dataTransfer.files);
    });
    D.body.appendChild(root);
    applyLang();
  }

  /* ---------- state ---------- */
  var token = null;
  var visitor = {};
  var conv = null; // the conversation shown
  var lastSeq = 0;
  var shownRules = {};
  var msgEls = {}; // message id -> element
  var pendingEls = {}; // client_msg_id -> element
  var sysKeys = {};
  var outbox = [];
  var agentIds = [];
  var readUpTo = 0; // newest agent message the visitor has read
  var readSent = 0;
  var seenUpTo = 0; // newest visitor message an agent has seen
  var proactiveUnread = 0;
  var isOpen = PAGE_MODE;
  var muted = store.get("sb:muted") === "1";
  var prechatDone = false;
  var prechatData = null;
  var ready = false;
  var started = Date.now();
  var page = {url: PAGE_MODE ? location.href : "", title: PAGE_MODE ? D.title : "", referrer: "", elapsed: 0};
  var pageAt = Date.now();
  var uploads = [];
  var laterCalls = [];
  var lastUnread = -1;
  var gen = 0; // bumped when the visitor changes (identify as another user, reset): late answers are dropped
  var convList = []; // the visitor's (or verified customer's) conversations, newest first
  var inView = {}; // conversations whose messages are in the main list (besides conv)
  var pastEls = {}; // conversation id -> its "Previous conversations" item

  function loadStored() {
    token = PAGE_MODE && C.token ? C.token : store.get(KEY + "token");
    try { outbox = JSON.parse(store.get(KEY + "outbox") || "[]"); } catch (e) { outbox = []; }
    if (!Array.isArray(outbox) || PAGE_MODE) outbox = [];
    root.setAttribute("data-pending", String(outbox.length));
    muted = store.get("sb:muted") === "1";
    soundBtn.setAttribute("aria-pressed", muted ? "false" : "true");
  }
  function saveOutbox() {
    if (!PAGE_MODE) store.set(KEY + "outbox", outbox.length ? JSON.stringify(outbox) : null);
    root.setAttribute("data-pending", String(outbox.length));
  }

  /* ---------- host page (postMessage; only the site this frame was given) ---------- */
  function post(type, data) {
    if (!FRAMED) return;
    var m = Object.assign({sb: 1, type: type}, data || {});
    try { W.parent.postMessage(m, SITE); } catch (e) { /* bad site origin */ }
  }
  function emit(name, data) { post("emit", {name: name, data: data || null}); }

  W.addEventListener("message", function (ev) {
    if (!FRAMED || ev.source !== W.parent || ev.origin !== SITE) return;
    var d = ev.data;
    if (!d || d.sb !== 1 || typeof d.type !== "string") return;
    if (d.type === "init") {
      if (!LS && d.stored && typeof d.stored === "object") {
        Object.keys(d.stored).forEach(function (k) {
          if (k.indexOf("sb:") === 0 && typeof d.stored[k] === "string") mem[k] = d.stored[k];
        });
      }
      if (d.page) setPage(d.page, true);
      setOpen(!!d.open);
      if (!ready && !sessionStarted) startSession();
    } else if (d.type === "page" && d.page) setPage(d.page, false);
    else if (d.type === "open") setOpen(true);
    else if (d.type === "close") setOpen(false);
    else if (d.type === "locale") setLocale(d.lang);
    else if (d.type === "identify") {
      if (ready) identify(d.data); else laterCalls.push(d.data);
    } else if (d.type === "reset") reset();
  });

  function setPage(p, initial) {
    page = {url: String(p.url || ""), title: String(p.title || ""), referrer: String(p.referrer || ""), elapsed: +p.elapsed || 0};
    pageAt = Date.now() - page.elapsed * 1000;
    if (!ready) return;
    if (!initial) sendPage();
    scheduleProactive();
  }

  function setOpen(on) {
    isOpen = on || PAGE_MODE;
    root.setAttribute("data-open", isOpen ? "1" : "0");
    if (isOpen) {
      proactiveUnread = 0;
      markRead();
      updateUnread();
      setTimeout(function () {
        scrollDown(true);
        var target = !prechatForm.hidden ? prechatForm.querySelector("input") : input;
        if (target) target.focus();
      }, 30);
    }
  }

  function setLocale(l) {
    var p = pickLang([l]);
    if (!p || p === lang) return;
    lang = p;
    applyLang();
  }

  /* ---------- HTTP API ---------- */
  function api(method, path, body) {
    var headers = {};
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(API + path, {method: method, headers: headers, credentials: "omit", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body)}).then(function (r) {
      if (r.status === 204) return {};
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) {
          var e = new Error(j.error || "HTTP " + r.status);
          e.status = r.status;
          throw e;
        }
        return j;
      });
    });
  }

  /* ---------- session ---------- */
  var sessionStarted = false;
  var sessionTry = 0;
  function startSession() {
    if (!sessionStarted) loadStored();
    sessionStarted = true;
    var g = gen;
    api("POST", "session", {token: token || undefined, site: SITE, url: page.url, title: page.title,
      referrer: page.referrer, locale: lang}).then(function (r) {
      if (g !== gen) return;
      token = r.token;
      if (!PAGE_MODE) store.set(KEY + "token", token);
      setVisitor(r.visitor || {});
      (r.proactive_shown || []).forEach(function (k) { shownRules[k] = 1; });
      convList = r.conversations || [];
      ready = true;
      root.setAttribute("data-ready", "1");
      pickConv(true);
      renderHistory();
      updatePrechat();
      renderOutbox();
      connect();
      scheduleProactive();
      post("ready");
      emit("ready", {visitor: {name: visitor.name || "", email: visitor.email || "", verified: !!visitor.verified}});
      laterCalls.splice(0).forEach(identify);
    }).catch(function (e) {
      if (g !== gen) return;
      if (e.status === 403 || e.status === 404) { console.warn("Switchboard: " + e.message); return; }
      setTimeout(function () { if (g === gen) startSession(); }, Math.min(30000, 1000 * Math.pow(2, sessionTry++)));
    });
  }

  function setVisitor(v) {
    visitor = v || {};
    root.setAttribute("data-verified", visitor.verified ? "1" : "0");
  }

  /* The conversation to show: the hosted page's, else the newest (any: on start; open only: after identify). */
  function pickConv(any) {
    var c = convList.filter(function (x) { return C.conversation && x.id === C.conversation; })[0] ||
      (any ? convList[0] : convList.filter(function (x) { return x.status !== "ended"; })[0]);
    if (c) setConv(c);
  }

  var idChain = Promise.resolve();
  function identify(data) {
    idChain = idChain.then(function () { return doIdentify(data); });
  }
  function doIdentify(data) {
    data = data || {};
    var body = {};
    ["user_id", "email", "name", "user_hash", "issued_at"].forEach(function (k) { if (data[k] != null) body[k] = data[k]; });
    var g = gen;
    return api("POST", "identify", body).then(function (r) {
      if (g !== gen) return;
      if (r.token && r.token !== token) {
        // another user signed in on this browser: a new visitor, and nothing of the previous one stays
        var http = httpMode;
        gen++;
        closeTransport();
        token = r.token;
        if (!PAGE_MODE) store.set(KEY + "token", token);
        forget();
        setVisitor(r.visitor);
        convList = r.conversations || [];
        pickConv(false);
        connect();
        if (http) startHttp();
      } else {
        var was = JSON.stringify([visitor.verified, visitor.name, visitor.email]);
        setVisitor(r.visitor || visitor);
        convList = r.conversations || convList;
        if (!conv) pickConv(false);
        // the socket knows the visitor as it was when it signed in: sign in again when that changed
        if (was !== JSON.stringify([visitor.verified, visitor.name, visitor.email]) && (ws || wsTimer)) {
          var wasHttp = httpMode;
          closeTransport();
          connect();
          if (wasHttp) startHttp();
        }
      }
      renderHistory();
      updatePrechat();
      scheduleProactive();
      emit("identified", {verified: !!visitor.verified});
    }, function (e) {
      if (g !== gen) return;
      console.warn("Switchboard: identify refused: " + e.message);
      emit("identify_error", {error: e.message});
    });
  }

  /* Switchboard.reset() (the website's logout): forget this visitor, start a new anonymous one. */
  function reset() {
    // the server drops the old token's verified scope; the widget forgets the token either way
    if (token) api("POST", "reset", {}).catch(function () {});
    gen++;
    closeTransport();
    forget();
    token = null;
    store.set(KEY + "token", null);
    setVisitor({});
    shownRules = {};
    laterCalls = [];
    ready = false;
    root.setAttribute("data-ready", "0");
    updatePrechat();
    startSession();
  }

  /* Drop everything shown of a visitor (and its unsent messages, uploads, pre-chat answers). */
  function forget() {
    clearView();
    outbox = [];
    saveOutbox();
    prechatDone = false;
    prechatData = null;
    convList = [];
    pastEls = {};
    renderHistory();
    uploads = [];
    uploadsEl.textContent = "";
    show(uploadErr, false);
    input.value = "";
    updateSend();
  }

  function clearView() {
    conv = null;
    lastSeq = 0;
    msgEls = {};
    pendingEls = {};
    sysKeys = {};
    inView = {};
    agentIds = [];
    readUpTo = readSent = seenUpTo = proactiveUnread = 0;
    list.textContent = "";
    afterEl.textContent = "";
    show(queueEl, false);
    showTyping(false);
    show(endBtn, false);
    root.setAttribute("data-conversation", "");
    root.setAttribute("data-status", "");
    root.setAttribute("data-last-seq", "0");
    updateUnread();
  }

  /* Continue an open conversation from the "Previous conversations" list. */
  function switchTo(c) {
    clearView();
    setConv(c);
    renderOutbox();
    updatePrechat();
    scheduleProactive();
    scrollDown(true);
  }

  /* ---------- earlier conversations (read-only; loaded over HTTP when opened) ---------- */
  function renderHistory() {
    histList.textContent = "";
    convList.forEach(function (c) {
      if ((conv && c.id === conv.id) || inView[c.id]) return;
      histList.appendChild(pastEls[c.id] || (pastEls[c.id] = pastItem(c)));
    });
    show(histEl, !!histList.firstChild);
  }
  function noteConv(c) {
    var known = convList.filter(function (x) { return x.id === c.id; })[0];
    if (known) Object.assign(known, c); else convList.unshift(Object.assign({}, c));
  }

  function pastItem(c) {
    var body = h("div", {"class": "sb-past-body", hidden: true});
    var li = h("li", {"class": "sb-past", "data-testid": "sb-past", "data-conversation": c.id, "data-status": c.status || ""});
    var btn = h("button", {type: "button", "class": "sb-past-btn", "aria-expanded": "false", onclick: function () {
      var on = body.hidden;
      show(body, on);
      btn.setAttribute("aria-expanded", on ? "true" : "false");
      if (on && !li.hasAttribute("data-loaded")) loadPast(c, li, body);
    }}, [h("span", {"class": "sb-past-date", "data-at": c.last_message_at || c.created_at || "",
      text: fmtDate(c.last_message_at || c.created_at)}),
    c.agent ? h("span", {"class": "sb-past-agent", text: c.agent}) : null,
    c.status !== "ended" ? tr(h("span", {"class": "sb-past-open"}), "ongoing") : null,
    c.preview ? h("span", {"class": "sb-past-preview", text: c.preview}) : null]);
    li.append(btn, body);
    return li;
  }

  function loadPast(c, li, body) {
    li.setAttribute("data-loaded", "0");
    body.textContent = "";
    var g = gen, seen = {};
    var box = h("div", {"class": "sb-list"});
    var wait = tr(h("p", {"class": "sb-system"}), "loading");
    body.append(wait, box);
    pageEvents(c.id, 0, 0, function (e) {
      if (g !== gen) return;
      if (e.kind === "message" && e.message) {
        if (seen[e.message.id]) return;
        seen[e.message.id] = 1;
        box.appendChild(msgEl(e.message, false));
      } else if (e.kind === "agent_joined" || e.kind === "ended") {
        box.appendChild(tr(h("div", {"class": "sb-system", "data-testid": "sb-system", "data-kind": e.kind}),
          e.kind === "ended" ? "ended" : "joined", {name: e.agent || t("agent")}));
      }
    }, function (ok) {
      if (g !== gen) return;
      wait.remove();
      if (!ok) {
        li.removeAttribute("data-loaded");
        body.appendChild(tr(h("p", {"class": "sb-err"}), "error"));
        return;
      }
      li.setAttribute("data-loaded", "1");
      if (c.status !== "ended") {
        body.appendChild(tr(h("button", {type: "button", "class": "sb-link", "data-testid": "sb-past-continue",
          onclick: function () { switchTo(c); }}), "continue"));
      }
    });
  }

  /* Every page of a conversation's events after `after` (below `until`, if given) over HTTP. */
  function pageEvents(id, after, until, each, done) {
    var pages = 0;
    (function next(a) {
      api("GET", "conversations/" + encodeURIComponent(id) + "/events?after=" + a).then(function (r) {
        var ev = r.events || [];
        ev.forEach(function (e) { if (!until || e.seq < until) each(e); });
        var last = +r.last_seq || 0;
        var more = until ? last < until && ev.length > 0 && r.more !== false : r.more != null ? !!r.more : ev.length >= 200;
        if (more && last > a && ++pages < 100) next(last); else done(true);
      }, function () { done(false); });
    })(after);
  }

  /* A resume that left older events out (the replay is capped): fetch them over HTTP. */
  function backfill(id, after, before, tries) {
    var g = gen;
    pageEvents(id, after, before, function (e) {
      if (g === gen && conv && conv.id === id) handleEvent(e, true);
    }, function (ok) {
      if (!ok && g === gen && (tries || 0) < 3) setTimeout(function () { if (g === gen) backfill(id, after, before, (tries || 0) + 1); }, 3000);
    });
  }

  /* ---------- conversation ---------- */
  var ORDER = {waiting: 1, active: 2, ended: 3};
  function setConv(c) {
    if (!c || !c.id) return;
    if (!conv || conv.id !== c.id) {
      if (conv) inView[conv.id] = 1; // its messages stay above the new conversation's
      conv = Object.assign({}, c);
      lastSeq = 0;
      root.setAttribute("data-conversation", conv.id);
      root.setAttribute("data-last-seq", "0");
      if (ready) subscribe();
      emit("conversation", {id: conv.id, status: conv.status});
      noteConv(conv);
      renderHistory();
    } else {
      var st = conv.status;
      Object.assign(conv, c);
      if ((ORDER[st] || 0) > (ORDER[c.status] || 0)) conv.status = st;
      noteConv(conv);
    }
    setStatus(conv.status);
  }

  function setStatus(st) {
    conv.status = st;
    root.setAttribute("data-status", st || "");
    show(endBtn, st === "waiting" || st === "active");
    if (st !== "waiting") show(queueEl, false);
    if (st === "ended") {
      showTyping(false);
      showAfter();
    } else afterEl.textContent = "";
  }

  /* `old`: an event older than those shown (a capped resume's backfill): put in seq order, no sound. */
  function handleEvent(e, old) {
    if (!conv || e.conversation !== conv.id) return;
    if (e.seq > lastSeq) {
      lastSeq = e.seq;
      root.setAttribute("data-last-seq", String(lastSeq));
    }
    var k = e.kind;
    if (k === "message" && e.message) renderMessage(e.message, !old, e.seq, old);
    else if (k === "agent_joined") {
      if (!old) conv.agent = e.agent;
      systemLine(e, "joined", {name: e.agent || t("agent")}, old);
      if (conv.status !== "ended" && !old) setStatus("active");
    } else if (k === "ended") {
      systemLine(e, "ended", null, old);
      if (conv.status !== "ended") emit("ended", {id: conv.id});
      setStatus("ended");
    } else if (k === "rated") {
      conv.rating = e.rating;
      conv.can_rate = false;
      if (conv.status === "ended") showAfter();
    } else if (k === "seen") {
      seenUpTo = Math.max(seenUpTo, +e.message_id || 0);
      updateSeen();
    } else if (k === "read") {
      readUpTo = Math.max(readUpTo, +e.message_id || 0);
      readSent = Math.max(readSent, readUpTo);
      updateUnread();
    }
  }

  function systemLine(e, key, args, old) {
    var sk = e.conversation + ":" + e.seq;
    if (sysKeys[sk]) return;
    sysKeys[sk] = 1;
    insert(tr(h("div", {"class": "sb-system", "data-testid": "sb-system", "data-kind": e.kind, "data-seq": e.seq}), key, args), old);
  }

  /* New items go last (before unsent ones); `old` ones before the first newer item (or one without a seq). */
  function insert(el, old) {
    var before = list.querySelector('[data-pending="1"]');
    if (old) {
      var s = +el.getAttribute("data-seq");
      for (before = list.firstChild; before; before = before.nextSibling) {
        var ns = +before.getAttribute("data-seq");
        if (!ns || ns > s) break;
      }
    }
    var near = nearBottom();
    list.insertBefore(el, before);
    scrollDown(near && !old);
  }
  function nearBottom() { return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80; }
  function scrollDown(force) { if (force) scroller.scrollTop = scroller.scrollHeight; }

  /* Text → nodes; URLs become <a> (http/https only), everything else stays text. */
  function linkify(el, text) {
    var at = 0;
    String(text || "").replace(URL_RE, function (m, idx) {
      var url = m.replace(/[.,;:!?)\]}'"]+$/, "");
      var end = idx + url.length;
      var href = null;
      try {
        var u = new URL(url);
        if (u.protocol === "http:" || u.protocol === "https:") href = u.href;
      } catch (e) { /* not a URL */ }
      if (!href) return m;
      if (idx > at) el.appendChild(D.createTextNode(text.slice(at, idx)));
      el.appendChild(h("a", {href: href, target: "_blank", rel: "noopener noreferrer", text: url}));
      at = end;
      return m;
    });
    if (at < text.length) el.appendChild(D.createTextNode(text.slice(at)));
  }

  function safeUrl(u) {
    try {
      var x = new URL(u, API || location.href);
      return x.protocol === "http:" || x.protocol === "https:" ? x.href : null;
    } catch (e) { return null; }
  }

  function msgEl(m, pending) {
    var dir = m.direction === "agent" ? "agent" : m.direction === "proactive" ? "proactive" : "visitor";
    var text = h("div", {"class": "sb-text"});
    linkify(text, m.text || "");
    var atts = h("div", {"class": "sb-atts"});
    (m.attachments || []).forEach(function (a) {
      var href = a.url && safeUrl(a.url);
      var label = (a.name || "file") + (a.size != null ? " (" + fmtSize(+a.size) + ")" : "");
      atts.appendChild(href ? h("a", {"class": "sb-att", href: href, download: a.name || "", target: "_blank",
        rel: "noopener noreferrer", text: label}) : h("span", {"class": "sb-att", text: label}));
    });
    var meta = h("div", {"class": "sb-meta"});
    if (pending) meta.appendChild(tr(h("span"), "sending"));
    else if (m.created_at) meta.appendChild(h("span", {"class": "sb-time", "data-at": m.created_at, text: fmtTime(m.created_at)}));
    return h("div", {"class": "sb-msg sb-" + dir, "data-testid": "sb-message", "data-direction": dir,
      "data-message-id": m.id != null ? String(m.id) : "", "data-client-msg-id": m.client_msg_id || null,
      "data-pending": pending ? "1" : null},
    [dir !== "visitor" ? h("div", {"class": "sb-author", text: m.author || ""}) : null,
      h("div", {"class": "sb-bubble"}, [text, atts.firstChild ? atts : null]), meta]);
  }

  function renderMessage(m, live, seq, old) {
    var id = String(m.id);
    var cm = m.client_msg_id;
    var pend = cm && pendingEls[cm];
    if (cm) dropOutbox(cm);
    if (msgEls[id]) {
      if (pend && pend !== msgEls[id]) pend.remove();
      if (cm) delete pendingEls[cm];
      if (seq && !msgEls[id].hasAttribute("data-seq")) msgEls[id].setAttribute("data-seq", seq);
      return;
    }
    var el = msgEl(m, false);
    if (seq) el.setAttribute("data-seq", seq);
    msgEls[id] = el;
    if (pend) {
      var near = nearBottom();
      pend.replaceWith(el);
      delete pendingEls[cm];
      scrollDown(near);
    } else insert(el, old);
    if (m.direction === "agent") {
      agentIds.push(+m.id);
      show(queueEl, false);
      if (!m.author && conv && conv.agent) el.firstChild.textContent = conv.agent;
      showTyping(false);
      var attention = !isOpen || D.visibilityState !== "visible";
      if (live && attention && +m.id > readUpTo && Date.now() - started > 3000) beep();
      if (live && Date.now() - started > 3000) emit("message", {id: m.id, direction: "agent"});
      markRead();
      updateUnread();
    } else updateSeen();
  }

  function updateSeen() {
    var old = list.querySelector('[data-testid="sb-seen"]');
    var vis = list.querySelectorAll('.sb-visitor:not([data-pending="1"])');
    var last = vis[vis.length - 1];
    var ok = last && +last.getAttribute("data-message-id") <= seenUpTo;
    if (old && (!ok || old.parentNode !== last)) old.remove();
    if (ok && !last.querySelector('[data-testid="sb-seen"]')) {
      last.appendChild(tr(h("div", {"class": "sb-seen", "data-testid": "sb-seen"}), "seen"));
    }
  }

  function unreadCount() {
    var n = 0;
    agentIds.forEach(function (id) { if (id > readUpTo) n++; });
    return n + proactiveUnread;
  }
  function updateUnread() {
    var n = unreadCount();
    root.setAttribute("data-unread", String(n));
    if (n !== lastUnread) {
      lastUnread = n;
      post("unread", {count: n});
      emit("unread", {count: n});
    }
  }

  function markRead() {
    if (!isOpen || D.visibilityState !== "visible" || !conv || !agentIds.length) return;
    var newest = Math.max.apply(null, agentIds);
    if (newest > readUpTo) readUpTo = newest;
    updateUnread();
    flushRead();
  }
  function flushRead() {
    if (!conv || readUpTo <= readSent) return;
    var id = readUpTo;
    if (wsReady) {
      wsSend({action: "read", conversation: conv.id, message_id: id});
      readSent = id;
    } else if (httpMode) {
      var before = readSent;
      readSent = id;
      api("POST", "conversations/" + conv.id + "/read", {message_id: id}).catch(function () { if (readSent === id) readSent = before; });
    }
  }
  D.addEventListener("visibilitychange", function () { if (D.visibilityState === "visible") markRead(); });

  /* ---------- queue, typing ---------- */
  function showQueue(q) {
    // Once an agent has answered, the visitor is being helped: no place in the queue to show.
    if (!q || q.position == null || !conv || conv.status !== "waiting" || agentIds.length) { show(queueEl, false); return; }
    var n = +q.position;
    var s = q.estimate_seconds;
    if (s == null) tr(queueEl, "queueNoEta", {n: n});
    else {
      tr(queueEl, function () {
        var m = Math.round(+s / 60);
        return t("queue", {n: n, t: +s < 60 ? t("lessMinute") : t("minutes", {n: m})});
      });
    }
    show(queueEl, true);
  }

  var typingTimer = null;
  function showTyping(on, name, ttl) {
    clearTimeout(typingTimer);
    if (!on) { show(typingEl, false); return; }
    tr(typingEl, "typing", {name: name || (conv && conv.agent) || t("agent")});
    show(typingEl, true);
    typingTimer = setTimeout(function () { show(typingEl, false); }, ttl || 8000);
  }

  var myTyping = false, myTypingAt = 0, myTypingTimer = null;
  function sendTyping(on) {
    if (!conv || conv.status === "ended") return;
    myTyping = on;
    myTypingAt = Date.now();
    if (wsReady) wsSend({action: "typing", conversation: conv.id, typing: on});
    else if (httpMode) api("POST", "conversations/" + conv.id + "/typing", {typing: on}).catch(function () {});
  }
  function onInput() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 140) + "px";
    clearTimeout(myTypingTimer);
    if (!input.value.trim()) { if (myTyping) sendTyping(false); return; }
    if (!myTyping || Date.now() - myTypingAt > (httpMode ? 5000 : 3000)) sendTyping(true);
    myTypingTimer = setTimeout(function () { if (myTyping) sendTyping(false); }, 4000);
  }
  function onKey(e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  }
  D.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && FRAMED) { e.preventDefault(); post("close"); }
  });

  /* ---------- pre-chat ---------- */
  function needsPrechat() {
    if (!PRE.enabled || prechatDone || (conv && conv.status !== "ended")) return false;
    var needName = PRE.name && PRE.name !== "off" && !visitor.name;
    var needEmail = PRE.email && PRE.email !== "off" && !visitor.email;
    return !!(needName || needEmail);
  }
  function updatePrechat() {
    var need = needsPrechat();
    show(prechatForm, need);
    show(composer, !need);
  }
  function submitPrechat(e) {
    e.preventDefault();
    var ok = true;
    var data = {};
    [["name", PRE.name], ["email", PRE.email]].forEach(function (f) {
      var inp = $("sb-prechat-" + f[0]);
      if (!inp) return;
      var v = inp.value.trim();
      var err = $("sb-prechat-" + f[0] + "-error");
      var bad = !v && f[1] === "required" ? "required" : v && f[0] === "email" && !EMAIL_RE.test(v) ? "badEmail" : null;
      show(err, !!bad);
      inp.setAttribute("aria-invalid", bad ? "true" : "false");
      if (bad) {
        tr(err, bad);
        if (ok) inp.focus();
        ok = false;
      }
      if (v) data[f[0]] = v;
    });
    if (!ok) return;
    prechatData = data;
    prechatDone = true;
    if (data.name) visitor.name = data.name;
    if (data.email) visitor.email = data.email;
    updatePrechat();
    input.focus();
  }

  /* ---------- attachments ---------- */
  function uploadError(key, args) {
    tr(uploadErr, key, args);
    show(uploadErr, true);
  }
  function addFiles(files) {
    show(uploadErr, false);
    Array.prototype.forEach.call(files, function (f) {
      if (uploads.length >= MAX_FILES) return uploadError("tooMany", {n: MAX_FILES});
      if (f.size > MAX_BYTES) return uploadError("tooBig", {name: f.name, max: fmtSize(MAX_BYTES)});
      startUpload(f);
    });
  }
  function startUpload(f) {
    var u = {name: f.name, size: f.size, content_type: f.type, id: null, state: "uploading"};
    var bar = h("progress", {max: "100", value: "0"});
    var rm = h("button", {type: "button", "class": "sb-x", text: "×", onclick: function () {
      if (xhr.readyState !== 4) xhr.abort();
      uploads = uploads.filter(function (x) { return x !== u; });
      u.el.remove();
      updateSend();
    }});
    tr(rm, "remove", null, "aria-label");
    u.el = h("div", {"class": "sb-chip", "data-testid": "sb-upload", "data-state": "uploading"},
      [h("span", {"class": "sb-chip-name", text: f.name + " (" + fmtSize(f.size) + ")"}), bar, rm]);
    uploadsEl.appendChild(u.el);
    uploads.push(u);
    updateSend();
    var fd = new FormData();
    fd.append("file", f, f.name);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", API + "uploads");
    if (token) xhr.setRequestHeader("Authorization", "Bearer " + token);
    xhr.upload.onprogress = function (e) { if (e.lengthComputable) bar.value = Math.round(100 * e.loaded / e.total); };
    function fail(key) {
      u.state = "error";
      u.el.setAttribute("data-state", "error");
      uploads = uploads.filter(function (x) { return x !== u; });
      u.el.remove();
      uploadError(key, {name: f.name, max: fmtSize(MAX_BYTES)});
      updateSend();
    }
    xhr.onload = function () {
      var j = {};
      try { j = JSON.parse(xhr.responseText); } catch (e) { /* empty */ }
      if (xhr.status === 201 || (xhr.status === 200 && j.id)) {
        u.id = j.id;
        u.state = "done";
        u.el.setAttribute("data-state", "done");
        bar.value = 100;
        updateSend();
      } else fail(xhr.status === 413 ? "tooBig" : "uploadFailed");
    };
    xhr.onerror = function () { fail("uploadFailed"); };
    xhr.send(fd);
  }
  function updateSend() {
    sendBtn.disabled = uploads.some(function (u) { return u.state === "uploading"; });
  }

  /* ---------- sending ---------- */
  function submit() {
    if (!ready || sendBtn.disabled) return;
    var text = input.value.replace(/^\s+|\s+$/g, "");
    var done = uploads.filter(function (u) { return u.state === "done"; });
    if (!text && !done.length) return;
    var p = {client_msg_id: uuid(), conversation: conv && conv.status !== "ended" ? conv.id : null, text: text,
      uploads: done.map(function (u) { return u.id; }),
      attachments: done.map(function (u) { return {name: u.name, size: u.size, content_type: u.content_type}; })};
    if (!p.conversation && prechatData) p.prechat = prechatData;
    input.value = "";
    onInput();
    uploads = [];
    uploadsEl.textContent = "";
    show(uploadErr, false);
    updateSend();
    if (myTyping) sendTyping(false);
    ensureAudio();
    outbox.push(p);
    saveOutbox();
    showPending(p);
    flush();
  }

  function showPending(p) {
    if (pendingEls[p.client_msg_id]) return;
    var el = msgEl({direction: "visitor", text: p.text, client_msg_id: p.client_msg_id, attachments: p.attachments}, true);
    el.addEventListener("click", function () {
      if (el.getAttribute("data-failed") !== "1") return;
      el.removeAttribute("data-failed");
      tr(el.querySelector(".sb-meta span"), "sending");
      outbox.push(p);
      saveOutbox();
      flush();
    });
    pendingEls[p.client_msg_id] = el;
    list.appendChild(el);
    scrollDown(true);
  }
  function renderOutbox() { outbox.forEach(showPending); }

  function dropOutbox(cm) {
    var before = outbox.length;
    outbox = outbox.filter(function (p) { return p.client_msg_id !== cm; });
    if (outbox.length !== before) saveOutbox();
  }

  function failed(cm, error) {
    dropOutbox(cm);
    var el = pendingEls[cm];
    if (!el) return;
    el.setAttribute("data-failed", "1");
    var s = el.querySelector(".sb-meta span");
    if (s) { tr(s, "failed"); if (error) s.title = error; }
  }

  function wire(p) {
    return {action: "message", client_msg_id: p.client_msg_id, conversation: p.conversation, text: p.text,
      uploads: p.uploads, prechat: p.prechat};
  }

  function onAck(f) {
    if (f.conversation) setConv(f.conversation);
    if (f.message) {
      if (!f.message.client_msg_id) f.message.client_msg_id = f.client_msg_id;
      renderMessage(f.message, false);
    } else dropOutbox(f.client_msg_id);
    updatePrechat();
  }

  var httpBusy = false;
  function flush() {
    if (!ready || !outbox.length) return;
    if (wsReady) outbox.forEach(function (p) { wsSend(wire(p)); });
    else if (httpMode) flushHttp();
  }
  function flushHttp() {
    if (httpBusy || !outbox.length) return;
    httpBusy = true;
    var p = outbox[0], g = gen;
    var body = wire(p);
    delete body.action;
    api("POST", "messages", body).then(function (r) {
      if (g !== gen) return;
      httpBusy = false;
      httpOk(true);
      onAck({client_msg_id: p.client_msg_id, conversation: r.conversation, message: r.message});
      flushHttp();
    }, function (e) {
      if (g !== gen) return;
      httpBusy = false;
      if (e.status && e.status !== 429 && e.status < 500) { failed(p.client_msg_id, e.message); flushHttp(); }
      else if (!e.status) httpOk(false);
    });
  }

  /* ---------- websocket transport, with the HTTP fallback ---------- */
  var ws = null, wsReady = false, wsFails = 0, wsTimer = null, pingTimer = null, watchdog = null;
  var httpMode = false, httpUp = false, pollTimer = null, polling = false;

  function connect() {
    if (!C.ws || typeof WebSocket === "undefined") { startHttp(); return; }
    openWs();
  }

  function openWs() {
    clearTimeout(wsTimer);
    if (ws) return;
    var sock;
    try { sock = new WebSocket(C.ws); } catch (e) { wsLost(null, false); return; }
    ws = sock;
    var gotReady = false;
    // a socket that neither opens nor fails (a proxy or a CSP that blocks it) counts as blocked
    var authTimer = setTimeout(function () {
      if (gotReady) return;
      wsFails = Math.max(wsFails, 2);
      drop(sock);
    }, 6000);
    sock.onopen = function () {
      clearTimeout(authTimer);
      authTimer = setTimeout(function () { if (!gotReady) drop(sock); }, 12000);
      sock.send(JSON.stringify({action: "auth", token: token}));
    };
    sock.onerror = function () { if (!gotReady) drop(sock); };
    sock.onmessage = function (ev) {
      if (ws !== sock) return;
      clearTimeout(watchdog);
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (!f || typeof f !== "object") return;
      if (f.type === "ready") {
        gotReady = true;
        clearTimeout(authTimer);
        wsFails = 0;
        wsReady = true;
        if (f.visitor) visitor = Object.assign(visitor, f.visitor);
        stopHttp();
        transport();
        subscribe();
        sendPage();
        flush();
        flushRead();
        clearInterval(pingTimer);
        pingTimer = setInterval(function () {
          wsSend({action: "ping"});
          watchdog = setTimeout(function () { drop(sock); }, 10000);
        }, Math.max(5, +f.ping_seconds || 25) * 1000);
      } else onFrame(f);
    };
    sock.onclose = function (ev) {
      clearTimeout(authTimer);
      if (ws === sock) wsLost(ev, gotReady);
    };
  }

  /* Close the socket and stop polling, without reconnecting (the visitor changes). */
  function closeTransport() {
    clearTimeout(wsTimer);
    clearInterval(pingTimer);
    clearTimeout(watchdog);
    var s = ws;
    ws = null;
    wsReady = false;
    wsFails = 0;
    if (s) {
      s.onopen = s.onclose = s.onmessage = s.onerror = null;
      try { s.close(1000); } catch (e) { /* already closed */ }
    }
    stopHttp();
    httpBusy = polling = false;
    transport();
  }

  function drop(sock) {
    if (ws !== sock) return;
    sock.onclose = sock.onmessage = sock.onerror = null;
    try { sock.close(); } catch (e) { /* already closed */ }
    wsLost(null, wsReady);
  }

  function wsLost(ev, wasReady) {
    ws = null;
    wsReady = false;
    clearInterval(pingTimer);
    clearTimeout(watchdog);
    if (!wasReady) wsFails++;
    if (ev && ev.code === 4401 && wsFails < 3) {
      // the token was refused: start a new session (keeps the UI), then reconnect
      token = null;
      store.set(KEY + "token", null);
    }
    var busy = ev && ev.code === 4429; // too many connections: back off, meanwhile over HTTP
    if (wsFails >= 3 || busy || (ev && ev.code === 4403)) startHttp();
    transport();
    var n = Math.max(0, wasReady ? 0 : wsFails - 1);
    var delay = busy ? 30000 : Math.min(30000, 1000 * Math.pow(2, n)) * (0.5 + Math.random() * 0.5);
    wsTimer = setTimeout(function () {
      if (!token) reSession(); else openWs();
    }, delay);
  }

  function reSession() {
    var g = gen;
    api("POST", "session", {site: SITE, url: page.url, title: page.title, referrer: page.referrer, locale: lang})
      .then(function (r) {
        if (g !== gen) return;
        token = r.token;
        if (!PAGE_MODE) store.set(KEY + "token", token);
        setVisitor(r.visitor || visitor);
        convList = r.conversations || [];
        if (conv && !convList.some(function (c) { return c.id === conv.id; })) clearView();
        renderHistory();
        openWs();
      }, function () { if (g === gen) wsLost(null, false); });
  }

  W.addEventListener("offline", function () { if (ws) drop(ws); });
  W.addEventListener("online", function () {
    wsFails = Math.min(wsFails, 1);
    if (!ws) openWs();
    if (httpMode) poll();
  });

  function wsSend(obj) {
    if (!ws || ws.readyState !== 1) return false;
    try { ws.send(JSON.stringify(obj)); return true; } catch (e) { return false; }
  }

  function subscribe() {
    if (!conv) return;
    if (wsReady) wsSend({action: "resume", conversation: conv.id, last_seq: lastSeq});
    else if (httpMode) poll();
  }

  function sendPage() {
    if (PAGE_MODE || !page.url) return;
    if (wsReady) wsSend({action: "page", url: page.url, title: page.title});
    else if (httpMode) api("POST", "page", {url: page.url, title: page.title}).catch(function () {});
  }

  function onFrame(f) {
    if (f.type === "event") handleEvent(f);
    else if (f.type === "ack") onAck(f);
    else if (f.type === "error") {
      if (f.client_msg_id) failed(f.client_msg_id, f.error);
      else console.warn("Switchboard: " + f.error);
    } else if (f.type === "resumed") {
      if (f.conversation && conv && f.conversation.id === conv.id) {
        setConv(f.conversation);
        // the replay was capped to the newest events: the older ones come over HTTP
        if (f.truncated) backfill(conv.id, +f.history_after || 0, +f.history_before || 0);
      }
    } else if (f.type === "typing") {
      if (conv && f.conversation === conv.id) showTyping(!!f.typing, f.agent, f.ttl ? (+f.ttl + 2) * 1000 : 0);
    } else if (f.type === "queue") {
      if (conv && f.conversation === conv.id) showQueue(f);
    }
  }

  function startHttp() {
    if (httpMode) return;
    httpMode = true;
    transport();
    poll();
    flush();
  }
  function stopHttp() {
    httpMode = false;
    clearTimeout(pollTimer);
  }
  function httpOk(ok) {
    httpUp = ok;
    transport();
  }
  function poll() {
    clearTimeout(pollTimer);
    if (!httpMode) return;
    if (!conv || polling) {
      if (!conv) {
        // nothing to poll yet; check the API is reachable once so the transport state is honest
        if (!httpUp) api("POST", "page", {url: page.url || location.href, title: page.title}).then(function () { httpOk(true); }, function () { httpOk(false); });
        pollTimer = setTimeout(poll, POLL_MS);
      }
      flushHttp();
      return;
    }
    polling = true;
    var c = conv.id, g = gen, again = false;
    api("GET", "conversations/" + encodeURIComponent(c) + "/events?after=" + lastSeq).then(function (r) {
      if (g !== gen) return;
      polling = false;
      httpOk(true);
      if (!conv || conv.id !== c) return;
      // a full page (or "more"): the next one at once
      again = r.more != null ? !!r.more : (r.events || []).length >= 200;
      (r.events || []).forEach(function (e) { handleEvent(e); });
      if (r.last_seq > lastSeq) {
        lastSeq = r.last_seq;
        root.setAttribute("data-last-seq", String(lastSeq));
      }
      showQueue(r.queue);
      if (r.agent_typing) showTyping(true, r.agent_typing.name, POLL_MS * 2 + 1000);
      else if (!typingEl.hidden && !wsReady) showTyping(false);
      if (r.poll_seconds) POLL_MS = Math.max(1, +r.poll_seconds) * 1000;
      flushRead();
    }, function (e) {
      if (g !== gen) return;
      polling = false;
      httpOk(!!e.status);
    }).then(function () {
      if (g !== gen) return;
      flushHttp();
      if (httpMode) pollTimer = setTimeout(poll, again ? 0 : POLL_MS);
    });
  }

  var lastTransport = "";
  function transport() {
    var v = wsReady ? "ws" : httpMode && httpUp ? "http" : "offline";
    root.setAttribute("data-transport", v);
    show(statusEl, v === "offline" && ready && Date.now() - started > 2000);
    if (v !== lastTransport) {
      lastTransport = v;
      post("transport", {value: v});
    }
  }

  /* ---------- after the chat: rating and transcript ---------- */
  function showAfter() {
    afterEl.textContent = "";
    if (C.csat && conv.rating == null && conv.can_rate !== false) afterEl.appendChild(ratingForm());
    else if (conv.rating != null && rated[conv.id]) afterEl.appendChild(tr(h("p", {id: "sb-rating-thanks", "class": "sb-thanks"}), "thanks"));
    afterEl.appendChild(transcriptBox());
    scrollDown(true);
  }
  var rated = {};

  function ratingForm() {
    var value = 0;
    var btns = [1, 2, 3, 4, 5].map(function (n) {
      var b = h("button", {type: "button", "class": "sb-star", "data-testid": "sb-rate", "data-rating": String(n),
        "aria-pressed": "false", text: "★", onclick: function () {
          value = n;
          btns.forEach(function (x, i) {
            x.setAttribute("aria-pressed", i < n ? "true" : "false");
          });
          submitBtn.disabled = false;
        }});
      tr(b, "rateN", {n: n}, "aria-label");
      return b;
    });
    var comment = h("textarea", {id: "sb-rating-comment", rows: "2", maxlength: "2000"});
    var submitBtn = tr(h("button", {id: "sb-rating-submit", type: "submit", "class": "sb-primary", disabled: true}), "rateSend");
    var err = h("div", {"class": "sb-err", role: "alert", hidden: true});
    var c = conv;
    var form = h("form", {id: "sb-rating", "class": "sb-rating", onsubmit: function (e) {
      e.preventDefault();
      if (!value) return;
      submitBtn.disabled = true;
      api("POST", "conversations/" + c.id + "/rating", {rating: value, comment: comment.value.trim()}).then(function () {
        c.rating = value;
        rated[c.id] = 1;
        showAfter();
      }, function (e2) {
        if (e2.status === 409) { c.can_rate = false; showAfter(); return; }
        submitBtn.disabled = false;
        tr(err, "error");
        show(err, true);
      });
    }}, [tr(h("p", {id: "sb-rating-label", "class": "sb-q"}), "rateQ"),
      h("div", {"class": "sb-stars", role: "group", "aria-labelledby": "sb-rating-label"}, btns),
      tr(h("label", {"for": "sb-rating-comment"}), "comment"), comment, err, submitBtn]);
    return form;
  }

  function transcriptBox() {
    var c = conv;
    var box = h("div", {"class": "sb-transcript"});
    if (c.transcript_requested) {
      box.appendChild(tr(h("p", {id: "sb-transcript-done", "class": "sb-thanks"}), "transcriptDone"));
      return box;
    }
    var emailIn = h("input", {id: "sb-transcript-email", type: "email", autocomplete: "email", hidden: true});
    tr(emailIn, "email", null, "aria-label");
    tr(emailIn, "email", null, "placeholder");
    var err = h("div", {id: "sb-transcript-error", "class": "sb-err", role: "alert", hidden: true});
    var sendT = tr(h("button", {id: "sb-transcript-send", type: "button", "class": "sb-primary", hidden: true}), "send");
    function go(email) {
      api("POST", "conversations/" + c.id + "/transcript", email ? {email: email} : {}).then(function () {
        c.transcript_requested = true;
        if (email) visitor.email = email;
        showAfter();
      }, function (e) {
        if (e.status === 400 && !email) { show(emailIn, true); show(sendT, true); emailIn.focus(); return; }
        tr(err, "error");
        show(err, true);
      });
    }
    var btn = tr(h("button", {id: "sb-transcript", type: "button", "class": "sb-link", onclick: function () {
      // the server mails the visitor's own address (an address is sent only when it has none)
      if (visitor.email) go(null);
      else if (prechatData && prechatData.email) go(prechatData.email);
      else { show(emailIn, true); show(sendT, true); show(btn, false); emailIn.focus(); }
    }}), "transcript");
    sendT.addEventListener("click", function () {
      var v = emailIn.value.trim();
      if (!EMAIL_RE.test(v)) { tr(err, "badEmail"); show(err, true); return; }
      show(err, false);
      go(v);
    });
    box.append(btn, emailIn, sendT, err);
    return box;
  }

  function endChat() {
    if (!conv || conv.status === "ended") return;
    var c = conv;
    api("POST", "conversations/" + c.id + "/end").then(function (r) {
      if (conv === c) setConv(r && r.id ? r : {id: c.id, status: "ended"});
      if (conv === c && conv.status !== "ended") setStatus("ended");
      updatePrechat();
      subscribe();
    }, function () {});
  }

  /* ---------- proactive messages ---------- */
  var proTimers = [];
  function scheduleProactive() {
    proTimers.forEach(clearTimeout);
    proTimers = [];
    if (PAGE_MODE || !ready || (conv && conv.status !== "ended")) return;
    (C.proactive || []).forEach(function (r) {
      if (!r || !r.key || shownRules[r.key]) return;
      if (r.url_contains && page.url.indexOf(r.url_contains) < 0) return;
      var wait = Math.max(0, (+r.after_seconds || 0) * 1000 - (Date.now() - pageAt));
      proTimers.push(setTimeout(function () { fireProactive(r); }, wait));
    });
  }
  function fireProactive(r) {
    if (shownRules[r.key] || (conv && conv.status !== "ended")) return;
    shownRules[r.key] = 1;
    proTimers.forEach(clearTimeout);
    proTimers = [];
    api("POST", "proactive", {rule: r.key}).catch(function () {});
    var el = msgEl({direction: "proactive", text: r.message || "", author: ""}, false);
    el.setAttribute("data-rule", r.key);
    insert(el);
    if (!isOpen) {
      proactiveUnread++;
      post("proactive", {key: r.key, text: String(r.message || "")});
      beep();
    }
    updateUnread();
  }

  /* ---------- sound: a short WebAudio beep, no audio files ---------- */
  var audio = null;
  function ensureAudio() {
    if (!C.sound || audio) return;
    try {
      var AC = W.AudioContext || W.webkitAudioContext;
      if (AC) audio = new AC();
    } catch (e) { audio = null; }
  }
  D.addEventListener("pointerdown", ensureAudio, {once: true});
  function beep() {
    if (!C.sound || muted) return;
    ensureAudio();
    if (!audio) return;
    try {
      if (audio.state === "suspended") audio.resume();
      var now = audio.currentTime, o = audio.createOscillator(), g = audio.createGain();
      o.type = "sine";
      o.frequency.setValueAtTime(880, now);
      o.frequency.setValueAtTime(1320, now + 0.09);
      g.gain.setValueAtTime(0.0001, now);
      g.gain.exponentialRampToValueAtTime(0.12, now + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, now + 0.28);
      o.connect(g);
      g.connect(audio.destination);
      o.start(now);
      o.stop(now + 0.3);
    } catch (e) { /* no sound */ }
  }

  /* ---------- start ---------- */
  build();
  updatePrechat();
  updateSend();
  if (FRAMED) {
    post("hello");
    // the loader answers with "init" (page URL, open state); do not wait for it forever
    setTimeout(function () { if (!sessionStarted) startSession(); }, 1500);
  } else startSession();
})();
