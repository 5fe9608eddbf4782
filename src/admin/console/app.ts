// The console's script, served as /console.js: plain browser JavaScript with no dependency (there
// is nothing to vendor or keep up to date; a few hundred lines of DOM code do not need a
// framework). It polls the admin API every 2.5 s and re-renders; numbers are text, each carrying
// its raw value in data-value so that tests (and people) can read them exactly.
// The script is split by concern into the modules imported below, each a part of one function scope
// (the parts call each other's functions by name); this module holds the page's state, the polling
// and rendering and the start-up, and puts the parts together in order.
// Kept in String.raw templates: no backtick and no dollar-brace inside.

import { CONSOLE_ACTIONS_JS } from './actions.js'
import { CONSOLE_API_JS } from './admin-api.js'
import { CONSOLE_DECISION_SECTIONS_JS } from './decision-sections.js'
import { CONSOLE_ELEMENTS_JS } from './elements.js'
import { CONSOLE_EXPERIMENT_SECTION_JS } from './experiment-section.js'
import { CONSOLE_FORMAT_JS } from './format.js'
import { CONSOLE_METRICS_TEXT_JS } from './metrics-text.js'
import { CONSOLE_PICTURES_JS } from './pictures.js'
import { CONSOLE_TRAFFIC_SECTIONS_JS } from './traffic-sections.js'

const HEAD = String.raw`'use strict';
(function () {
  var POLL_MS = 2500;
  var TOKEN_KEY = 'modelsplit-admin-token';
  var prevScrape = null;      // { t, series } of the previous /metrics scrape
  var agreementHistory = {};  // "route|primary|shadow" -> [{ t, rate, lo, hi }]
  var tokenRequired = false;
  var timer = null;
  var busy = false;

`

const RENDER = String.raw`  // ---- polling and rendering ----
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

`

const START = String.raw`  document.addEventListener('DOMContentLoaded', function () {
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

export const CONSOLE_JS = HEAD + CONSOLE_ELEMENTS_JS + CONSOLE_FORMAT_JS + CONSOLE_API_JS + CONSOLE_METRICS_TEXT_JS +
  CONSOLE_PICTURES_JS + CONSOLE_DECISION_SECTIONS_JS + CONSOLE_EXPERIMENT_SECTION_JS + CONSOLE_TRAFFIC_SECTIONS_JS +
  RENDER + CONSOLE_ACTIONS_JS + START
