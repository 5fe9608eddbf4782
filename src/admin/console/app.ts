// The console's script, served as /console.js: plain browser JavaScript with no dependency (there
// is nothing to vendor or keep up to date; a few hundred lines of DOM code do not need a
// framework). It polls the admin API every 2.5 s and re-renders; numbers are text, each carrying
// its raw value in data-value so that tests (and people) can read them exactly.
// Kept in a String.raw template: no backtick and no dollar-brace inside.

export const CONSOLE_JS = String.raw`'use strict';
(function () {
  var POLL_MS = 2500;
  var TOKEN_KEY = 'modelsplit-admin-token';
  var prevScrape = null;      // { t, series } of the previous /metrics scrape
  var agreementHistory = {};  // "route|primary|shadow" -> [{ t, rate, lo, hi }]
  var tokenRequired = false;
  var timer = null;
  var busy = false;

  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      var v = attrs[k];
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') node.textContent = String(v);
      else if (k === 'class') node.className = v;
      else if (k.slice(0, 2) === 'on') node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }
  function append(node, child) {
    if (child === undefined || child === null || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
  var SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    for (var k in attrs) node.setAttribute(k, String(attrs[k]));
    for (var i = 2; i < arguments.length; i++) if (arguments[i]) node.appendChild(arguments[i]);
    return node;
  }

  // ---- number formatting: every number is text, its raw value in data-value ----
  function isNum(x) { return typeof x === 'number' && isFinite(x); }
  function pct(x, digits) { return isNum(x) ? (x * 100).toFixed(digits === undefined ? 1 : digits) + '%' : '–'; }
  function num(x) {
    if (!isNum(x)) return '–';
    var a = Math.abs(x);
    if (a !== 0 && a < 0.001) return x.toExponential(2);
    if (a >= 1000) return Math.round(x).toLocaleString('en');
    return String(Number(x.toPrecision(4)));
  }
  function pval(p) { return !isNum(p) ? '–' : p < 0.0001 ? '< 0.0001' : p.toFixed(4); }
  function secs(s) { return !isNum(s) ? '–' : s < 1 ? (s * 1000).toPrecision(3) + ' ms' : s.toPrecision(3) + ' s'; }
  function field(name, value, text, cls) {
    return el('span', { 'data-field': name, 'data-value': isNum(value) ? String(value) : (value === undefined || value === null ? '' : String(value)), class: cls }, text);
  }
  function interval(ci, fmt) { return Array.isArray(ci) && ci.length === 2 ? '[' + fmt(ci[0]) + ', ' + fmt(ci[1]) + ']' : '–'; }

  // ---- admin API ----
  function token() { try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; } }
  function api(path, opts) {
    opts = opts || {};
    var headers = { accept: 'application/json' };
    var t = token();
    if (t) headers.authorization = 'Bearer ' + t;
    // The admin refuses mutations a foreign page could send without a CORS preflight; this header
    // marks the console's own (same-origin, so it costs no preflight).
    if (opts.method && opts.method !== 'GET') headers['x-modelsplit-admin'] = '1';
    return fetch(path, { method: opts.method || 'GET', headers: headers, cache: 'no-store', credentials: 'omit' }).then(function (res) {
      if (res.status === 401) {
        askToken(t ? 'The token was refused (401). Enter the admin token again.' : 'This admin endpoint needs the bearer token (admin.token_file).');
      }
      return res;
    });
  }
  function json(path) {
    return api(path).then(function (res) {
      if (!res.ok) return res.text().then(function (b) { var e = new Error(path + ': ' + res.status + ' ' + b.slice(0, 200)); e.status = res.status; throw e; });
      return res.json();
    });
  }

  // ---- Prometheus text ----
  function parseMetrics(text) {
    var out = [];
    text.split('\n').forEach(function (line) {
      if (!line || line[0] === '#') return;
      var m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) return;
      var labels = {};
      if (m[3]) m[3].replace(/(\w+)="((?:[^"\\]|\\.)*)"/g, function (_, k, v) { labels[k] = v.replace(/\\"/g, '"').replace(/\\\\/g, '\\'); return ''; });
      out.push({ name: m[1], labels: labels, value: Number(m[4]) });
    });
    return out;
  }
  function sum(series, name, match) {
    var s = 0;
    series.forEach(function (x) {
      if (x.name !== name) return;
      for (var k in match) if (x.labels[k] !== match[k]) return;
      s += x.value;
    });
    return s;
  }
  function each(series, name, keyOf) {
    var out = {};
    series.forEach(function (x) { if (x.name === name) { var k = keyOf(x.labels); if (k !== null) out[k] = (out[k] || 0) + x.value; } });
    return out;
  }
  function buckets(series, name, match) {
    var by = {};
    series.forEach(function (x) {
      if (x.name !== name + '_bucket') return;
      for (var k in match) if (x.labels[k] !== match[k]) return;
      var le = x.labels.le === '+Inf' ? Infinity : Number(x.labels.le);
      by[le] = (by[le] || 0) + x.value;
    });
    return Object.keys(by).map(Number).sort(function (a, b) { return a - b; }).map(function (le) { return { le: le, c: by[le] }; });
  }
  function minus(cur, prev) {
    if (!prev) return cur;
    return cur.map(function (b) { var p = prev.filter(function (x) { return x.le === b.le; })[0]; return { le: b.le, c: b.c - (p ? p.c : 0) }; });
  }
  // histogram_quantile's linear interpolation within the bucket.
  function quantile(q, bs) {
    if (!bs.length) return NaN;
    var total = bs[bs.length - 1].c;
    if (!(total > 0)) return NaN;
    var rank = q * total, prevLe = 0, prevC = 0;
    for (var i = 0; i < bs.length; i++) {
      if (bs[i].c >= rank) {
        if (bs[i].le === Infinity) return prevLe;
        return prevLe + (bs[i].le - prevLe) * ((rank - prevC) / Math.max(bs[i].c - prevC, 1e-12));
      }
      prevLe = bs[i].le; prevC = bs[i].c;
    }
    return prevLe;
  }
  // ---- pictures (decorative: the numbers beside them say the same) ----
  function whisker(lo, hi, est, min, max, zero) {
    var W = 180, pad = 4;
    var x = function (v) { return max > min ? pad + (W - 2 * pad) * (v - min) / (max - min) : W / 2; };
    var g = svg('svg', { class: 'whisker', viewBox: '0 0 ' + W + ' 16', 'aria-hidden': 'true', focusable: 'false' });
    if (zero && min < 0 && max > 0) g.appendChild(svg('line', { class: 'zero', x1: x(0), x2: x(0), y1: 0, y2: 16 }));
    if (isNum(lo) && isNum(hi)) {
      g.appendChild(svg('line', { x1: x(lo), x2: x(hi), y1: 8, y2: 8 }));
      g.appendChild(svg('line', { x1: x(lo), x2: x(lo), y1: 3, y2: 13 }));
      g.appendChild(svg('line', { x1: x(hi), x2: x(hi), y1: 3, y2: 13 }));
    }
    if (isNum(est)) g.appendChild(svg('circle', { cx: x(est), cy: 8, r: 3.5 }));
    return g;
  }
  function bar(share, kind, label, model, fieldName, text) {
    var fill = el('span');
    fill.style.width = (isNum(share) ? Math.max(0, Math.min(1, share)) * 100 : 0) + '%';
    return el('div', { class: 'bar-row', 'data-model': model },
      el('span', { class: 'label' }, label),
      el('div', { class: 'bar ' + kind, 'aria-hidden': 'true' }, fill),
      field(fieldName, share, text));
  }
  function spark(points) {
    var W = 220, H = 40;
    if (points.length < 2) return el('span', { class: 'muted' }, 'history builds up while the page is open');
    var t0 = points[0].t, t1 = points[points.length - 1].t;
    var x = function (t) { return t1 > t0 ? W * (t - t0) / (t1 - t0) : 0; };
    var y = function (v) { return H - 2 - (H - 4) * v; };
    var band = points.map(function (p) { return x(p.t) + ',' + y(p.hi); }).concat(points.slice().reverse().map(function (p) { return x(p.t) + ',' + y(p.lo); }));
    return svg('svg', { class: 'spark', viewBox: '0 0 ' + W + ' ' + H, 'aria-hidden': 'true', focusable: 'false' },
      svg('polygon', { points: band.join(' ') }),
      svg('polyline', { points: points.map(function (p) { return x(p.t) + ',' + y(p.rate); }).join(' ') }));
  }

  // ---- sections ----
  function splitSection(name, configured, effective) {
    var models = Object.keys(configured).concat(Object.keys(effective).filter(function (m) { return !(m in configured); }));
    var total = 0;
    for (var m in configured) total += configured[m];
    return el('div', { class: 'split', 'data-section': 'split' },
      el('h3', { text: 'Split' }),
      models.map(function (m) {
        var c = total > 0 ? (configured[m] || 0) / total : 0;
        return el('div', { 'data-model': m },
          el('h4', { text: m }),
          bar(c, 'configured', 'configured', m, 'configured-share', pct(c) + ' (weight ' + num(configured[m] || 0) + ')'),
          bar(effective[m], 'effective', 'in force', m, 'effective-share', pct(effective[m])));
      }));
  }

  function rolloutSection(r) {
    var kids = [el('h3', { text: r.kind === 'bandit' ? 'Bandit' : 'Rollout' })];
    if (r.state !== undefined) {
      kids.push(el('p', null,
        'State ', el('strong', null, field('rollout-state', r.state, r.state)),
        ' · candidate ', el('strong', { text: r.candidate }), ' against ', el('strong', { text: r.control }),
        ' · step ', field('rollout-percent', r.percent, num(r.percent) + '%'), ' of ', (r.steps || []).map(function (s) { return s + '%'; }).join(' → '),
        r.paused_by ? ' · paused by ' + r.paused_by : ''));
      kids.push(el('p', { class: 'muted' }, 'Step began ' + new Date(r.step_started_at).toLocaleString() + ' · next evaluation ' + (r.next_evaluation ? new Date(r.next_evaluation).toLocaleString() : 'none')));
      var can = { pause: r.state === 'running', resume: r.state === 'paused' || r.state === 'holding', abort: r.state === 'running' || r.state === 'paused' || r.state === 'holding', promote: r.state === 'running' || r.state === 'paused' || r.state === 'holding' };
      kids.push(el('div', { class: 'actions', role: 'group', 'aria-label': 'Rollout actions for ' + r.route },
        ['pause', 'resume', 'abort', 'promote'].map(function (a) {
          return el('button', { type: 'button', 'data-action': a, 'data-focus': r.route + ':' + a, class: a === 'abort' ? 'danger' : null, disabled: !can[a],
            onclick: function () { act(r.route, a); } }, a[0].toUpperCase() + a.slice(1));
        })));
    }
    if (r.bandit) {
      var b = r.bandit;
      kids.push(el('table', { 'data-section': 'bandit' }, el('caption', { text: 'Bandit at the last decision' + (b.winner ? ' · winner ' + b.winner : '') }),
        el('thead', null, el('tr', null, el('th', { text: 'arm' }), el('th', { class: 'num', text: 'share' }), el('th', { class: 'num', text: 'P(best)' }), el('th', { class: 'num', text: 'expected loss' }))),
        el('tbody', null, Object.keys(b.shares || {}).map(function (m) {
          return el('tr', { 'data-model': m }, el('th', { scope: 'row', text: m }),
            el('td', { class: 'num' }, field('bandit-share', b.shares[m], pct(b.shares[m]))),
            el('td', { class: 'num' }, field('probability-best', (b.probability_best || {})[m], pct((b.probability_best || {})[m]))),
            el('td', { class: 'num' }, field('expected-loss', (b.expected_loss || {})[m], num((b.expected_loss || {})[m]))));
        }))));
    }
    var ds = (r.decisions || []).slice().reverse();
    kids.push(el('table', { class: 'decisions', 'data-section': 'decisions' },
      el('caption', { text: 'Decisions (newest first, ' + ds.length + ')' }),
      el('thead', null, el('tr', null, el('th', { text: 'at' }), el('th', { text: 'kind' }), el('th', { text: 'result' }), el('th', { text: 'reason' }))),
      el('tbody', null, ds.slice(0, 25).map(function (d) {
        return el('tr', { 'data-result': d.result }, el('td', { text: new Date(d.at).toLocaleTimeString() }), el('td', { text: d.kind }), el('td', null, el('strong', { text: d.result })), el('td', { text: d.reason }));
      }))));
    return el('div', { 'data-section': 'rollout' }, kids);
  }

  function verdictPill(v) {
    var cls = /better/.test(v) ? 'good' : /worse|mismatch/.test(v) ? 'bad' : 'neutral';
    return el('span', { class: 'pill ' + cls }, field('verdict', v, v));
  }

  function metricSection(name, m) {
    var isRate = m.type === 'binary';
    var est = function (a) { return isRate ? a.rate : a.mean; };
    var fmt = isRate ? function (x) { return pct(x, 2); } : num;
    var arms = Object.keys(m.models || {});
    var lo = Infinity, hi = -Infinity;
    arms.forEach(function (a) { var ci = m.models[a].ci; if (ci) { lo = Math.min(lo, ci[0]); hi = Math.max(hi, ci[1]); } var e = est(m.models[a]); if (isNum(e)) { lo = Math.min(lo, e); hi = Math.max(hi, e); } });
    var armTable = el('table', null,
      el('caption', null, name + ' (' + (isRate ? 'rate' : 'mean') + ', ' + m.type + ', control ' + m.control + ', mde ' + num(m.mde) + ') · verdict ', verdictPill(m.verdict)),
      el('thead', null, el('tr', null, ['arm', 'weight', 'assigned', 'outcomes', isRate ? 'rate' : 'mean', '95% interval', ''].map(function (h, i) { return el('th', { class: i > 0 && i < 6 ? 'num' : null, text: h }); }))),
      el('tbody', null, arms.map(function (a) {
        var x = m.models[a];
        return el('tr', { 'data-model': a },
          el('th', { scope: 'row', text: a + (a === m.control ? ' (control)' : '') }),
          el('td', { class: 'num' }, field('weight', x.weight, num(x.weight))),
          el('td', { class: 'num' }, field('assignments', x.assignments, num(x.assignments))),
          el('td', { class: 'num' }, field('outcomes', x.outcomes, num(x.outcomes))),
          el('td', { class: 'num' }, field(isRate ? 'rate' : 'mean', est(x), fmt(est(x)))),
          el('td', { class: 'num' }, field('ci', x.ci ? x.ci.join(',') : '', interval(x.ci, fmt))),
          el('td', null, whisker(x.ci && x.ci[0], x.ci && x.ci[1], est(x), lo, hi, false)));
      })));
    var cands = Object.keys(m.comparisons || {});
    var llo = 0, lhi = 0;
    cands.forEach(function (c) { var ci = m.comparisons[c].abs_lift_ci; if (ci) { llo = Math.min(llo, ci[0]); lhi = Math.max(lhi, ci[1]); } });
    var cmpTable = el('table', null,
      el('caption', { text: name + ': candidates against ' + m.control }),
      el('thead', null, el('tr', null, ['candidate', 'lift', '95% interval', '', 'relative lift', 'p', 'sequential p', 'sample per arm', 'verdict'].map(function (h, i) { return el('th', { class: i > 0 && i < 8 && i !== 3 ? 'num' : null, text: h }); }))),
      el('tbody', null, cands.map(function (c) {
        var x = m.comparisons[c];
        var collected = Math.min((m.models[c] || {}).outcomes || 0, (m.models[m.control] || {}).outcomes || 0);
        return el('tr', { 'data-model': c },
          el('th', { scope: 'row', text: c }),
          el('td', { class: 'num' }, field('abs-lift', x.abs_lift, (x.abs_lift > 0 ? '+' : '') + fmt(x.abs_lift))),
          el('td', { class: 'num' }, field('abs-lift-ci', x.abs_lift_ci ? x.abs_lift_ci.join(',') : '', interval(x.abs_lift_ci, fmt))),
          el('td', null, whisker(x.abs_lift_ci && x.abs_lift_ci[0], x.abs_lift_ci && x.abs_lift_ci[1], x.abs_lift, llo, lhi, true)),
          el('td', { class: 'num' }, field('rel-lift', x.rel_lift, pct(x.rel_lift)), ' ', el('span', { class: 'muted' }, interval(x.rel_lift_ci, pct))),
          el('td', { class: 'num' }, field('p-value', x.p_value, pval(x.p_value))),
          el('td', { class: 'num' }, field('p-sequential', x.p_value_sequential, pval(x.p_value_sequential))),
          el('td', { class: 'num' }, field('collected', collected, num(collected)), ' of ', field('required', x.required_per_arm, num(x.required_per_arm)), el('br'), el('span', { class: 'muted' }, field('remaining', x.remaining, num(x.remaining)), ' to go')),
          el('td', null, verdictPill(x.verdict)));
      })));
    var s = m.srm || {};
    var srm = el('p', { 'data-section': 'srm' }, 'Sample ratio check: ',
      el('strong', null, field('srm', s.mismatch ? 'mismatch' : 'ok', s.mismatch ? 'MISMATCH (investigate)' : 'ok')),
      ' · χ² ', field('srm-chi2', s.chi2, num(s.chi2)), ' (df ' + (s.df === undefined ? '–' : s.df) + ') · p ', field('srm-p', s.p_value, pval(s.p_value)));
    return el('div', { 'data-metric': name, 'data-section': 'metric' }, el('h4', { text: 'Metric ' + name }), armTable, cmpTable, srm);
  }

  function shadowSection(route, series, prevSeries, now, agreement) {
    var pairs = {};
    series.forEach(function (x) { if (x.name === 'modelsplit_shadow_comparisons_total' && x.labels.route === route) pairs[x.labels.primary + '|' + x.labels.shadow] = x.labels; });
    var shadows = {};
    series.forEach(function (x) { if ((x.name === 'modelsplit_shadow_requests_total' || x.name === 'modelsplit_shadow_dropped_total') && x.labels.route === route) shadows[x.labels.model] = true; });
    var names = Object.keys(shadows);
    if (!names.length && !Object.keys(pairs).length) return null;
    var kids = [el('h3', { text: 'Shadows' })];
    names.forEach(function (sh) {
      var dropped = each(series, 'modelsplit_shadow_dropped_total', function (l) { return l.route === route && l.model === sh ? l.reason : null; });
      var totalDropped = 0; for (var k in dropped) totalDropped += dropped[k];
      var sent = sum(series, 'modelsplit_shadow_requests_total', { route: route, model: sh });
      var cur = buckets(series, 'modelsplit_shadow_duration_seconds', { route: route, model: sh });
      kids.push(el('div', { 'data-shadow': sh },
        el('h4', { text: 'Shadow ' + sh }),
        el('p', null, 'Mirrored ', field('shadow-sent', sent, num(sent)), ' · dropped ', field('shadow-dropped', totalDropped, num(totalDropped)),
          totalDropped > 0 ? ' (' + Object.keys(dropped).filter(function (r) { return dropped[r] > 0; }).map(function (r) { return r + ' ' + dropped[r]; }).join(', ') + ')' : '',
          ' · p50 ', field('shadow-p50', quantile(0.5, cur), secs(quantile(0.5, cur))), ' · p99 ', field('shadow-p99', quantile(0.99, cur), secs(quantile(0.99, cur))))));
      Object.keys(pairs).filter(function (k) { return pairs[k].shadow === sh; }).forEach(function (k) {
        var p = pairs[k];
        var by = each(series, 'modelsplit_shadow_comparisons_total', function (l) { return l.route === route && l.primary === p.primary && l.shadow === sh ? l.result : null; });
        // Agreement and its interval come from /admin/shadows (the router's statistics), not from here.
        var a = (agreement || []).filter(function (x) { return x.primary === p.primary && x.shadow === sh; })[0];
        var n = a ? a.compared : (by.agree || 0) + (by.disagree || 0) + (by.error || 0);
        var rate = a && a.rate !== null ? a.rate : NaN, ci = a ? a.ci : [null, null];
        var key = route + '|' + k, hist = agreementHistory[key] = agreementHistory[key] || [];
        if (n > 0 && (!hist.length || hist[hist.length - 1].t !== now)) { hist.push({ t: now, rate: rate, lo: ci[0], hi: ci[1] }); if (hist.length > 120) hist.shift(); }
        var db = buckets(series, 'modelsplit_shadow_abs_diff', { route: route, primary: p.primary, shadow: sh });
        var per = db.map(function (b, i) { return { le: b.le, c: b.c - (i ? db[i - 1].c : 0) }; });
        var maxC = Math.max.apply(null, per.map(function (b) { return b.c; }).concat([1]));
        var diffSum = sum(series, 'modelsplit_shadow_abs_diff_sum', { route: route, primary: p.primary, shadow: sh });
        var diffCount = sum(series, 'modelsplit_shadow_abs_diff_count', { route: route, primary: p.primary, shadow: sh });
        var primCur = buckets(series, 'modelsplit_request_duration_seconds', { route: route, model: p.primary });
        kids.push(el('div', { 'data-pair': p.primary + '|' + sh, 'data-section': 'shadow-pair' },
          el('p', null, el('strong', { text: p.primary + ' → ' + sh }), ': agreement ', field('agreement', rate, pct(rate)), ' ', el('span', { class: 'muted' }, interval(ci, pct)),
            ' over ', field('compared', n, num(n)), ' compared (agree ' + (by.agree || 0) + ', disagree ' + (by.disagree || 0) + ', error ' + (by.error || 0) + ')'),
          el('div', { class: 'grid' },
            el('div', null, el('span', { class: 'label', text: 'agreement and its 95% interval while this page is open' }), spark(hist)),
            el('div', null, el('span', { class: 'label' }, 'largest |diff| per request: mean ', field('abs-diff-mean', diffCount > 0 ? diffSum / diffCount : NaN, diffCount > 0 ? num(diffSum / diffCount) : '–'), ' over ' + diffCount),
              el('div', { class: 'hist', role: 'img', 'aria-label': 'distribution of the largest absolute difference: ' + per.filter(function (b) { return b.c > 0; }).map(function (b) { return '≤ ' + b.le + ': ' + b.c; }).join(', ') },
                per.map(function (b) { var s = el('span', { title: '≤ ' + b.le + ': ' + b.c }); s.style.height = (100 * b.c / maxC) + '%'; return s; })))),
          judgedLine(a && a.judged),
          el('p', { class: 'muted' }, 'latency p99: ' + p.primary + ' ' + secs(quantile(0.99, primCur)) + ' vs ' + sh + ' ' + secs(quantile(0.99, cur)))));
      });
    });
    return el('div', { 'data-section': 'shadows' }, kids);
  }

  // The judge's verdicts on a pair, as /admin/shadows gives them (its win rate, interval and p's).
  function judgedLine(j) {
    if (!j) return null;
    return el('p', { 'data-section': 'judged' }, 'Judge: the shadow wins ', field('win-rate', j.win_rate, pct(j.win_rate)), ' ',
      el('span', { class: 'muted' }, interval(j.ci, pct)), ' of ', field('decided', j.decided, num(j.decided)), ' decided pairs (',
      field('wins', j.wins, num(j.wins)), ' wins, ', field('ties', j.ties, num(j.ties)), ' ties, ', field('losses', j.losses, num(j.losses)),
      ' losses) · sign test p ', field('sign-p', j.sign_p, pval(j.sign_p)), ' · sequential p ', field('sequential-p', j.sequential_p, pval(j.sequential_p)));
  }

  // api: openai routes: each arm's share of requests, tokens and cost side by side (from /admin/llm).
  function llmSection(r) {
    if (!r || !r.arms || !r.arms.length) return null;
    return el('div', { 'data-section': 'llm-shares' },
      el('table', null,
        el('caption', { text: 'Shares per arm: requests, tokens and cost (since start)' }),
        el('thead', null, el('tr', null, ['model', 'requests', 'request share', 'tokens', 'token share', 'cost', 'cost share'].map(function (h, i) { return el('th', { class: i ? 'num' : null, text: h }); }))),
        el('tbody', null, r.arms.map(function (a) {
          return el('tr', { 'data-model': a.model },
            el('th', { scope: 'row', text: a.model }),
            el('td', { class: 'num' }, field('requests', a.requests, num(a.requests))),
            el('td', { class: 'num' }, field('request-share', a.request_share, pct(a.request_share))),
            el('td', { class: 'num' }, field('tokens', a.tokens, num(a.tokens))),
            el('td', { class: 'num' }, field('token-share', a.token_share, pct(a.token_share))),
            el('td', { class: 'num' }, field('cost', a.cost, isNum(a.cost) ? a.cost.toPrecision(4) : '–')),
            el('td', { class: 'num' }, field('cost-share', a.cost_share, pct(a.cost_share))));
        }))));
  }

  function modelsSection(route, series, prevSeries, dt, versions) {
    var models = {};
    series.forEach(function (x) { if (x.name === 'modelsplit_requests_total' && x.labels.route === route) models[x.labels.model] = true; });
    var windowed = prevSeries !== null && dt > 0;
    return el('div', { 'data-section': 'models' },
      el('table', null,
        el('caption', { text: 'Models ' + (windowed ? '(over the last ' + dt.toFixed(1) + ' s)' : '(since start; rates from the next poll)') }),
        el('thead', null, el('tr', null, ['model', 'requests', 'req/s', 'error rate', 'p50', 'p99'].map(function (h, i) { return el('th', { class: i ? 'num' : null, text: h }); }))),
        el('tbody', null, Object.keys(models).map(function (m) {
          var total = sum(series, 'modelsplit_requests_total', { route: route, model: m });
          var codes = each(series, 'modelsplit_requests_total', function (l) { return l.route === route && l.model === m ? l.code : null; });
          var err = 0; for (var c in codes) if (c[0] === '5') err += codes[c];
          var cur = buckets(series, 'modelsplit_request_duration_seconds', { route: route, model: m });
          var d = total, dErr = err, bs = cur, rps = NaN;
          if (windowed) {
            var pt = sum(prevSeries, 'modelsplit_requests_total', { route: route, model: m });
            var pcodes = each(prevSeries, 'modelsplit_requests_total', function (l) { return l.route === route && l.model === m ? l.code : null; });
            var pe = 0; for (var pc in pcodes) if (pc[0] === '5') pe += pcodes[pc];
            d = total - pt; dErr = err - pe; rps = d / dt;
            bs = minus(cur, buckets(prevSeries, 'modelsplit_request_duration_seconds', { route: route, model: m }));
          }
          var er = d > 0 ? dErr / d : NaN;
          return el('tr', { 'data-model': m },
            el('th', { scope: 'row' }, m, versions[m] ? el('span', { class: 'muted' }, ' ', field('model-version', versions[m].version, versions[m].registered_model + ' v' + (versions[m].version || '?'))) : null),
            el('td', { class: 'num' }, field('requests', total, num(total))),
            el('td', { class: 'num' }, field('rps', rps, isNum(rps) ? rps.toFixed(1) : '–')),
            el('td', { class: 'num' }, field('error-rate', er, pct(er, 2))),
            el('td', { class: 'num' }, field('p50', quantile(0.5, bs), secs(quantile(0.5, bs)))),
            el('td', { class: 'num' }, field('p99', quantile(0.99, bs), secs(quantile(0.99, bs)))));
        }))));
  }

  // ---- polling and rendering ----
  function refresh() {
    if (busy) return Promise.resolve();
    busy = true;
    return Promise.all([
      json('/admin/config'),
      json('/admin/experiments').catch(function () { return { routes: [] }; }),
      json('/admin/rollouts').catch(function (e) { if (e.status === 404) return { routes: [] }; throw e; }),
      api('/metrics').then(function (r) { return r.ok ? r.text() : ''; }),
      json('/admin/shadows').catch(function () { return { routes: [] }; }),
      json('/admin/llm').catch(function () { return { routes: [] }; }),
    ]).then(function (all) {
      var cfg = all[0], exps = all[1], rolls = all[2], now = Date.now();
      var series = parseMetrics(all[3]);
      var prev = prevScrape, dt = prev ? (now - prev.t) / 1000 : 0;
      tokenRequired = cfg.config && cfg.config.admin && cfg.config.admin.token_file !== null && cfg.config.admin.token_file !== undefined;
      if (tokenRequired && !token()) askToken('Actions on this router need its admin token (admin.token_file).');
      document.getElementById('forget-token').hidden = !token();
      document.getElementById('config-sha').textContent = 'config ' + (cfg.file || '') + ' · sha256 ' + String(cfg.sha256 || '').slice(0, 12);
      document.getElementById('updated').textContent = 'updated ' + new Date(now).toLocaleTimeString();
      var main = document.getElementById('routes');
      var focused = document.activeElement && document.activeElement.getAttribute ? document.activeElement.getAttribute('data-focus') : null;
      var frag = document.createDocumentFragment();
      (cfg.config.routes || []).forEach(function (rc) {
        var r = (rolls.routes || []).filter(function (x) { return x.route === rc.name; })[0];
        var e = (exps.routes || []).filter(function (x) { return x.route === rc.name; })[0];
        var configured = {};
        (rc.split || []).forEach(function (s) { configured[s.model] = s.weight; });
        if (r && r.configured_weights) configured = r.configured_weights;
        var effective = r && r.effective_shares ? r.effective_shares : each(series, 'modelsplit_split_weight', function (l) { return l.route === rc.name ? l.model : null; });
        var hid = 'route-' + rc.name.replace(/[^\w-]/g, '_');
        frag.appendChild(el('section', { class: 'route', 'data-route': rc.name, 'aria-labelledby': hid },
          el('h2', { id: hid }, 'Route ' + rc.name + ' ', el('span', { class: 'muted', text: rc.path || '' })),
          el('div', { class: 'grid' }, splitSection(rc.name, configured, effective), r ? rolloutSection(r) : el('div', null, el('h3', { text: 'Rollout' }), el('p', { class: 'muted', text: 'No rollout or bandit on this route.' }))),
          e ? el('div', { 'data-section': 'experiments' }, el('h3', { text: 'Experiments' }), el('p', { class: 'muted', text: e.scope || '' }),
            Object.keys(e.metrics || {}).map(function (mn) { return metricSection(mn, e.metrics[mn]); })) : null,
          shadowSection(rc.name, series, prev && prev.series, now, ((all[4].routes || []).filter(function (x) { return x.route === rc.name; })[0] || {}).pairs),
          el('h3', { text: 'Per model' }),
          llmSection((all[5].routes || []).filter(function (x) { return x.route === rc.name; })[0]),
          modelsSection(rc.name, series, prev && prev.series, dt, (cfg.mlflow && cfg.mlflow.models) || {})));
      });
      main.replaceChildren(frag);
      if (focused) { var again = main.querySelector('[data-focus="' + focused + '"]'); if (again) again.focus(); }
      prevScrape = { t: now, series: series };
      document.body.setAttribute('data-polls', String(Number(document.body.getAttribute('data-polls') || '0') + 1));
    }).catch(function (e) {
      setStatus('Could not read the admin API: ' + e.message, true);
    }).then(function () { busy = false; });
  }

  function setStatus(text, error) {
    var s = document.getElementById('status');
    s.textContent = text;
    s.className = 'status' + (error ? ' error' : '');
  }

  var WHAT = {
    pause: 'Pause the rollout on route %s? It holds its current step until resumed.',
    resume: 'Resume the rollout on route %s?',
    abort: 'Abort the rollout on route %s? The candidate goes back to 0%.',
    promote: 'Promote the candidate on route %s now? It gets all traffic and becomes the control.',
    reload: 'Reload the config file? The router validates it first and keeps the current one on any problem.',
  };
  function confirmAction(text, label) {
    var d = document.getElementById('confirm');
    document.getElementById('confirm-text').textContent = text;
    document.getElementById('confirm-title').textContent = label + '?';
    document.getElementById('confirm-ok').textContent = label;
    return new Promise(function (resolve) {
      if (typeof d.showModal !== 'function') { resolve(window.confirm(text)); return; }
      d.returnValue = '';
      d.addEventListener('close', function once() { d.removeEventListener('close', once); resolve(d.returnValue === 'ok'); });
      d.showModal();
    });
  }
  function post(path, label) {
    if (tokenRequired && !token()) { askToken('Enter the admin token to ' + label.toLowerCase() + '.'); return Promise.resolve(); }
    setStatus(label + '…');
    return api(path, { method: 'POST' }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (body) {
        if (res.ok) setStatus(label + ': done' + (body.state ? ', state ' + body.state : body.result ? ' (' + body.result + ')' : '') + '.');
        else setStatus(label + ' refused: ' + res.status + ' ' + (body.code || '') + ' ' + (body.message || ''), true);
      });
    }).catch(function (e) { setStatus(label + ' failed: ' + e.message, true); }).then(refresh);
  }
  function act(route, action) {
    var label = action[0].toUpperCase() + action.slice(1) + ' ' + route;
    confirmAction(WHAT[action].replace('%s', route), label).then(function (ok) {
      if (ok) post('/admin/rollouts/' + encodeURIComponent(route) + '/' + action, label);
      else setStatus(label + ': cancelled.');
    });
  }

  function askToken(why) {
    var f = document.getElementById('token-form');
    document.getElementById('token-why').textContent = why + ' It is kept in this tab\'s session storage only and sent as an Authorization header, never a cookie.';
    if (f.hidden) { f.hidden = false; document.getElementById('token-input').focus(); }
  }

  document.addEventListener('DOMContentLoaded', function () {
    document.getElementById('token-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var v = document.getElementById('token-input').value.trim();
      if (!v) return;
      try { sessionStorage.setItem(TOKEN_KEY, v); } catch (e) { /* storage off: the page cannot keep it */ }
      document.getElementById('token-input').value = '';
      ev.target.hidden = true;
      setStatus('Token saved for this tab.');
      refresh();
    });
    document.getElementById('forget-token').addEventListener('click', function () {
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing kept */ }
      setStatus('Token forgotten.');
      refresh();
    });
    document.getElementById('reload-config').addEventListener('click', function () {
      confirmAction(WHAT.reload, 'Reload config').then(function (ok) { if (ok) post('/admin/reload', 'Reload config'); else setStatus('Reload config: cancelled.'); });
    });
    refresh();
    timer = setInterval(refresh, POLL_MS);
    document.addEventListener('visibilitychange', function () {
      clearInterval(timer);
      if (!document.hidden) { refresh(); timer = setInterval(refresh, POLL_MS); }
    });
  });
})();
`
