// Part of the console's script (see app.ts): reading Prometheus text: series, sums, histogram buckets and quantiles.
// Plain browser JavaScript, concatenated into one function scope with the other parts, so the names
// it uses from them need no import. Kept in a String.raw template: no backtick and no dollar-brace inside.

export const CONSOLE_METRICS_TEXT_JS = String.raw`  // ---- Prometheus text ----
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
`
