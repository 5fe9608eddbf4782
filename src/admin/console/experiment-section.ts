// Part of the console's script (see app.ts): a metric's experiment: arms, comparisons and the sample ratio check, as /admin/experiments gives them.
// Plain browser JavaScript, concatenated into one function scope with the other parts, so the names
// it uses from them need no import. Kept in a String.raw template: no backtick and no dollar-brace inside.

export const CONSOLE_EXPERIMENT_SECTION_JS = String.raw`  function verdictPill(v) {
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

`
