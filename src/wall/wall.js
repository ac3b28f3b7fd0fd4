// The wallboard: one EventSource on /api/v1/stream (same query as the
// page: ?queues=a,b keeps those queues in that order), one JSON document a
// second, drawn as cards. No library, no build step, nothing from elsewhere.
"use strict";
(function () {
  var params = new URLSearchParams(location.search);
  var theme = params.get("theme");
  if (theme === "dark" || theme === "light") {
    document.documentElement.dataset.theme = theme;
  }
  var query = params.get("queues") ? "?queues=" + encodeURIComponent(params.get("queues")) : "";
  var STALE_MS = 3000;
  var lastUpdate = 0;
  var source = null;

  var BADGE = { ok: "\u2714 OK", warn: "\u25B2 NEAR", over: "\u2716 OVER", none: "\u2013 no calls" };

  function pct(v) {
    return v === null || v === undefined ? "\u2013" : Math.round(v * 100) + "%";
  }
  function secs(v) {
    return v === null || v === undefined ? "\u2013" : (Math.round(v * 10) / 10) + " s";
  }
  function hhmmss(ms) {
    var d = new Date(ms);
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds());
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  // One figure: label, big value (data-figure / data-value for tools and
  // tests), and a status badge in words and a shape, not colour alone.
  function figure(name, label, text, value, level, big) {
    var box = el("div", "fig" + (big ? " big" : "") + (level ? " lvl-" + level : ""));
    box.appendChild(el("div", "label", label));
    var v = el("div", "value", text);
    v.dataset.figure = name;
    v.dataset.value = value === null || value === undefined ? "" : String(value);
    box.appendChild(v);
    if (level) {
      var b = el("div", "badge", BADGE[level] || level);
      b.dataset.status = name;
      box.appendChild(b);
    }
    return box;
  }
  // The last hour's service level per minute as bars; minutes without
  // calls are a dot; the dashed line is the 80% target.
  function chart(points) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 600 100");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "chart");
    svg.setAttribute("role", "img");
    var said = points.filter(function (p) { return p.service_level !== null; }).length;
    svg.setAttribute("aria-label", "service level per minute, last hour (" + said + " minutes with calls)");
    points.forEach(function (p, i) {
      var r = document.createElementNS(ns, "rect");
      var x = i * 10 + 1;
      if (p.service_level === null) {
        r.setAttribute("x", x + 3); r.setAttribute("y", 96); r.setAttribute("width", 3); r.setAttribute("height", 3);
        r.setAttribute("class", "bar none");
      } else {
        var h = Math.max(2, p.service_level * 96);
        r.setAttribute("x", x); r.setAttribute("y", 99 - h); r.setAttribute("width", 8); r.setAttribute("height", h);
        r.setAttribute("class", "bar " + (p.service_level < 0.8 ? "over" : p.service_level < 0.85 ? "warn" : "ok"));
      }
      svg.appendChild(r);
    });
    var line = document.createElementNS(ns, "line");
    line.setAttribute("x1", 0); line.setAttribute("x2", 600);
    line.setAttribute("y1", 99 - 0.8 * 96); line.setAttribute("y2", 99 - 0.8 * 96);
    line.setAttribute("class", "target");
    svg.appendChild(line);
    return svg;
  }
  // The limits a card's labels name: the queue's own; for the total, the
  // queues' when they all have the same, else none (the labels say
  // "the limit").
  function limitsOf(q, doc) {
    if (q.limits) return q.limits;
    var first = doc.queues.length ? doc.queues[0].limits : null;
    var same = first && doc.queues.every(function (o) {
      return o.limits && o.limits.rings === first.rings &&
        o.limits.answer_seconds === first.answer_seconds && o.limits.hold_seconds === first.hold_seconds;
    });
    return same ? first : null;
  }
  function card(q, title, doc) {
    var c = el("article", "card");
    var lim = limitsOf(q, doc);
    var pastRings = lim ? "past " + lim.rings + (lim.rings === 1 ? " ring" : " rings") : "past ring limit";
    var pastHold = lim ? "hold past " + lim.hold_seconds + " s" : "hold past limit";
    c.dataset.queue = q.queue === null ? "*" : q.queue;
    c.appendChild(el("h2", "", title));
    var s = q.status, t = q.today, r = q.last_15m, n = q.now;
    var grid = el("div", "grid");
    grid.appendChild(figure("service_level_today", "service level today", pct(t.service_level), t.service_level, s.service_level_today, true));
    grid.appendChild(figure("service_level_last_15m", "last 15 min", pct(r.service_level), r.service_level, s.service_level_last_15m, true));
    grid.appendChild(figure("waiting", "waiting", String(n.waiting), n.waiting));
    grid.appendChild(figure("waiting_over_limit", pastRings, String(n.waiting_over_limit), n.waiting_over_limit, s.waiting_over_limit));
    grid.appendChild(figure("oldest_wait", "oldest wait", secs(n.oldest_wait_seconds), n.oldest_wait_seconds, s.oldest_wait));
    grid.appendChild(figure("on_hold", "on hold", String(n.on_hold), n.on_hold));
    grid.appendChild(figure("on_hold_over_limit", pastHold, String(n.on_hold_over_limit), n.on_hold_over_limit, s.on_hold_over_limit));
    grid.appendChild(figure("longest_hold", "longest hold", secs(n.longest_hold_seconds), n.longest_hold_seconds, s.longest_hold));
    grid.appendChild(figure("abandon_rate_today", "abandoned today", pct(t.abandon_rate), t.abandon_rate));
    grid.appendChild(figure("abandon_rate_last_15m", "abandoned 15 min", pct(r.abandon_rate), r.abandon_rate));
    grid.appendChild(figure("callbacks_pending", "callbacks pending", String(n.callbacks_pending), n.callbacks_pending));
    grid.appendChild(figure("callbacks_overdue", "callbacks overdue", String(n.callbacks_overdue), n.callbacks_overdue, s.callbacks_overdue));
    grid.appendChild(figure("callback_compliance_today", "callbacks kept today", pct(t.callback_compliance), t.callback_compliance, s.callback_compliance_today));
    grid.appendChild(figure("answered_today", "answered today", String(t.answered), t.answered));
    c.appendChild(grid);
    var ch = el("div", "chartbox");
    ch.appendChild(el("div", "label", "service level per minute, last hour"));
    ch.appendChild(chart(q.chart));
    c.appendChild(ch);
    return c;
  }
  function draw(doc) {
    var cards = document.getElementById("cards");
    var frag = document.createDocumentFragment();
    frag.appendChild(card(doc.total, doc.queues.length === 1 ? "total" : "all queues", doc));
    doc.queues.forEach(function (q) { frag.appendChild(card(q, q.queue, doc)); });
    cards.replaceChildren(frag);
    document.getElementById("today-since").textContent = doc.today_since + " (" + doc.timezone + ")";
    document.getElementById("as-of").textContent = doc.generated_at;
    document.body.dataset.clockMs = String(doc.clock_ms);
  }
  function checkStale() {
    var s = document.getElementById("stale");
    var late = lastUpdate === 0 || Date.now() - lastUpdate > STALE_MS;
    if (late) {
      s.textContent = lastUpdate === 0 ? "STALE: waiting for data" : "STALE since " + hhmmss(lastUpdate);
      s.hidden = false;
      document.body.classList.add("is-stale");
    } else {
      s.hidden = true;
      document.body.classList.remove("is-stale");
    }
  }
  function connect() {
    if (source) source.close();
    source = new EventSource("/api/v1/stream" + query);
    source.onmessage = function (ev) {
      try {
        draw(JSON.parse(ev.data));
        lastUpdate = Date.now();
        checkStale();
      } catch (e) { /* a bad message leaves the last good figures */ }
    };
    source.onerror = function () {
      // CONNECTING: the browser retries by itself. CLOSED (an answer that
      // is not a stream, e.g. 503 while the daemon stops): start again.
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(connect, 2000);
      }
      checkStale();
    };
  }
  // ?once=1: one read of /api/v1/queues and no stream (a page that
  // finishes loading: for a screenshot or a printout).
  if (params.get("once") === "1") {
    fetch("/api/v1/queues" + query, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(draw);
    return;
  }
  setInterval(checkStale, 500);
  checkStale();
  connect();
})();
