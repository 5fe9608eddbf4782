// The console's page and stylesheet, as strings so that `tsc` carries them into dist/ with the
// rest of the package (tsconfig.build.json compiles .ts only). No external resource: the CSP
// the route sends allows nothing but this origin.

export const CONSOLE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>modelsplit console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/console.css">
<script src="/console.js" defer></script>
</head>
<body>
<header class="top">
  <h1>modelsplit</h1>
  <p class="meta"><span id="config-sha">config …</span> · <span id="updated" aria-live="off">loading…</span></p>
  <div class="top-actions">
    <button type="button" id="reload-config" data-action="reload">Reload config</button>
    <button type="button" id="forget-token" hidden>Forget token</button>
  </div>
</header>
<form id="token-form" class="token" hidden aria-labelledby="token-title">
  <h2 id="token-title">Admin token</h2>
  <p id="token-why">This router's admin API needs its bearer token (admin.token_file) for actions. It is kept in this tab's session storage only and sent as an Authorization header.</p>
  <label for="token-input">Bearer token</label>
  <input id="token-input" name="token" type="password" autocomplete="off" required minlength="1">
  <button type="submit">Use token</button>
</form>
<p id="status" role="status" aria-live="polite" class="status"></p>
<main id="routes"><p>Loading…</p></main>
<dialog id="confirm" aria-labelledby="confirm-title">
  <form method="dialog">
    <h2 id="confirm-title">Confirm</h2>
    <p id="confirm-text"></p>
    <div class="dialog-actions">
      <button value="cancel" id="confirm-cancel" autofocus>Cancel</button>
      <button value="ok" id="confirm-ok" class="danger">Confirm</button>
    </div>
  </form>
</dialog>
<footer><p>Polled every 2.5 s from this admin listener. Rates, error rates and latency quantiles are computed in the page from the difference of two <code>/metrics</code> scrapes (since start until a second scrape exists).</p></footer>
</body>
</html>
`

export const CONSOLE_CSS = `:root { color-scheme: light; --fg: #16181d; --muted: #4a5160; --bg: #ffffff; --panel: #f4f6f9; --line: #c9ced8;
  --control: #1f5fbf; --candidate: #a34500; --good: #17663a; --bad: #a4161a; --focus: #ffbf47; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
header.top { display: flex; flex-wrap: wrap; align-items: baseline; gap: .5rem 1.5rem; padding: .75rem 1.25rem; border-bottom: 1px solid var(--line); background: var(--panel); }
header h1 { font-size: 1.25rem; margin: 0; }
.meta { margin: 0; color: var(--muted); font-variant-numeric: tabular-nums; }
.top-actions { margin-left: auto; display: flex; gap: .5rem; }
main { padding: 0 1.25rem 1rem; display: grid; gap: 1.25rem; }
footer { padding: 0 1.25rem 1rem; color: var(--muted); font-size: .85rem; }
section.route { border: 1px solid var(--line); border-radius: 6px; padding: .5rem 1rem 1rem; }
section.route > h2 { margin: .25rem 0 .5rem; font-size: 1.15rem; }
h3 { font-size: 1rem; margin: 1rem 0 .35rem; }
h4 { font-size: .95rem; margin: .75rem 0 .25rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 0 1.5rem; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: .25rem 0; }
th, td { text-align: left; padding: .2rem .5rem .2rem 0; border-bottom: 1px solid #e3e6eb; vertical-align: middle; }
th { color: var(--muted); font-weight: 600; font-size: .85rem; }
td.num, th.num { text-align: right; }
.bar-row { display: grid; grid-template-columns: 5.5rem 1fr 10rem; align-items: center; gap: .5rem; margin: .15rem 0; }
.bar { height: .9rem; background: #e3e6eb; border-radius: 2px; overflow: hidden; }
.bar > span { display: block; height: 100%; background: var(--control); }
.bar.configured > span { background: repeating-linear-gradient(45deg, #5d6b82, #5d6b82 4px, #8290a8 4px, #8290a8 8px); }
.label { color: var(--muted); font-size: .85rem; }
.pill { display: inline-block; padding: 0 .45rem; border-radius: 999px; border: 1px solid currentColor; font-weight: 600; font-size: .85rem; }
.pill.good { color: var(--good); } .pill.bad { color: var(--bad); } .pill.neutral { color: var(--muted); }
.actions { display: flex; flex-wrap: wrap; gap: .5rem; margin: .5rem 0; }
button { font: inherit; padding: .3rem .8rem; border: 1px solid #2d3440; border-radius: 4px; background: #fff; color: var(--fg); cursor: pointer; }
button:hover:not(:disabled) { background: #eef1f6; }
button:disabled { color: #6b7280; border-color: #9aa1ad; cursor: not-allowed; }
button.danger { border-color: var(--bad); color: var(--bad); }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.status { margin: .5rem 1.25rem; min-height: 1.4em; font-weight: 600; }
.status.error { color: var(--bad); }
.token { margin: .75rem 1.25rem; padding: .75rem 1rem; border: 2px solid var(--candidate); border-radius: 6px; max-width: 40rem; }
.token h2 { margin: 0 0 .25rem; font-size: 1.05rem; }
.token input { font: inherit; padding: .25rem .4rem; width: 22rem; max-width: 100%; margin: 0 .5rem; }
dialog { border: 1px solid var(--line); border-radius: 6px; max-width: 32rem; }
dialog::backdrop { background: rgba(0, 0, 0, .35); }
.dialog-actions { display: flex; justify-content: flex-end; gap: .5rem; }
svg.whisker { display: block; width: 180px; height: 16px; }
svg.whisker line { stroke: #2d3440; stroke-width: 1.5; }
svg.whisker line.zero { stroke: #9aa1ad; stroke-dasharray: 2 2; }
svg.whisker circle { fill: var(--control); }
svg.spark { display: block; width: 220px; height: 40px; }
svg.spark polyline { fill: none; stroke: var(--control); stroke-width: 1.5; }
svg.spark polygon { fill: #c9d8f0; }
.hist { display: flex; align-items: flex-end; gap: 2px; height: 40px; }
.hist > span { display: block; width: 14px; background: #5d6b82; min-height: 1px; }
.muted { color: var(--muted); }
.decisions td:first-child { white-space: nowrap; }
`
