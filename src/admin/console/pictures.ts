// Part of the console's script (see app.ts): the decorative pictures (whiskers, bars, sparklines).
// Plain browser JavaScript, concatenated into one function scope with the other parts, so the names
// it uses from them need no import. Kept in a String.raw template: no backtick and no dollar-brace inside.

export const CONSOLE_PICTURES_JS = String.raw`  // ---- pictures (decorative: the numbers beside them say the same) ----
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

`
