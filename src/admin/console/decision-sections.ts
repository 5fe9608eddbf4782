// Part of the console's script (see app.ts): a route's split and its rollout or bandit, with the operator's buttons.
// Plain browser JavaScript, concatenated into one function scope with the other parts, so the names
// it uses from them need no import. Kept in a String.raw template: no backtick and no dollar-brace inside.

export const CONSOLE_DECISION_SECTIONS_JS = String.raw`  // ---- sections ----
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

`
