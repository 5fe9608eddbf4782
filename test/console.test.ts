// The operator console (GET / on the admin port) in a real browser: Debian's chromium driven by
// playwright-core, never a downloaded browser. The page's numbers are the admin API's, they move
// when traffic flows, a pause click (confirmed) pauses the rollout, and with admin.token_file the
// page asks for the token once and then acts with it. Screenshots go to test-results/console.png
// (and to docs/console.png with CONSOLE_SCREENSHOT_DOCS=1, for the README).
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { CONSOLE_JS } from '../src/admin/console/app.js'
import { CONSOLE_CSS, CONSOLE_HTML } from '../src/admin/console/page.js'
import type { RunningRouter } from './helpers/router.js'
import { router, upstream } from './helpers/servers.js'

/** A model answering one score; `spread` of them near `base`, so that a shadow mostly agrees. */
const scorer = (base: number, spread = 0) => (_req: unknown, res: { writeHead(s: number, h: Record<string, string | number>): void; end(b: string): void }) => {
  const off = spread === 0 ? 0 : Math.random() < 0.9 ? Math.random() * 0.0008 : 0.002 + Math.random() * spread
  const body = JSON.stringify({ predictions: [Number((base + off).toFixed(6))] })
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

const CHROMIUM = '/usr/bin/chromium'
const hasChromium = existsSync(CHROMIUM)
if (!hasChromium) console.warn(`console test skipped: ${CHROMIUM} is absent (scripts/install-chromium.sh installs it)`)

const TOKEN = '5f2b8e61c0d94a7fb3e1a2c4d6e8f009'

const config = (v1: string, v2: string, v3: string, admin = '') => `evaluation: { interval: 1h }
${admin}
models:
  v1: { url: "${v1}", mlflow: { model: churn, version: 1 } }
  v2: { url: "${v2}" }
  v3: { url: "${v3}" }
routes:
  - name: churn
    path: /churn
    user_id: [header:x-user-id]
    split:
      - { model: v1, weight: 100 }
      - { model: v2, weight: 0 }
    control: v1
    metrics:
      - { name: retained, type: binary, mde: 0.05 }
      - { name: revenue, type: continuous, mde: 1 }
    rollout:
      candidate: v2
      steps: [10, 50, 100]
      step_interval: 1s
      min_requests: 20
    shadow:
      - { model: v3, percent: 100 }
`

/** One prediction per user, each followed by its outcomes (attributed by request id). */
async function traffic(r: RunningRouter, from: number, users: number): Promise<void> {
  for (let i = from; i < from + users; i += 20) {
    await Promise.all(Array.from({ length: Math.min(20, from + users - i) }, async (_, j) => {
      const u = i + j
      const res = await fetch(`${r.url}/churn`, { method: 'POST', headers: { 'x-user-id': `user-${u}`, 'content-type': 'application/json' }, body: '{"x":1}' })
      const id = res.headers.get('x-request-id')
      await res.text()
      const fb = await fetch(`${r.url}/feedback`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify([{ route: 'churn', request_id: id, metric: 'retained', value: u % 3 === 0 ? 1 : 0 }, { route: 'churn', request_id: id, metric: 'revenue', value: u % 7 }]),
      })
      expect(fb.status).toBe(200)
      await fb.text()
    }))
  }
}

async function start(admin = ''): Promise<RunningRouter> {
  const v1 = await upstream(scorer(0.42))
  const v2 = await upstream(scorer(0.47))
  const v3 = await upstream(scorer(0.42, 0.08))
  return router(config(v1.url, v2.url, v3.url, admin))
}

let browser: Browser

async function open(r: RunningRouter): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 })
  onTestFinished(() => context.close())
  const page = await context.newPage()
  const elsewhere: string[] = []
  page.on('request', (req) => { if (!req.url().startsWith(r.adminUrl)) elsewhere.push(req.url()) })
  onTestFinished(() => expect(elsewhere, 'the console reaches nothing but its admin listener').toEqual([]))
  const errors: string[] = []
  page.on('pageerror', (e) => errors.push(String(e)))
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()) })
  onTestFinished(() => expect(errors.filter((e) => !e.includes('401'))).toEqual([]))
  await page.goto(`${r.adminUrl}/`)
  await page.locator('[data-route="churn"]').waitFor()
  return page
}

/** The raw value the page shows for `field` under the given data-* scope. */
const value = (page: Page, scope: string, name: string) => page.locator(`[data-route="churn"] ${scope} [data-field="${name}"]`).first().getAttribute('data-value')

/** Waits for the page's next poll to finish. */
async function nextPoll(page: Page): Promise<void> {
  const n = Number(await page.locator('body').getAttribute('data-polls'))
  // (Polled from here: the page's CSP forbids the string evaluation waitForFunction would use.)
  await expect.poll(async () => Number(await page.locator('body').getAttribute('data-polls')), { timeout: 10_000 }).toBeGreaterThan(n)
}

async function confirmInDialog(page: Page, label: string): Promise<void> {
  const dialog = page.getByRole('dialog')
  await expect.poll(() => dialog.isVisible()).toBe(true)
  await dialog.getByRole('button', { name: label }).click()
}

describe.skipIf(!hasChromium)('the console in a real browser', () => {
  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    })
  }, 60_000)
  afterAll(async () => { await browser?.close() })

  it('is small and self-contained', () => {
    const gz = gzipSync(CONSOLE_HTML).length + gzipSync(CONSOLE_JS).length + gzipSync(CONSOLE_CSS).length
    console.log(`console: ${CONSOLE_HTML.length + CONSOLE_JS.length + CONSOLE_CSS.length} bytes, ${gz} gzipped`)
    expect(gz).toBeLessThan(150 * 1024)
    expect(CONSOLE_HTML + CONSOLE_JS + CONSOLE_CSS).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/)
  })

  it('shows the admin API\'s numbers, follows traffic, and pauses the rollout on a confirmed click', async () => {
    const r = await start()
    await traffic(r, 0, 200)
    const page = await open(r)
    await nextPoll(page)

    const exp = (await (await fetch(`${r.adminUrl}/admin/experiments/churn`)).json()) as { metrics: Record<string, { verdict: string; models: Record<string, { rate?: number; mean?: number; assignments: number }>; comparisons: Record<string, { abs_lift: number; p_value_sequential: number; required_per_arm: number }>; srm: { p_value: number } }> }
    const roll = (await (await fetch(`${r.adminUrl}/admin/rollouts/churn`)).json()) as { state: string; percent: number; effective_shares: Record<string, number> }
    const retained = exp.metrics.retained!
    const revenue = exp.metrics.revenue!
    expect(Number(await value(page, '[data-metric="retained"] [data-model="v1"]', 'rate'))).toBe(retained.models.v1!.rate)
    expect(Number(await value(page, '[data-metric="retained"] [data-model="v2"]', 'rate'))).toBe(retained.models.v2!.rate)
    expect(Number(await value(page, '[data-metric="revenue"] [data-model="v2"]', 'mean'))).toBe(revenue.models.v2!.mean)
    expect(Number(await value(page, '[data-metric="retained"] [data-model="v2"]', 'abs-lift'))).toBe(retained.comparisons.v2!.abs_lift)
    expect(Number(await value(page, '[data-metric="revenue"] [data-model="v2"]', 'p-sequential'))).toBe(revenue.comparisons.v2!.p_value_sequential)
    expect(Number(await value(page, '[data-metric="retained"] [data-model="v2"]', 'required'))).toBe(retained.comparisons.v2!.required_per_arm)
    expect(Number(await value(page, '[data-metric="retained"]', 'srm-p'))).toBe(retained.srm.p_value)
    expect(await value(page, '[data-metric="retained"]', 'verdict')).toBe(retained.verdict)
    expect(await value(page, '[data-section="rollout"]', 'rollout-state')).toBe(roll.state)
    expect(Number(await value(page, '[data-section="rollout"]', 'rollout-percent'))).toBe(roll.percent)
    expect(Number(await value(page, '[data-section="split"] [data-model="v2"]', 'effective-share'))).toBe(roll.effective_shares.v2)
    // Numbers are text, not only attributes.
    const rateText = await page.locator('[data-route="churn"] [data-metric="retained"] [data-model="v1"] [data-field="rate"]').textContent()
    expect(rateText).toBe(`${((retained.models.v1!.rate ?? 0) * 100).toFixed(2)}%`)
    await expect.poll(() => page.locator('[data-route="churn"] [data-section="rollout"] [data-field="rollout-state"]').textContent()).toBe('running')
    // The shadow pair's agreement and drops come from /metrics.
    expect(Number(await value(page, '[data-pair="v1|v3"]', 'compared'))).toBe(retained.models.v1!.assignments)
    expect(await value(page, '[data-shadow="v3"]', 'shadow-dropped')).toBe('0')

    // Traffic moves the numbers; per-model rates come from the difference of two scrapes.
    await traffic(r, 200, 200)
    await expect.poll(async () => Number(await value(page, '[data-metric="retained"] [data-model="v1"]', 'assignments')), { timeout: 10_000 }).toBeGreaterThan(retained.models.v1!.assignments)
    await nextPoll(page)
    const after = (await (await fetch(`${r.adminUrl}/admin/experiments/churn`)).json()) as typeof exp
    expect(Number(await value(page, '[data-metric="retained"] [data-model="v1"]', 'assignments'))).toBe(after.metrics.retained!.models.v1!.assignments)
    expect(Number(await value(page, '[data-metric="retained"] [data-model="v1"]', 'rate'))).toBe(after.metrics.retained!.models.v1!.rate)
    expect(Number(await value(page, '[data-section="models"] [data-model="v1"]', 'requests'))).toBe(after.metrics.retained!.models.v1!.assignments)
    await traffic(r, 400, 100)
    await expect.poll(async () => Number(await value(page, '[data-section="models"] [data-model="v1"]', 'rps')), { timeout: 10_000 }).toBeGreaterThan(0)
    expect(Number(await value(page, '[data-section="models"] [data-model="v1"]', 'p99'))).toBeGreaterThan(0)
    // The MLflow version behind a model is beside its name.
    expect(await page.locator('[data-route="churn"] [data-section="models"] [data-model="v1"] [data-field="model-version"]').textContent()).toBe('churn v1')
    expect(await page.locator('[data-route="churn"] [data-section="models"] [data-model="v2"] [data-field="model-version"]').count()).toBe(0)

    // Cancel does nothing; a confirmed pause pauses.
    const section = page.locator('[data-route="churn"]')
    await section.getByRole('button', { name: 'Pause', exact: true }).click()
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click()
    await expect.poll(() => page.locator('#status').textContent()).toContain('cancelled')
    expect(((await (await fetch(`${r.adminUrl}/admin/rollouts/churn`)).json()) as { state: string }).state).toBe('running')
    await section.getByRole('button', { name: 'Pause', exact: true }).click()
    await confirmInDialog(page, 'Pause churn')
    await expect.poll(() => page.locator('[data-route="churn"] [data-section="rollout"] [data-field="rollout-state"]').textContent(), { timeout: 10_000 }).toBe('paused')
    expect(((await (await fetch(`${r.adminUrl}/admin/rollouts/churn`)).json()) as { state: string }).state).toBe('paused')
    await expect.poll(() => page.locator('#status').textContent()).toContain('Pause churn: done, state paused')
    // The keyboard reaches the actions: Resume is a real, enabled button now.
    const resume = section.getByRole('button', { name: 'Resume', exact: true })
    expect(await resume.isEnabled()).toBe(true)
    await resume.focus()
    await page.keyboard.press('Enter')
    await confirmInDialog(page, 'Resume churn')
    await expect.poll(() => page.locator('[data-route="churn"] [data-section="rollout"] [data-field="rollout-state"]').textContent(), { timeout: 10_000 }).toBe('running')

    // For people to look at: test-results/console.png (docs/console.png, the README's, on request).
    await traffic(r, 500, 100)
    await nextPoll(page)
    await page.evaluate('document.activeElement && document.activeElement.blur()')
    await mkdir('test-results', { recursive: true })
    await page.screenshot({ path: 'test-results/console.png', fullPage: true })
    if (process.env.CONSOLE_SCREENSHOT_DOCS === '1') await page.screenshot({ path: 'docs/console.png', fullPage: true })
  }, 90_000)

  it('with admin.token_file, asks for the token once, keeps it for the tab and acts with it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'modelsplit-console-token-'))
    onTestFinished(() => rm(dir, { recursive: true, force: true }))
    const file = join(dir, 'token')
    await writeFile(file, `${TOKEN}\n`)
    const r = await start(`admin: { token_file: "${file}" }`)
    await traffic(r, 0, 60)
    const page = await open(r)
    const input = page.getByLabel('Bearer token')
    await expect.poll(() => input.isVisible()).toBe(true)
    await input.fill(TOKEN)
    await page.getByRole('button', { name: 'Use token' }).click()
    await expect.poll(() => input.isVisible()).toBe(false)
    expect(await page.evaluate("sessionStorage.getItem('modelsplit-admin-token')")).toBe(TOKEN)
    expect(await page.evaluate('document.cookie')).toBe('')
    await page.locator('[data-route="churn"]').getByRole('button', { name: 'Pause', exact: true }).click()
    await confirmInDialog(page, 'Pause churn')
    await expect.poll(() => page.locator('[data-route="churn"] [data-section="rollout"] [data-field="rollout-state"]').textContent(), { timeout: 10_000 }).toBe('paused')
    // A reload keeps the token (same tab) and does not ask again.
    await page.reload()
    await page.locator('[data-route="churn"]').waitFor()
    await nextPoll(page)
    expect(await input.isVisible()).toBe(false)
    await page.getByRole('button', { name: 'Reload config' }).click()
    await confirmInDialog(page, 'Reload config')
    await expect.poll(() => page.locator('#status').textContent()).toMatch(/Reload config: done \((success|unchanged)\)/)
  }, 90_000)
})
