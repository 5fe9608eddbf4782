// Part of the console's script (see app.ts): reading the admin API with the operator's bearer token.
// Plain browser JavaScript, concatenated into one function scope with the other parts, so the names
// it uses from them need no import. Kept in a String.raw template: no backtick and no dollar-brace inside.

export const CONSOLE_API_JS = String.raw`  // ---- admin API ----
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

`
