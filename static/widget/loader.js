/* Switchboard chat loader. Embed (docs/chat.md):
 *   <script src="SITE_URL/widget/v1/loader.js" data-inbox="PUBLIC-TOKEN" async></script>
 * Adds a launcher (closed Shadow DOM) and an iframe from our origin; all UI, tokens and sockets live
 * in the iframe. Host <-> iframe only via postMessage, checking origin and source. Calls made before
 * this script ran are queued: window.Switchboard = window.Switchboard || {q: []}; Switchboard.q.push(["open"]).
 * ASCII only (non-ASCII as \u escapes): the host page decides the charset this script is read in. */
(function () {
  "use strict";
  var W = window, D = document;
  var SB = W.Switchboard;
  if (SB && SB._sb) return; // loaded twice
  var me = D.currentScript;
  if (!me || !me.getAttribute("data-inbox")) {
    me = null;
    var all = D.querySelectorAll("script[data-inbox]");
    for (var i = 0; i < all.length; i++) {
      if (/\/widget\/v1\/loader\.js$/.test(all[i].src.split(/[?#]/)[0])) me = all[i];
    }
  }
  if (!me) { console.warn("Switchboard: loader script tag not found"); return; }
  var ORIGIN = new URL(me.src, location.href).origin;
  var INBOX = me.getAttribute("data-inbox");
  var BASE = ORIGIN + "/widget/v1/" + encodeURIComponent(INBOX) + "/";

  var L = /*i18n*/ {
    "en": {"open": "Open chat", "close": "Close chat", "dismiss": "Dismiss", "frame": "Chat", "unread": "{n} unread"},
    "zh-Hans": {"open": "\u6253\u5f00\u804a\u5929", "close": "\u5173\u95ed\u804a\u5929", "dismiss": "\u5173\u95ed\u63d0\u793a", "frame": "\u804a\u5929", "unread": "{n} \u6761\u672a\u8bfb"},
    "cs": {"open": "Otev\u0159\u00edt chat", "close": "Zav\u0159\u00edt chat", "dismiss": "Zav\u0159\u00edt", "frame": "Chat", "unread": "nep\u0159e\u010dteno: {n}"},
    "ru": {"open": "\u041e\u0442\u043a\u0440\u044b\u0442\u044c \u0447\u0430\u0442", "close": "\u0417\u0430\u043a\u0440\u044b\u0442\u044c \u0447\u0430\u0442", "dismiss": "\u0421\u043a\u0440\u044b\u0442\u044c", "frame": "\u0427\u0430\u0442", "unread": "\u043d\u0435\u043f\u0440\u043e\u0447\u0438\u0442\u0430\u043d\u043d\u044b\u0445: {n}"}
  } /*end-i18n*/;
  function pick(list) {
    for (var j = 0; j < list.length; j++) {
      var l = String(list[j] || "").toLowerCase();
      if (/^zh/.test(l)) return "zh-Hans";
      if (L[l.split(/[-_]/)[0]]) return l.split(/[-_]/)[0];
    }
    return null;
  }
  var lang = pick([D.documentElement.lang]) || pick(navigator.languages || [navigator.language]) || "en";

  var api = SB && (typeof SB === "object" || typeof SB === "function") ? SB : {};
  var early = Array.isArray(api.q) ? api.q.slice() : [];
  var PFX = "switchboard:";
  var handlers = {}, toFrame = [], helloed = false, built = false, dead = false, wantOpen = false, isOpen = false;
  var cfg, host, btn, badge, bubble, bubbleText, panel, frame, label = "";

  function emit(name, data) {
    (handlers[name] || []).slice().forEach(function (fn) {
      try { fn(data); } catch (e) { console.error(e); }
    });
  }
  function send(type, data) {
    var m = Object.assign({sb: 1, type: type}, data || {});
    if (!helloed) { toFrame.push(m); return; }
    frame.contentWindow.postMessage(m, ORIGIN);
  }

  api.open = function () {
    if (!built) { wantOpen = !dead; return; }
    if (isOpen) return;
    isOpen = true;
    panel.hidden = false;
    hideBubble();
    sync();
    send("open");
    emit("open");
    setTimeout(function () { frame.focus(); }, 0);
  };
  api.close = function () {
    if (!built) { wantOpen = false; return; }
    if (!isOpen) return;
    isOpen = false;
    panel.hidden = true;
    sync();
    send("close");
    emit("close");
    btn.focus();
  };
  api.toggle = function () { if (isOpen || (!built && wantOpen)) api.close(); else api.open(); };
  api.identify = function (data) { if (!dead) send("identify", {data: Object.assign({}, data || {})}); };
  // The website's logout: forget the visitor (the token here and in the frame), start anew, anonymous.
  api.reset = function () {
    try {
      for (var k = localStorage.length - 1; k >= 0; k--) {
        var key = localStorage.key(k);
        if (key && key.indexOf(PFX + "sb:" + INBOX + ":") === 0) localStorage.removeItem(key);
      }
    } catch (e) { /* no storage */ }
    if (built) { hideBubble(); host.setAttribute("data-unread", "0"); sync(); }
    if (!dead) send("reset");
  };
  api.setLocale = function (l) {
    lang = pick([l]) || lang;
    if (built) sync();
    if (!dead) send("locale", {lang: String(l || "")});
  };
  api.on = function (name, fn) {
    if (typeof fn === "function") (handlers[name] = handlers[name] || []).push(fn);
    return api;
  };
  function call(c) {
    c = Array.prototype.slice.call(c || []);
    var fn = api[c[0]];
    if (typeof fn === "function" && c[0] !== "q") fn.apply(api, c.slice(1));
  }
  api._sb = 1;
  api.q = {push: call};
  W.Switchboard = api;
  // "on" first, so handlers registered in the queue see the events the other queued calls cause
  early.filter(function (c) { return c && c[0] === "on"; }).forEach(call);
  early.filter(function (c) { return c && c[0] !== "on"; }).forEach(call);

  /* ---------- page tracking (URL, title, time on page) for the agent and proactive rules ---------- */
  var pageAt = Date.now(), lastUrl = location.href;
  function page() {
    return {url: location.href, title: D.title, referrer: D.referrer, elapsed: (Date.now() - pageAt) / 1000};
  }
  function nav() {
    if (location.href === lastUrl) return;
    lastUrl = location.href;
    pageAt = Date.now();
    // SPAs usually set the title just after the route change
    setTimeout(function () { send("page", {page: page()}); }, 150);
  }
  ["pushState", "replaceState"].forEach(function (m) {
    var orig = history[m];
    if (typeof orig !== "function") return;
    history[m] = function () {
      var r = orig.apply(this, arguments);
      nav();
      return r;
    };
  });
  W.addEventListener("popstate", nav);
  W.addEventListener("hashchange", nav);

  function stored() {
    var out = {};
    try {
      for (var k = 0; k < localStorage.length; k++) {
        var key = localStorage.key(k);
        if (key && key.indexOf(PFX + "sb:") === 0) out[key.slice(PFX.length)] = localStorage.getItem(key);
      }
    } catch (e) { /* no storage */ }
    return out;
  }

  /* ---------- the launcher and the panel ---------- */
  var CSS = ":host{all:initial}" +
    ".w{all:initial;font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2328}" +
    ".l{all:initial;box-sizing:border-box;position:relative;display:flex;align-items:center;justify-content:center;width:56px;height:56px;border-radius:50%;background:var(--c);color:var(--t);cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);transition:transform .15s}" +
    ".l:hover{transform:scale(1.06)}.l:focus-visible{outline:3px solid var(--c);outline-offset:3px}" +
    ".l svg{width:28px;height:28px;fill:currentColor}.l .x{display:none}:host([data-open='1']) .l .c{display:none}:host([data-open='1']) .l .x{display:block}" +
    ".b{all:initial;position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 5px;box-sizing:border-box;border-radius:10px;background:#d92d20;color:#fff;font:600 12px/20px system-ui,sans-serif;text-align:center;box-shadow:0 0 0 2px #fff}" +
    ".p{position:fixed;bottom:88px;R:20px;width:380px;height:min(640px,calc(100vh - 108px));border-radius:14px;overflow:hidden;box-shadow:0 10px 40px rgba(0,0,0,.28);background:#fff}" +
    ".p iframe{display:block;width:100%;height:100%;border:0}" +
    ".u{position:fixed;bottom:88px;R:20px;max-width:280px;padding:12px 32px 12px 14px;border-radius:14px;background:#fff;box-shadow:0 6px 24px rgba(0,0,0,.22);cursor:pointer;white-space:pre-wrap;overflow-wrap:anywhere}" +
    ".u button{all:initial;position:absolute;top:4px;right:6px;font:18px/1 system-ui,sans-serif;color:#6b7280;cursor:pointer;padding:4px}" +
    "[hidden]{display:none!important}" +
    "@media (max-width:480px){.p{inset:0;width:100%;height:100%;border-radius:0}:host([data-open='1']) .l{display:none}}";

  function svg(cls, d) {
    var s = D.createElementNS("http://www.w3.org/2000/svg", "svg");
    s.setAttribute("viewBox", "0 0 24 24");
    s.setAttribute("aria-hidden", "true");
    s.setAttribute("class", cls);
    var p = D.createElementNS("http://www.w3.org/2000/svg", "path");
    p.setAttribute("d", d);
    s.appendChild(p);
    return s;
  }
  function el(tag, cls) {
    var e = D.createElement(tag);
    if (cls) e.className = cls;
    return e;
  }
  function textOn(hex) {
    var x = hex.slice(1);
    if (x.length === 3) x = x.replace(/./g, "$&$&");
    var r = parseInt(x.slice(0, 2), 16), g = parseInt(x.slice(2, 4), 16), b = parseInt(x.slice(4, 6), 16);
    return 0.299 * r + 0.587 * g + 0.114 * b > 160 ? "#111" : "#fff";
  }
  function tl(k, n) { return (L[lang][k] || L.en[k]).replace("{n}", n); }

  function sync() {
    var n = +host.getAttribute("data-unread") || 0;
    host.setAttribute("data-open", isOpen ? "1" : "0");
    btn.setAttribute("aria-expanded", isOpen ? "true" : "false");
    var base = isOpen ? tl("close") : label || tl("open");
    btn.setAttribute("aria-label", n && !isOpen ? base + " (" + tl("unread", n) + ")" : base);
    frame.title = tl("frame");
    bubble.lastChild.setAttribute("aria-label", tl("dismiss"));
    badge.hidden = !n;
    badge.textContent = n > 99 ? "99+" : String(n);
  }
  function hideBubble() {
    bubble.hidden = true;
    host.removeAttribute("data-proactive");
  }

  function build(c) {
    cfg = c || {};
    var color = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(cfg.color || "") ? cfg.color : "#2563eb";
    var side = cfg.position === "left" ? "left" : "right";
    label = typeof cfg.launcher_label === "string" ? cfg.launcher_label : "";
    var src;
    try { src = new URL(cfg.frame_url || BASE + "frame", ORIGIN); } catch (e) { src = new URL(BASE + "frame"); }
    if (src.origin !== ORIGIN) src = new URL(BASE + "frame");
    src.searchParams.set("site", location.origin);
    src.searchParams.set("lang", D.documentElement.lang || "");

    host = D.createElement("switchboard-widget");
    host.id = "switchboard-widget";
    var st = {position: "fixed", "z-index": "2147483000", bottom: "20px", width: "56px", height: "56px",
      display: "block", margin: "0", padding: "0", border: "0", transform: "none", filter: "none",
      opacity: "1", visibility: "visible", "pointer-events": "auto", "--c": color, "--t": textOn(color)};
    st[side] = "20px";
    st[side === "left" ? "right" : "left"] = "auto";
    Object.keys(st).forEach(function (k) { host.style.setProperty(k, st[k], "important"); });
    host.setAttribute("data-unread", "0");
    host.setAttribute("data-open", "0");
    var root = host.attachShadow({mode: "closed"});
    var css = CSS.replace(/R:/g, side + ":");
    try {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(css);
      root.adoptedStyleSheets = [sheet]; // not blocked by the host page's style-src
    } catch (e) {
      var s = el("style");
      s.textContent = css;
      root.appendChild(s);
    }
    var w = el("div", "w");
    btn = el("button", "l");
    btn.type = "button";
    btn.setAttribute("aria-haspopup", "dialog");
    btn.setAttribute("aria-controls", "p");
    btn.appendChild(svg("c", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"));
    btn.appendChild(svg("x", "M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12l5.6 5.6-1.4 1.4-5.6-5.6L6.4 19 5 17.6 10.6 12 5 6.4z"));
    badge = el("span", "b");
    badge.setAttribute("aria-hidden", "true");
    btn.appendChild(badge);
    btn.addEventListener("click", function () { api.toggle(); });

    bubble = el("div", "u");
    bubble.hidden = true;
    bubble.setAttribute("role", "status");
    bubbleText = el("span");
    bubble.appendChild(bubbleText);
    var x = el("button");
    x.type = "button";
    x.textContent = "\u00d7";
    x.addEventListener("click", function (e) { e.stopPropagation(); hideBubble(); });
    bubble.appendChild(x);
    bubble.addEventListener("click", function () { api.open(); });

    panel = el("div", "p");
    panel.id = "p";
    panel.hidden = true;
    frame = el("iframe");
    frame.setAttribute("allow", "autoplay");
    frame.setAttribute("referrerpolicy", "origin");
    frame.src = src.href;
    panel.appendChild(frame);
    w.append(bubble, panel, btn);
    root.appendChild(w);
    (D.body || D.documentElement).appendChild(host);
    built = true;
    sync();
    if (wantOpen) api.open();
  }

  W.addEventListener("message", function (ev) {
    if (!built || ev.origin !== ORIGIN || ev.source !== frame.contentWindow) return;
    var d = ev.data;
    if (!d || d.sb !== 1) return;
    var t = d.type;
    if (t === "hello") {
      helloed = true;
      frame.contentWindow.postMessage({sb: 1, type: "init", page: page(), open: isOpen, stored: stored()}, ORIGIN);
      toFrame.splice(0).forEach(function (m) { frame.contentWindow.postMessage(m, ORIGIN); });
    } else if (t === "store" && typeof d.key === "string" && d.key.indexOf("sb:") === 0 && d.key.length < 200) {
      // only when the browser denies the frame its own storage (third-party storage blocked)
      try {
        if (d.value == null) localStorage.removeItem(PFX + d.key);
        else localStorage.setItem(PFX + d.key, String(d.value).slice(0, 100000));
      } catch (e) { /* no storage here either: the visitor is anonymous per page view */ }
    } else if (t === "ready") {
      host.setAttribute("data-ready", "1");
    } else if (t === "unread") {
      host.setAttribute("data-unread", String(Math.max(0, +d.count || 0)));
      sync();
    } else if (t === "close") api.close();
    else if (t === "open") api.open();
    else if (t === "transport") host.setAttribute("data-transport", String(d.value));
    else if (t === "proactive" && !isOpen) {
      bubbleText.textContent = String(d.text || "");
      bubble.hidden = false;
      host.setAttribute("data-proactive", String(d.key || ""));
      emit("proactive", {key: d.key});
    } else if (t === "emit" && typeof d.name === "string") emit(d.name, d.data);
  });

  fetch(BASE + "config", {mode: "cors", credentials: "omit"}).then(function (r) {
    if (!r.ok) throw new Error("HTTP " + r.status);
    return r.json();
  }).then(function (c) {
    if (D.body) build(c);
    else D.addEventListener("DOMContentLoaded", function () { build(c); });
  }, function (e) {
    dead = true;
    console.warn("Switchboard: the chat is not available on this site (" + e.message + ")");
  });
})();
