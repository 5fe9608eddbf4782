// Part of the console's script (see app.ts): shadows, the judge, LLM shares and per-model traffic from /metrics, /admin/shadows and /admin/llm.
// Plain browser JavaScript, concatenated into one function scope with the other parts, so the names
// it uses from them need no import. Kept in a String.raw template: no backtick and no dollar-brace inside.

export const CONSOLE_TRAFFIC_SECTIONS_JS = String.raw`  function shadowSection(route, series, prevSeries, now, agreement) {
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

`
