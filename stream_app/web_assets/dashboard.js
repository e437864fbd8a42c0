/* The engagement dashboard (docs/DASHBOARD.md): one script for the worker's live page and the
 * self-contained report of `engagement report`. Live, it polls the worker's JSON API (kpis,
 * segments, overview) with the token the page asked for; in a report, the same data is embedded
 * in the page (a JSON script element, id report-data). Written for this project: no
 * library, no network beyond the worker it came from. Every figure is also in a data-value
 * attribute (the JSON number as the API sent it), which the browser tests compare with the API. */
(function () {
  "use strict";

  var TIERS = ["bronze", "silver", "gold", "platinum"];
  var ALERT_TYPES = ["churn_risk", "abandoned_cart", "negative_feedback"];
  var REFRESH_MS = 2000;
  var TOKEN_KEY = "engagement-api-token";
  var SVG = "http://www.w3.org/2000/svg";

  var reportNode = document.getElementById("report-data");
  var REPORT = reportNode ? JSON.parse(reportNode.textContent) : null;
  var state = { kpis: null, segments: null, overview: null, timer: null, stopped: false };

  function $(id) { return document.getElementById(id); }

  // -- formatting --------------------------------------------------------------------------------
  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function fmtCount(v) { return isNum(v) ? Math.round(v).toLocaleString("en-US") : "n/a"; }
  function fmtMoney(v) {
    return isNum(v) ? v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) : "n/a";
  }
  function fmtRatio(v) { return isNum(v) ? v.toFixed(2) : "n/a"; }
  function fmtPct(v) { return isNum(v) ? (v * 100).toFixed(1) + " %" : "n/a"; }
  function fmtSigned(v) { return isNum(v) ? (v > 0 ? "+" : "") + v.toFixed(1) : "n/a"; }
  var FORMAT = { count: fmtCount, money: fmtMoney, ratio: fmtRatio, pct: fmtPct, signed: fmtSigned };
  function fmtAt(at) {  // RFC 3339 UTC to the minute: 2024-07-08T01:51:10.696760Z -> 2024-07-08 01:51 UTC
    return at ? at.replace(/^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)(:\d\d(\.\d+)?)?Z$/, "$1 $2 UTC") : "n/a";
  }
  function label(name) { return name.replace(/_/g, " "); }

  // -- DOM helpers (textContent only: ids and names never become markup) ---------------------------
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") node.textContent = attrs[k];
        else if (k === "cls") node.className = attrs[k];
        else node.setAttribute(k, attrs[k]);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }
  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }
  function fill(id, node) {
    var host = $(id);
    while (host.firstChild) host.removeChild(host.firstChild);
    if (node) host.appendChild(node);
  }
  function number(kind, value, attrs) {
    var a = attrs || {};
    a.cls = "num" + (a.cls ? " " + a.cls : "");
    a["data-value"] = value === null || value === undefined ? "null" : String(value);
    a.text = FORMAT[kind](value);
    return el("span", a);
  }

  // -- KPIs ---------------------------------------------------------------------------------------
  var KPIS_365 = [["orders", "Orders", "count"], ["revenue", "Revenue", "money"],
    ["average_order_value", "Average order value", "money"], ["customers", "Customers", "count"],
    ["repeat_purchase_rate", "Repeat purchase rate", "pct"], ["purchase_frequency", "Purchase frequency", "ratio"],
    ["guest_checkout_rate", "Guest checkout rate", "pct"], ["nps", "NPS", "signed"], ["csat", "CSAT", "pct"],
    ["average_rating", "Average rating", "ratio"]];
  var KPIS_30 = [["active_customers", "Active customers", "count"],
    ["omnichannel_customers", "Omnichannel customers", "count"], ["omnichannel_rate", "Omnichannel rate", "pct"],
    ["email_open_rate", "Email open rate", "pct"], ["email_click_rate", "Email click rate", "pct"],
    ["push_open_rate", "Push open rate", "pct"], ["sms_click_rate", "SMS click rate", "pct"]];

  function kpiCards(doc, list, windowDays) {
    var box = document.createDocumentFragment();
    list.forEach(function (k) {
      box.appendChild(el("div", { cls: "kpi", "data-kpi": k[0], "data-window": String(windowDays) },
        el("span", { cls: "kpi-label", text: k[1] }),
        number(k[2], doc ? doc[k[0]] : null, { cls: "kpi-value" })));
    });
    return box;
  }

  function renderKpis(k) {
    var e30 = (k && k.engagement_30d) || {};
    fill("kpis-365", kpiCards(k, KPIS_365, (k && k.window_days) || 365));
    fill("kpis-30", kpiCards(e30, KPIS_30, e30.window_days || 30));
    $("kpi-as-of").textContent = k && k.as_of ? "as of " + fmtAt(k.as_of) : "no event yet";
    $("kpi-panel").setAttribute("data-as-of", (k && k.as_of) || "");
  }

  // -- tiers, segments, movements ------------------------------------------------------------------
  function bar(share, cls) {
    var b = el("span", { cls: "bar" }, el("span", { cls: "bar-fill " + (cls || "") }));
    b.firstChild.style.width = Math.max(0, Math.min(100, share * 100)).toFixed(1) + "%";
    return b;
  }

  function renderTiers(ov) {
    var total = ov.customers || 0;
    var rows = el("div", { cls: "rows" });
    TIERS.slice().reverse().forEach(function (t) {
      var n = ov.tiers[t] || 0;
      rows.appendChild(el("div", { cls: "row", "data-tier": t },
        el("span", { cls: "row-name tier-" + t, text: t }), bar(total ? n / total : 0, "tier-" + t),
        number("count", n, { cls: "row-num" }), el("span", { cls: "row-share", text: total ? fmtPct(n / total) : "" })));
    });
    rows.appendChild(el("div", { cls: "row total" }, el("span", { cls: "row-name", text: "all customers" }),
      el("span"), number("count", total, { cls: "row-num", "data-total": "tiers" }), el("span")));
    fill("tiers", rows);
    var sc = ov.scope || {};
    var note = "";
    if (sc.partition_count) {
      note = sc.partitions.length === sc.partition_count ? "all " + sc.partition_count + " partitions"
        : "partitions " + sc.partitions.join(", ") + " of " + sc.partition_count;
      if (sc.missing_partitions && sc.missing_partitions.length) note += " (no answer for " + sc.missing_partitions.join(", ") + ")";
    }
    $("tiers-scope").textContent = note;
  }

  function segmentList() {
    // live: GET /segments (definition order, predicates, members); report: the KPI document's counts
    if (state.segments && state.segments.segments) return state.segments.segments;
    var counts = (state.kpis && state.kpis.segments) || {};
    return Object.keys(counts).map(function (n) { return { name: n, members: counts[n] }; });
  }

  function predicateText(when) {
    return (when || []).map(function (p) { return p[0] + " " + p[1] + (p[2] === null ? "" : " " + JSON.stringify(p[2])); }).join(" and ");
  }

  function renderSegments(ov) {
    var segs = segmentList();
    var mv = (ov && ov.movements && ov.movements.segments) || {};
    if (!segs.length) { fill("segments", el("p", { cls: "muted", text: "segments are off" })); return; }
    var max = Math.max.apply(null, segs.map(function (s) { return s.members; }).concat([1]));
    var rows = el("div", { cls: "rows" });
    segs.forEach(function (s) {
      var m = mv[s.name] || { entered: 0, left: 0 };
      var row = el("div", { cls: "row", "data-segment": s.name },
        el("span", { cls: "row-name", text: label(s.name) }), bar(s.members / max, "segment"),
        number("count", s.members, { cls: "row-num" }),
        el("span", { cls: "row-share" }, number("count", m.entered, { cls: "up" }), " ", number("count", m.left, { cls: "down" })));
      if (s.when) row.title = predicateText(s.when);
      rows.appendChild(row);
    });
    fill("segments", rows);
  }

  function renderMovements(ov) {
    var mv = ov.movements || {};
    var days = mv.days || 7;
    Array.prototype.forEach.call(document.querySelectorAll(".mv-days"), function (n) { n.textContent = String(days); });
    $("movements-range").textContent = mv.from ? mv.from + " – " + mv.to : "";
    var box = el("div");
    var segs = mv.segments || {};
    var top = Object.keys(segs).map(function (n) { return [n, segs[n]]; })
      .filter(function (x) { return x[1].entered + x[1].left > 0; })
      .sort(function (a, b) { return (b[1].entered + b[1].left) - (a[1].entered + a[1].left) || (a[0] < b[0] ? -1 : 1); })
      .slice(0, 5);
    var list = el("ul", { cls: "moves" });
    top.forEach(function (x) {
      var net = x[1].entered - x[1].left;
      list.appendChild(el("li", { "data-segment": x[0] }, el("span", { cls: "row-name", text: label(x[0]) }),
        number("count", x[1].entered, { cls: "up" }), number("count", x[1].left, { cls: "down" }),
        el("span", { cls: "net " + (net > 0 ? "pos" : net < 0 ? "neg" : ""), text: "net " + (net > 0 ? "+" : "") + net.toLocaleString("en-US") })));
    });
    if (!top.length) list.appendChild(el("li", { cls: "muted", text: "no segment entered or left" }));
    box.appendChild(list);
    var tc = mv.tier_changes || {};
    var al = mv.alerts || {};
    box.appendChild(el("p", { cls: "small" }, "tiers: ", number("count", tc.promoted, { cls: "up" }), " promoted, ",
      number("count", tc.demoted, { cls: "down" }), " demoted, ", number("count", tc["new"]), " new"));
    box.appendChild(el("p", { cls: "small" }, "alerts: ", number("count", al.churn_risk), " churn risk, ",
      number("count", al.abandoned_cart), " abandoned cart, ", number("count", al.negative_feedback), " negative feedback"));
    fill("movements", box);
  }

  // -- CLV ----------------------------------------------------------------------------------------
  function histogram(h, fmtEdge, cls, width) {
    var counts = h.counts.slice();
    var edges = h.edges;
    var first = 0, last = counts.length - 1;
    while (first < last && counts[first] === 0) first++;
    while (last > first && counts[last] === 0) last--;
    var W = Math.max(240, width || 480), H = 150, pad = 22, n = last - first + 1;
    var max = Math.max.apply(null, counts.concat([1]));
    var g = svg("svg", { viewBox: "0 0 " + W + " " + H, "class": "hist", role: "img" });
    var bw = (W - 10) / n;
    for (var i = first; i <= last; i++) {
      var x = 5 + (i - first) * bw;
      var bh = (H - 2 * pad) * counts[i] / max;
      var lo = edges[i], hi = i + 1 < edges.length ? edges[i + 1] : null;
      var r = svg("rect", { x: x + 1, y: H - pad - bh, width: Math.max(1, bw - 2), height: bh, "class": cls,
        "data-count": counts[i] });
      var t = svg("title", {}); t.textContent = fmtEdge(lo) + (hi === null ? " and more" : " – " + fmtEdge(hi)) + ": " + counts[i];
      r.appendChild(t);
      g.appendChild(r);
      if (counts[i]) {
        var c = svg("text", { x: x + bw / 2, y: H - pad - bh - 3, "class": "hist-count" }); c.textContent = String(counts[i]);
        g.appendChild(c);
      }
      var l = svg("text", { x: x + bw / 2, y: H - 6, "class": "hist-label" }); l.textContent = fmtEdge(lo);
      g.appendChild(l);
    }
    return g;
  }
  function shortMoney(v) {
    if (v >= 1000) return (v / 1000).toLocaleString("en-US", { maximumFractionDigits: 0 }) + "k";
    return String(v);
  }

  function renderClv(ov) {
    var c = ov.clv;
    if (!c) {
      fill("clv", el("p", { cls: "muted", "data-clv": "none", text: "No model loaded: P(alive) and predicted lifetime value show here once the workers read a fitted model (engagement fit, contract §11)." }));
      return;
    }
    var box = el("div", { "data-clv": "model" });
    var half = Math.floor(($("clv").clientWidth || 960) / 2) - 10;
    var sample = c.sampled_from > c.customers ? " (of " + c.sampled_from.toLocaleString("en-US") + " read)" : "";
    box.appendChild(el("div", { cls: "kpis" },
      el("div", { cls: "kpi" }, el("span", { cls: "kpi-label", text: "Customers with a prediction" + sample }), number("count", c.customers, { cls: "kpi-value" })),
      el("div", { cls: "kpi" }, el("span", { cls: "kpi-label", text: "Mean P(alive)" }), number("pct", c.customers ? c.sum_p_alive / c.customers : null, { cls: "kpi-value" })),
      el("div", { cls: "kpi" }, el("span", { cls: "kpi-label", text: "Predicted CLV, next " + c.horizon_days + " days" }), number("money", c.total_predicted_clv, { cls: "kpi-value" })),
      el("div", { cls: "kpi" }, el("span", { cls: "kpi-label", text: "Model" }), el("span", { cls: "kpi-value small", text: String(c.model_version) }))));
    box.appendChild(el("div", { cls: "charts two" },
      el("figure", {}, el("figcaption", { text: "P(alive)" }), histogram(c.p_alive, function (v) { return v.toFixed(1); }, "bar-alive", half)),
      el("figure", {}, el("figcaption", { text: "Predicted CLV per customer" }), histogram(c.predicted_clv, shortMoney, "bar-clv", half))));
    fill("clv", box);
  }

  // -- alerts -------------------------------------------------------------------------------------
  function alertDetails(a) {
    var d = a.details || {};
    if (a.type === "churn_risk") return (d.days_inactive !== undefined ? d.days_inactive + " days inactive, " : "") + (d.tier || "");
    if (a.type === "abandoned_cart") return "cart " + (d.cart_id || "?") + ", checkout " + fmtAt(d.checkout_at);
    if (a.type === "negative_feedback") return d.rating !== undefined && d.rating !== null ? "rating " + d.rating : "NPS " + d.nps;
    return "";
  }

  function customerLink(id) {
    var a = el("a", { href: "#", cls: "customer-link", text: id });
    a.addEventListener("click", function (ev) { ev.preventDefault(); openCustomer(id); });
    return a;
  }

  function renderAlerts(ov) {
    var alerts = ov.latest_alerts || [];
    if (!alerts.length) { fill("alerts", el("p", { cls: "muted", text: "no alert yet" })); return; }
    var body = el("tbody");
    alerts.forEach(function (a) {
      body.appendChild(el("tr", { "data-alert": a.alert_id }, el("td", { text: fmtAt(a.at) }),
        el("td", {}, el("span", { cls: "pill " + a.type, text: label(a.type) })),
        el("td", {}, el("span", { cls: "sev " + a.severity, text: a.severity })),
        el("td", {}, customerLink(a.customer_id)), el("td", { cls: "muted", text: alertDetails(a) })));
    });
    fill("alerts", el("table", { cls: "table" }, el("thead", {}, el("tr", {}, el("th", { text: "at" }),
      el("th", { text: "type" }), el("th", { text: "severity" }), el("th", { text: "customer" }), el("th", { text: "details" }))), body));
  }

  // -- trends -------------------------------------------------------------------------------------
  function stacked(host, days, series, down) {
    // series: [[name, values, cls]]; down: [[name, values, cls]] drawn below the axis; as wide as
    // its host, so the text is not stretched
    var W = Math.max(300, $(host).clientWidth || 900), H = 160, padL = 40, padB = 18, n = Math.max(days.length, 1);
    down = down || [];
    var upMax = 1, downMax = 0;
    for (var i = 0; i < days.length; i++) {
      var u = 0, d = 0;
      series.forEach(function (s) { u += s[1][i] || 0; });
      down.forEach(function (s) { d += s[1][i] || 0; });
      upMax = Math.max(upMax, u); downMax = Math.max(downMax, d);
    }
    var plot = H - padB - 6;
    var zero = down.length ? 6 + plot * upMax / (upMax + Math.max(downMax, 1)) : H - padB;
    var scale = (down.length ? plot / (upMax + Math.max(downMax, 1)) : (plot / upMax));
    var g = svg("svg", { viewBox: "0 0 " + W + " " + H, "class": "trend", role: "img" });
    var bw = Math.min((W - padL - 4) / n, 48);  // a few days do not make slabs
    for (var j = 0; j < days.length; j++) {
      var x = padL + j * bw, y = zero;
      series.forEach(function (s) {
        var v = s[1][j] || 0; if (!v) return;
        var h = v * scale; y -= h;
        var r = svg("rect", { x: x, y: y, width: Math.max(0.6, bw * 0.85), height: h, "class": s[2] });
        var t = svg("title", {}); t.textContent = days[j] + " " + s[0] + ": " + v; r.appendChild(t); g.appendChild(r);
      });
      var yd = zero;
      down.forEach(function (s) {
        var v = s[1][j] || 0; if (!v) return;
        var h = v * scale;
        var r = svg("rect", { x: x, y: yd, width: Math.max(0.6, bw * 0.85), height: h, "class": s[2] });
        var t = svg("title", {}); t.textContent = days[j] + " " + s[0] + ": " + v; r.appendChild(t); g.appendChild(r);
        yd += h;
      });
    }
    g.appendChild(svg("line", { x1: padL, x2: W - 2, y1: zero, y2: zero, "class": "axis" }));
    var top = svg("text", { x: padL - 4, y: 14, "class": "axis-label end" }); top.textContent = upMax.toLocaleString("en-US");
    g.appendChild(top);
    if (down.length && downMax) {
      var bot = svg("text", { x: padL - 4, y: H - padB, "class": "axis-label end" }); bot.textContent = "-" + downMax.toLocaleString("en-US");
      g.appendChild(bot);
    }
    if (days.length) {
      var ticks = days.length < 3 ? (days.length === 1 ? [[0, "start"]] : [[0, "start"], [1, "start"]])
        : [[0, "start"], [Math.floor((days.length - 1) / 2), "middle"], [days.length - 1, "end"]];
      ticks.forEach(function (tk) {
        var k = tk[0], anchor = days.length < 3 ? "middle" : tk[1];
        var x = anchor === "start" ? padL + k * bw : anchor === "end" ? padL + (k + 1) * bw : padL + (k + 0.5) * bw;
        var t = svg("text", { x: x, y: H - 4, "class": "axis-label " + anchor });
        t.textContent = days[k]; g.appendChild(t);
      });
    }
    return g;
  }

  function legend(items) {
    var box = el("div", { cls: "legend" });
    items.forEach(function (i) { box.appendChild(el("span", {}, el("i", { cls: "swatch " + i[1] }), i[0])); });
    return box;
  }

  function renderTrends(ov) {
    var tr = ov.trends || { days: [] };
    var days = tr.days || [];
    $("trends-note").textContent = days.length ? days[0] + " – " + days[days.length - 1] +
      (REPORT ? "" : " (what this worker published since it started, last 60 days)") : "nothing yet";
    var tc = tr.tier_changes || {};
    var f = document.createDocumentFragment();
    f.appendChild(stacked("chart-tiers", days, [["promoted", tc.promoted || [], "c-up"], ["new", tc["new"] || [], "c-new"]],
      [["demoted", tc.demoted || [], "c-down"]]));
    f.appendChild(legend([["promoted", "c-up"], ["new customer", "c-new"], ["demoted (below)", "c-down"]]));
    fill("chart-tiers", f);
    var al = tr.alerts || {};
    var f2 = document.createDocumentFragment();
    f2.appendChild(stacked("chart-alerts", days, ALERT_TYPES.map(function (t) { return [label(t), al[t] || [], "c-" + t]; })));
    f2.appendChild(legend(ALERT_TYPES.map(function (t) { return [label(t), "c-" + t]; })));
    fill("chart-alerts", f2);
    var select = $("segment-select");
    var names = Object.keys(tr.segments || {});
    var have = Array.prototype.map.call(select.options, function (o) { return o.value; }).slice(1);
    if (have.join(",") !== names.join(",")) {
      var chosen = select.value;
      while (select.options.length > 1) select.remove(1);
      names.forEach(function (n) { select.appendChild(el("option", { value: n, text: label(n) })); });
      select.value = names.indexOf(chosen) >= 0 ? chosen : "";
    }
    var pick = select.value ? [select.value] : names;
    var entered = days.map(function (_, i) { return pick.reduce(function (s, n) { return s + tr.segments[n].entered[i]; }, 0); });
    var left = days.map(function (_, i) { return pick.reduce(function (s, n) { return s + tr.segments[n].left[i]; }, 0); });
    var f3 = document.createDocumentFragment();
    f3.appendChild(stacked("chart-segments", days, [["entered", entered, "c-up"]], [["left", left, "c-down"]]));
    f3.appendChild(legend([["entered", "c-up"], ["left (below)", "c-down"]]));
    fill("chart-segments", f3);
  }

  // -- one customer -------------------------------------------------------------------------------
  function field(name, node) { return el("div", { cls: "field" }, el("span", { cls: "kpi-label", text: name }), node); }

  function renderCustomer(id, rec, history, error) {
    $("customer-panel").hidden = false;
    $("customer-id").textContent = id;
    if (error) { fill("customer-body", el("p", { cls: "error", "data-customer-error": "1", text: error })); return; }
    var box = el("div", { "data-customer": rec.customer_id });
    box.appendChild(el("div", { cls: "fields" },
      field("Score", number("ratio", rec.score, { "data-field": "score" })),
      field("Tier", el("span", { cls: "tier-badge tier-" + rec.tier, "data-field": "tier", text: rec.tier })),
      field("Tier since", el("span", { "data-field": "tier_since", text: fmtAt(rec.tier_since) })),
      field("Points", number("count", rec.points, { "data-field": "points" })),
      field("Orders (365 d / total)", el("span", {}, number("count", rec.orders_365d), " / ", number("count", rec.orders_total, { "data-field": "orders_total" }))),
      field("Revenue (365 d / total)", el("span", {}, number("money", rec.revenue_365d), " / ", number("money", rec.revenue_total, { "data-field": "revenue_total" }))),
      field("Last order", el("span", { text: fmtAt(rec.last_order_at) })),
      field("Last activity", el("span", { text: fmtAt(rec.last_activity_at) })),
      field("As of", el("span", { text: fmtAt(rec.as_of) }))));
    var segs = el("div", { cls: "chips", "data-field": "segments" });
    (rec.segments || []).forEach(function (s) { segs.appendChild(el("span", { cls: "chip", text: label(s) })); });
    if (!(rec.segments || []).length) segs.appendChild(el("span", { cls: "muted", text: "in no segment" }));
    box.appendChild(el("h3", { text: "Segments" })); box.appendChild(segs);
    box.appendChild(el("h3", { text: "Predicted lifetime value" }));
    var c = rec.clv;
    if (c) {
      box.appendChild(el("div", { cls: "fields", "data-field": "clv" },
        field("P(alive)", number("pct", c.p_alive)), field("Expected orders", number("ratio", c.expected_orders)),
        field("Expected order value", number("money", c.expected_order_value)),
        field("Predicted CLV (" + c.horizon_days + " days)", number("money", c.predicted_clv)),
        field("Model", el("span", { text: String(c.model_version) }))));
    } else {
      box.appendChild(el("p", { cls: "muted", "data-field": "clv", text: rec.clv === null ? "no prediction (no model loaded, or no order yet)" : "no model loaded" }));
    }
    box.appendChild(el("h3", { text: "Tier history" }));
    var rows = history && history.length ? history : [{ at: rec.tier_since, from_tier: null, to_tier: rec.tier, reason: "held since" }];
    var list = el("ol", { cls: "history", "data-field": "tier_history" });
    rows.forEach(function (h) {
      list.appendChild(el("li", {}, el("span", { cls: "muted", text: fmtAt(h.at) + " " }),
        h.from_tier ? el("span", { cls: "tier-" + h.from_tier, text: h.from_tier + " → " }) : null,
        el("span", { cls: "tier-" + h.to_tier, text: h.to_tier }), el("span", { cls: "muted", text: " (" + h.reason + ")" })));
    });
    box.appendChild(list);
    if (!REPORT) {
      box.appendChild(el("p", { cls: "small muted", text: "The record carries the tier held and since when; the whole history is on the tier-changes topic: engagement tail tier-changes --key " + rec.customer_id + " --from-beginning" }));
    }
    fill("customer-body", box);
  }

  function openCustomer(id) {
    id = (id || "").trim();
    if (!id) return;
    $("search-id").value = id;
    if (REPORT) {
      var rec = REPORT.customers[id];
      if (!rec) renderCustomer(id, null, null, REPORT.customers_note || "No customer with this id in the report.");
      else renderCustomer(id, rec, (REPORT.tier_history || {})[id] || [], null);
      $("customer-panel").scrollIntoView({ block: "start" });
      return;
    }
    api("customers/" + encodeURIComponent(id)).then(function (r) {
      if (r === null) return;
      if (r.status === 200) renderCustomer(id, r.body, null, null);
      else renderCustomer(id, null, null, r.status === 404 ? "No customer with this id." : (r.body && r.body.error) || ("HTTP " + r.status));
      $("customer-panel").scrollIntoView({ block: "start" });
    });
  }

  // -- the whole page -----------------------------------------------------------------------------
  function render() {
    var ov = state.overview;
    renderKpis(state.kpis);
    if (!ov) return;
    renderTiers(ov);
    renderSegments(ov);
    renderMovements(ov);
    renderClv(ov);
    renderAlerts(ov);
    renderTrends(ov);
    document.body.setAttribute("data-rendered", String((Number(document.body.getAttribute("data-rendered")) || 0) + 1));
  }

  // -- live: the API, the token -------------------------------------------------------------------
  function token() { try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; } }
  function setToken(t) { try { if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* private mode */ } }

  function takeTokenFromUrl() {
    // `#token=...`: a fragment is never sent to the server (no access log, no proxy, no Referer);
    // it is moved to this tab's sessionStorage and removed from the address bar at once.
    var m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!m) return;
    setToken(decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }

  function api(path) {
    var headers = { Accept: "application/json" };
    var t = token();
    if (t) headers.Authorization = "Bearer " + t;
    return fetch(path, { headers: headers, cache: "no-store", credentials: "omit" }).then(function (resp) {
      if (resp.status === 401) { askToken(!!t); return null; }
      return resp.json().then(function (body) { return { status: resp.status, body: body }; },
        function () { return { status: resp.status, body: null }; });
    });
  }

  function clearData() {
    state.kpis = state.segments = state.overview = null;
    ["kpis-365", "kpis-30", "tiers", "segments", "movements", "clv", "alerts", "chart-tiers", "chart-alerts",
      "chart-segments", "customer-body"].forEach(function (id) { fill(id, null); });
    $("customer-panel").hidden = true;
  }

  function askToken(refused) {
    state.stopped = true;
    if (state.timer) { clearTimeout(state.timer); state.timer = null; }
    setToken(null);
    clearData();
    $("content").hidden = true;
    $("token-error").hidden = !refused;
    $("token-prompt").hidden = false;
    $("status").textContent = "this worker's API needs a token";
    $("token-input").focus();
  }

  function poll() {
    state.timer = null;
    Promise.all([api("kpis"), api("segments"), api("overview")]).then(function (rs) {
      if (state.stopped || rs.indexOf(null) >= 0) return;
      var bad = rs.filter(function (r) { return r.status !== 200; })[0];
      if (bad) {
        $("status").textContent = bad.status === 503 ? "the worker is recovering its state …" : "error: " + ((bad.body && bad.body.error) || bad.status);
      } else {
        state.kpis = rs[0].body; state.segments = rs[1].body; state.overview = rs[2].body;
        render();
        $("status").textContent = "live · updated " + new Date().toLocaleTimeString("en-GB") + " · every " + REFRESH_MS / 1000 + " s";
      }
      state.timer = setTimeout(poll, REFRESH_MS);
    }, function () {
      if (state.stopped) return;
      $("status").textContent = "cannot reach the worker; retrying …";
      state.timer = setTimeout(poll, REFRESH_MS);
    });
  }

  function startLive() {
    $("mode").textContent = "live";
    takeTokenFromUrl();
    $("token-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var t = $("token-input").value.trim();
      if (!t) return;
      setToken(t);
      $("token-input").value = "";
      $("token-prompt").hidden = true;
      $("content").hidden = false;
      state.stopped = false;
      $("status").textContent = "loading …";
      poll();
    });
    $("footer").textContent = "Served by this worker; figures from GET /kpis, /segments and /overview, refreshed every " + REFRESH_MS / 1000 + " s.";
    poll();
  }

  function startReport() {
    $("mode").textContent = "report";
    state.kpis = REPORT.kpis;
    state.segments = null;
    state.overview = REPORT.overview;
    var c = REPORT.counts || {};
    $("status").textContent = "as of " + fmtAt(REPORT.as_of) + " · " + (REPORT.source || "");
    $("footer").textContent = "engagement report, generated " + fmtAt(REPORT.generated_at) + " from " + (REPORT.source || "?") +
      ": " + fmtCount(c.applied) + " events applied, " + fmtCount(c.duplicates) + " duplicates, " + fmtCount(c.rejected) +
      " rejected, " + fmtCount(c.erased) + " erased. " + (REPORT.customers_note || "");
    render();
  }

  $("search").addEventListener("submit", function (ev) { ev.preventDefault(); openCustomer($("search-id").value); });
  $("customer-close").addEventListener("click", function () { $("customer-panel").hidden = true; });
  $("segment-select").addEventListener("change", function () { if (state.overview) renderTrends(state.overview); });
  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () { if (state.overview) render(); }, 200);
  });
  if (REPORT) startReport(); else startLive();
})();
