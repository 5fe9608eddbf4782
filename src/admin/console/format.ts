// Part of the console's script (see app.ts): number formatting: every number is text, its raw value in data-value (the tests read it).
// Plain browser JavaScript, concatenated into one function scope with the other parts, so the names
// it uses from them need no import. Kept in a String.raw template: no backtick and no dollar-brace inside.

export const CONSOLE_FORMAT_JS = String.raw`  // ---- number formatting: every number is text, its raw value in data-value ----
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

`
