// The feature browser's pages (sae_workbench/browser): plain DOM, no libraries.
// Data arrives as <script> files that call BROWSER.index(...) or BROWSER.shard(...).
"use strict";
(function () {
  const ORANGE = "__ORANGE__";
  const PAGE = 200;
  const SHARD_SIZE = __SHARD__;  // features per data file (site.SHARD)
  const B = {shards: {}, waiting: {}};
  window.BROWSER = B;

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  }
  const fmt = (x, d) => (x === null || x === undefined || Number.isNaN(x)) ? "–" : Number(x).toFixed(d);
  const pct = (x) => x >= 0.001 ? (100 * x).toFixed(2) + "%" : (100 * x).toExponential(1) + "%";

  // ---------------------------------------------------------------- index page
  B.index = function (d) {
    B.meta = d;
    const rows = d.rows;
    const tbody = document.querySelector("#features tbody");
    const search = document.getElementById("search");
    const count = document.getElementById("count");
    const more = document.getElementById("more");
    document.getElementById("summary").textContent =
      `${rows.length} of ${d.d_sae} features fire on the ${d.n_tokens} evaluation tokens` +
      ` · model ${d.model} · SAE ${d.sae_source}`;
    let key = "density", desc = true, shown = PAGE, hits = rows;
    for (const r of rows) r._search = (r.top_tokens.join(" ") + " " + r.text + " " + r.explanation).toLowerCase();

    function filter() {
      const q = search.value.trim().toLowerCase();
      if (!q) hits = rows;
      else if (/^\d+$/.test(q)) hits = rows.filter((r) => String(r.feature).startsWith(q));
      else hits = rows.filter((r) => r._search.includes(q));
      const sign = desc ? -1 : 1;
      hits = hits.slice().sort((a, b) => sign * (a[key] - b[key]) || a.feature - b.feature);
      shown = PAGE;
      draw();
    }
    function draw() {
      tbody.replaceChildren(...hits.slice(0, shown).map((r) => el("tr", {"data-feature": r.feature},
        el("td", {}, el("a", {href: `feature.html#${r.feature}`, text: String(r.feature)}),
          ...r.specialist_for.map((c) => el("span", {class: "badge", text: c}))),
        el("td", {class: "num", text: pct(r.density)}),
        el("td", {class: "num", text: fmt(r.max_act, 2)}),
        el("td", {class: "num", text: `${fmt(r.best_auroc, 2)} ${r.best_category}`}),
        el("td", {}, el("code", {text: r.top_tokens.map((t) => JSON.stringify(t)).join(" ")})),
        el("td", {text: r.explanation}))));
      count.textContent = `${hits.length} feature${hits.length === 1 ? "" : "s"}` + (hits.length > shown ? `, first ${shown} shown` : "");
      more.hidden = hits.length <= shown;
      for (const th of document.querySelectorAll("th.sortable"))
        th.className = "sortable" + (th.dataset.key === key ? (desc ? " sorted-desc" : " sorted-asc") : "");
    }
    for (const th of document.querySelectorAll("th.sortable")) {
      th.addEventListener("click", () => {
        desc = th.dataset.key === key ? !desc : th.dataset.key !== "feature";
        key = th.dataset.key;
        filter();
      });
    }
    search.addEventListener("input", filter);
    more.addEventListener("click", () => { shown += PAGE; draw(); });
    filter();
  };

  // ---------------------------------------------------------------- feature page
  B.texts = function (d) { B.textRows = d.texts; B.hasShard = new Set(d.shards); };

  B.shard = function (d) {
    B.shards[d.shard] = d.features;
    for (const cb of B.waiting[d.shard] || []) cb();
    delete B.waiting[d.shard];
  };

  function loadShard(k, cb) {
    if (B.shards[k]) return cb();
    if (B.hasShard && !B.hasShard.has(k)) { B.shards[k] = {}; return cb(); }
    if (B.waiting[k]) { B.waiting[k].push(cb); return; }
    B.waiting[k] = [cb];
    const s = el("script", {src: `data/${k}.js`});
    s.onerror = () => { B.shards[k] = {}; B.shard({shard: k, features: {}}); };
    document.body.append(s);
  }

  B.featurePage = function () {
    const main = document.getElementById("page");
    const form = document.getElementById("goto");
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      location.hash = "#" + document.getElementById("goto-id").value;
    });
    function show() {
      const f = parseInt(location.hash.slice(1), 10);
      if (!Number.isInteger(f) || f < 0) {
        main.replaceChildren(el("p", {class: "error", text: "No feature given: open feature.html#<id>, or pick one from the index."}));
        return;
      }
      const k = Math.floor(f / SHARD_SIZE);
      loadShard(k, () => {
        const p = (B.shards[k] || {})[String(f)];
        if (!p) {
          main.replaceChildren(el("p", {class: "error", text: `Feature ${f} has no page: it never fired on the evaluation texts, or there is no such feature.`}));
          document.title = `Feature ${f} (no page)`;
          return;
        }
        document.title = `Feature ${f} · __HOOK__`;
        main.replaceChildren(...featureView(p));
      });
    }
    window.addEventListener("hashchange", show);
    show();
  };

  function list(title, items) {
    return el("div", {class: "card"}, el("h3", {text: title}),
      items.length ? el("ul", {}, ...items) : el("p", {class: "sub", text: "none"}));
  }
  const featLink = (f) => el("a", {href: `#${f}`, text: `#${f}`});

  function featureView(p) {
    const head = el("div", {},
      el("h2", {text: `Feature ${p.feature}`}, ...p.specialist_for.map((c) => el("span", {class: "badge", text: `${c} specialist`}))),
      el("p", {class: "sub", text:
        `fires on ${pct(p.density)} of evaluation tokens (${p.n_active}) · max ${fmt(p.max_act, 2)} · mean when firing ${fmt(p.mean_act, 2)}`}),
      p.neuronpedia ? el("p", {}, el("a", {href: p.neuronpedia, text: "Neuronpedia page"})) : null);
    if (p.explanation) {
      const sc = Object.entries(p.explanation.scores || {}).map(([s, v]) => `${s} ${fmt(v, 2)}`).join(" · ");
      head.append(el("p", {}, el("b", {text: "Explanation: "}), p.explanation.text,
        el("span", {class: "sub", text: sc ? `  (held-out AUROC: ${sc})` : ""})));
    }
    const sel = Object.entries(p.selectivity).sort((a, b) => b[1] - a[1]).map(([c, v]) => el("li", {},
      el("span", {text: c}), el("span", {class: "bar"}, el("span", {style: `width:${Math.max(0, Math.min(1, v)) * 100}%`})),
      el("span", {class: "num", text: fmt(v, 2)})));
    const cards = [
      el("div", {class: "card"}, el("h3", {text: "Activation histogram (firing tokens)"}), histogram(p.histogram)),
      list("Selectivity: held-out AUROC per category", sel),
    ];
    if (p.logits) {
      cards.push(list("Top logits (W_dec·W_U)", p.logits.top.map((t) => el("li", {}, el("code", {text: JSON.stringify(t.token)}), el("span", {class: "num", text: fmt(t.logit, 2)})))));
      cards.push(list("Bottom logits", p.logits.bottom.map((t) => el("li", {}, el("code", {text: JSON.stringify(t.token)}), el("span", {class: "num", text: fmt(t.logit, 2)})))));
    }
    cards.push(list("Nearest by decoder cosine", p.near_decoder.map((n) => el("li", {}, featLink(n.feature), el("span", {class: "num", text: fmt(n.cosine, 3)})))));
    cards.push(list("Nearest by co-firing (Jaccard)", p.near_cofiring.map((n) => el("li", {}, featLink(n.feature), el("span", {class: "num", text: fmt(n.jaccard, 3)})))));
    if (p.seed_match.length)
      cards.push(list("Best match in other training seeds (decoder cosine)", p.seed_match.map((m) => el("li", {}, el("span", {text: `seed ${m.seed}: #${m.feature}`}), el("span", {class: "num", text: fmt(m.cosine, 3)})))));
    const ctx = [el("h3", {text: `Top ${p.top.length} contexts`}), ...p.top.map((c) => context(c, p.max_act))];
    for (const b of p.bands) {
      if (!b.contexts.length) continue;
      ctx.push(el("div", {class: "band"}, el("h4", {text: `Activation in (${fmt(b.low, 2)}, ${fmt(b.high, 2)}]: ${b.contexts.length} of ${b.n} tokens`}),
        ...b.contexts.map((c) => context(c, p.max_act))));
    }
    return [head, el("div", {class: "grid"}, ...cards), el("section", {id: "contexts"}, ...ctx)];
  }

  function context(raw, maxAct) {
    // [text, focus, pieces, values x 100] (pages.Context.to_json)
    const c = {text: raw[0], focus: raw[1], pieces: raw[2], values: raw[3].map((v) => v / 100)};
    const [category, split, id] = (B.textRows || [])[c.text] || ["?", "?", String(c.text)];
    c.category = category; c.split = split; c.id = id;
    const spans = c.pieces.map((piece, i) => {
      const v = c.values[i];
      const a = Math.max(0, Math.min(1, v / Math.max(maxAct, 1e-9)));
      return el("span", {class: "tok" + (i === c.focus ? " focus" : ""), style: `background:rgba(${ORANGE},${a.toFixed(3)})`,
        title: v.toFixed(2), "data-act": v.toFixed(2)}, piece);
    });
    return el("div", {class: "tokhl", "data-category": c.category},
      el("span", {class: "meta", text: `${c.category} · ${c.split} · ${c.id}`}), ...spans);
  }

  function histogram(h) {
    const W = 300, H = 110, pad = 22, n = h.counts.length;
    const top = Math.max(1, ...h.counts);
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("width", W);
    svg.setAttribute("height", H);
    svg.setAttribute("role", "img");
    const bw = (W - 2 * pad) / n;
    h.counts.forEach((c, i) => {
      const r = document.createElementNS(ns, "rect");
      const bh = c ? Math.max(1, (H - 2 * pad) * Math.log1p(c) / Math.log1p(top)) : 0;
      r.setAttribute("x", pad + i * bw); r.setAttribute("width", Math.max(0.5, bw - 1));
      r.setAttribute("y", H - pad - bh); r.setAttribute("height", bh);
      r.setAttribute("fill", `rgb(${ORANGE})`);
      const t = document.createElementNS(ns, "title");
      t.textContent = `${c} tokens in (${fmt(h.edges[i], 2)}, ${fmt(h.edges[i + 1], 2)}]`;
      r.append(t);
      svg.append(r);
    });
    for (const [x, label, anchor] of [[pad, "0", "start"], [W - pad, fmt(h.edges[n], 2), "end"]]) {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", x); t.setAttribute("y", H - 6); t.setAttribute("text-anchor", anchor);
      t.textContent = label;
      svg.append(t);
    }
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", pad); t.setAttribute("y", 12);
    t.textContent = `log-scaled counts, peak ${top}`;
    svg.append(t);
    return svg;
  }
})();
