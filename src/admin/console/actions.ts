// Part of the console's script (see app.ts): the operator's actions: status line, confirmation dialog, POSTs and the token prompt.
// Plain browser JavaScript, concatenated into one function scope with the other parts, so the names
// it uses from them need no import. Kept in a String.raw template: no backtick and no dollar-brace inside.

export const CONSOLE_ACTIONS_JS = String.raw`  function setStatus(text, error) {
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

`
