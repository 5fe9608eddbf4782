// deploy/kubernetes: every manifest validated against the Kubernetes API schemas
// (kubernetes-models, and @kubernetes-models/prometheus-operator for the ServiceMonitor), with
// unknown fields refused through the same package's types; kustomize's rendering (kubectl's,
// where kubectl is installed) equal to the files; the manifests consistent with each other and
// with the router's config, which `modelsplit validate` accepts. Then a ConfigMap update as the
// kubelet makes it on disk (the `..data` symlink swap), reloaded by a running router.
import { execFile, spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, posix } from 'node:path'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import yaml from 'js-yaml'
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap'
import { Service } from 'kubernetes-models/v1/Service'
import { Deployment, type IDeployment } from 'kubernetes-models/apps/v1/Deployment'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler'
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { compile } from '../src/plan/index.js'
import { DecisionEngine } from '../src/decisions/engine.js'
import { buildServer, type Router } from '../src/server.js'
import { parseMetrics } from './helpers/router.js'
import { startUpstream, jsonEcho, type Upstream } from './helpers/upstream.js'

const run = promisify(execFile)
const TOKEN = '7c4a8d09ca3762af61e59520943dc264'
const root = fileURLToPath(new URL('..', import.meta.url))
const dir = join(root, 'deploy/kubernetes')
const kubectl = spawnSync('sh', ['-c', 'command -v kubectl'], { encoding: 'utf8' }).stdout.trim()

interface Manifest { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; [k: string]: unknown }

/** Each kind we ship: its model (whose validate() checks the API schema) and the type of its body. */
const kinds: Record<string, { model: new (data: never) => { validate(): void }; type: string; from: string }> = {
  'v1/ConfigMap': { model: ConfigMap, type: 'IConfigMap', from: 'kubernetes-models/v1/ConfigMap' },
  'v1/Service': { model: Service, type: 'IService', from: 'kubernetes-models/v1/Service' },
  'apps/v1/Deployment': { model: Deployment, type: 'IDeployment', from: 'kubernetes-models/apps/v1/Deployment' },
  'policy/v1/PodDisruptionBudget': { model: PodDisruptionBudget, type: 'IPodDisruptionBudget', from: 'kubernetes-models/policy/v1/PodDisruptionBudget' },
  'autoscaling/v2/HorizontalPodAutoscaler': { model: HorizontalPodAutoscaler, type: 'IHorizontalPodAutoscaler', from: 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler' },
  'monitoring.coreos.com/v1/ServiceMonitor': { model: ServiceMonitor, type: 'IServiceMonitor', from: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor' },
}

interface Loaded { file: string; doc: Manifest }
let kustomization: { resources: string[]; images?: { name: string; newName: string; newTag: string }[]; labels?: { pairs: Record<string, string> }[] }
let manifests: Loaded[]

beforeAll(async () => {
  kustomization = yaml.load(await readFile(join(dir, 'kustomization.yaml'), 'utf8')) as typeof kustomization
  manifests = []
  for (const file of kustomization.resources) {
    for (const doc of yaml.loadAll(await readFile(join(dir, file), 'utf8'))) if (doc !== null) manifests.push({ file, doc: doc as Manifest })
  }
})

const one = <T = Manifest>(kind: string): T => {
  const found = manifests.filter((m) => m.doc.kind === kind)
  expect(found, kind).toHaveLength(1)
  return (found[0] as Loaded).doc as T
}

describe('deploy/kubernetes manifests', () => {
  it('lists every manifest of the directory in kustomization.yaml, each of a kind we validate', async () => {
    const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort()
    expect([...kustomization.resources].sort()).toEqual(files)
    expect(manifests.map((m) => m.doc.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'Service', 'ServiceMonitor'])
  })

  it('validates each against the Kubernetes API schemas (and the operator\'s for the ServiceMonitor)', () => {
    for (const { file, doc } of manifests) {
      const k = kinds[`${doc.apiVersion}/${doc.kind}`]
      expect(k, `${file}: ${doc.apiVersion} ${doc.kind}`).toBeDefined()
      expect(() => new (k as NonNullable<typeof k>).model(doc as never).validate(), file).not.toThrow()
    }
    // The schemas do catch a mistake: a port by a name instead of a number, a probe without a handler's fields.
    const bad = structuredClone(one<IDeployment>('Deployment'))
    const c = bad.spec?.template.spec?.containers[0] as { ports: { containerPort: unknown }[] }
    ;(c.ports[0] as { containerPort: unknown }).containerPort = 'http'
    expect(() => new Deployment(bad).validate()).toThrow(/containerPort must be integer/)
  })

  it('has no field the API does not know (checked by tsc against the package\'s types, as `kubectl --validate=strict` would)', async () => {
    // The JSON schemas allow unknown properties, so a misspelt `readinesProbe` would pass them and
    // be dropped by the API server. The package's TypeScript types are closed: an object literal
    // with an unknown key anywhere in it does not compile.
    const tmp = await mkdtemp(join(root, 'node_modules/.cache-modelsplit-k8s-'))
    try {
      const source = (docs: Manifest[], prefix: string): string => docs.map((doc, i) => {
        const k = kinds[`${doc.apiVersion}/${doc.kind}`] as NonNullable<(typeof kinds)[string]>
        return `import type { ${k.type} as ${prefix}T${i} } from '${k.from}'\nexport const ${prefix}${i}: ${prefix}T${i} = ${JSON.stringify(doc, null, 2)}\n`
      }).join('\n')
      const docs = manifests.map((m) => m.doc)
      // One compile (tsc takes seconds) of the manifests and of a copy with a misspelt field,
      // which shows the check refuses one: that must be the only error.
      const typo = structuredClone(docs)
      const dep = typo.find((d) => d.kind === 'Deployment') as unknown as { spec: { template: { spec: { containers: Record<string, unknown>[] } } } }
      const container = dep.spec.template.spec.containers[0] as Record<string, unknown>
      container.readinesProbe = container.readinessProbe
      delete container.readinessProbe
      const file = join(tmp, 'manifests.mts')
      await writeFile(file, `${source(docs, 'm')}\n// a copy with a misspelt field\n${source(typo, 'typo')}`)
      const r = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', file], { encoding: 'utf8', cwd: root })
      const errors = (r.stdout + r.stderr).split('\n').filter((l) => /error TS/.test(l))
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatch(/known properties, and '"readinesProbe"' does not exist in type 'IContainer'/)
      // …and it is in the copy, not in the manifests.
      const line = Number(/\((\d+),\d+\)/.exec(errors[0] as string)?.[1])
      const text = await readFile(file, 'utf8')
      expect(line).toBeGreaterThan(text.slice(0, text.indexOf('// a copy with a misspelt field')).split('\n').length)
    } finally {
      await rm(tmp, { recursive: true, force: true })
    }
  }, 30_000)

  it.skipIf(kubectl === '')('renders with kustomize (kubectl kustomize) to the same objects, labelled, with the image set', async () => {
    const { stdout } = await run(kubectl, ['kustomize', dir], { timeout: 20_000 })
    const rendered = yaml.loadAll(stdout) as Manifest[]
    expect(rendered).toHaveLength(manifests.length)
    const image = kustomization.images?.[0] as { name: string; newName: string; newTag: string }
    for (const r of rendered) {
      const k = kinds[`${r.apiVersion}/${r.kind}`]
      expect(() => new (k as NonNullable<typeof k>).model(r as never).validate(), r.kind).not.toThrow()
      // kubectl reads YAML 1.1 and the test js-yaml's 1.2: equal objects mean no value (an
      // octal mode, a `yes`, a time) is read differently by the two.
      const source = structuredClone(manifests.find((m) => m.doc.kind === r.kind && m.doc.metadata.name === r.metadata.name)?.doc) as Manifest
      expect(source, `${r.kind}/${r.metadata.name}`).toBeDefined()
      source.metadata.labels = { ...source.metadata.labels, ...kustomization.labels?.[0]?.pairs }
      if (r.kind === 'Deployment') {
        const containers = (source as unknown as IDeployment).spec?.template.spec?.containers ?? []
        for (const c of containers) if (c.image === image.name) c.image = `${image.newName}:${image.newTag}`
      }
      expect(r).toEqual(source)
    }
  })

  describe('consistent with each other and with the router', () => {
    const configPath = (d: IDeployment): string => {
      const args = d.spec?.template.spec?.containers[0]?.args ?? []
      return args[args.indexOf('--config') + 1] as string
    }
    const configMapYaml = (): string => (one<{ data: Record<string, string> }>('ConfigMap')).data['router.yaml'] as string
    const secretMount = (): string => {
      const d = one<IDeployment>('Deployment')
      const volume = d.spec?.template.spec?.volumes?.find((v) => v.secret?.secretName === 'modelsplit-admin-token')
      return d.spec?.template.spec?.containers[0]?.volumeMounts?.find((m) => m.name === volume?.name)?.mountPath as string
    }
    // The router reads admin.token_file at compile: here the Secret is a directory with a token
    // in it, as the kubelet mounts it, at a temporary path instead of the pod's.
    let secretDir: string
    beforeAll(async () => {
      secretDir = await mkdtemp(join(tmpdir(), 'modelsplit-k8s-secret-'))
      await writeFile(join(secretDir, 'token'), `${TOKEN}\n`)
    })
    afterAll(() => rm(secretDir, { recursive: true, force: true }))
    const routerYaml = (): string => configMapYaml().replaceAll(`${secretMount()}/`, `${secretDir}/`)

    it('holds a router.yaml that `modelsplit validate` accepts', async () => {
      const tmp = await mkdtemp(join(tmpdir(), 'modelsplit-k8s-'))
      try {
        await writeFile(join(tmp, 'router.yaml'), routerYaml())
        const { stdout } = await run(process.execPath, [join(root, 'dist/cli/main.js'), 'validate', join(tmp, 'router.yaml')])
        expect(stdout).toMatch(/router\.yaml: ok/)
      } finally {
        await rm(tmp, { recursive: true, force: true })
      }
    })

    it('wires the pods, Service, ServiceMonitor, PDB and HPA together by labels, names and ports', () => {
      const d = one<IDeployment>('Deployment')
      const pod = d.spec?.template
      const podLabels = pod?.metadata?.labels ?? {}
      const matches = (sel: Record<string, string> | undefined): boolean =>
        sel !== undefined && Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => podLabels[k] === v)
      expect(matches(d.spec?.selector.matchLabels)).toBe(true)
      const svc = one<{ metadata: { labels: Record<string, string> }; spec: { selector: Record<string, string>; ports: { name: string; port: number; targetPort: string }[] } }>('Service')
      expect(matches(svc.spec.selector)).toBe(true)
      expect(matches(one<{ spec: { selector: { matchLabels: Record<string, string> } } }>('PodDisruptionBudget').spec.selector.matchLabels)).toBe(true)
      for (const c of pod?.spec?.topologySpreadConstraints ?? []) expect(matches(c.labelSelector?.matchLabels)).toBe(true)
      const sm = one<{ spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string; interval: string }[] } }>('ServiceMonitor')
      expect(Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => svc.metadata.labels[k] === v)).toBe(true)
      const hpa = one<{ spec: { scaleTargetRef: { apiVersion: string; kind: string; name: string }; minReplicas: number } }>('HorizontalPodAutoscaler')
      expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: d.metadata?.name })
      expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2) // with the PDB, a drain never takes the last one
      expect(d.spec?.replicas).toBeUndefined() // the HPA owns it

      const container = pod?.spec?.containers[0]
      const ports = Object.fromEntries((container?.ports ?? []).map((p) => [p.name, p.containerPort]))
      for (const p of svc.spec.ports) expect(ports[p.targetPort], p.name).toBeDefined()
      expect(svc.spec.ports.map((p) => p.name).sort()).toEqual(['admin', 'http'])
      expect(sm.spec.endpoints.map((e) => [e.port, e.path])).toEqual([['admin', '/metrics']])

      const r = compile(routerYaml(), configPath(d))
      if (!r.ok) throw new Error(JSON.stringify(r.problems))
      const cfg = r.plan.config
      expect(ports.http).toBe(cfg.listen.port)
      expect(ports.admin).toBe(cfg.admin.port)
      expect(cfg.listen.host).toBe('0.0.0.0')
      expect(cfg.admin.host).toBe('0.0.0.0') // the kubelet probes the pod's IP, Prometheus scrapes it
      expect(container?.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', port: 'admin' })
      expect(container?.livenessProbe?.httpGet).toMatchObject({ path: '/healthz', port: 'admin' })
      // Decisions from Prometheus wait one scrape interval: the ServiceMonitor's.
      const interval = sm.spec.endpoints[0]?.interval as string
      expect(Number(/^(\d+)s$/.exec(interval)?.[1]) * 1000).toBe(cfg.evaluation.prometheus?.scrape_interval_ms)
    })

    it('runs non-root on a read-only root filesystem, with everything the router writes on a writable volume of the right size', () => {
      const d = one<IDeployment>('Deployment')
      const spec = d.spec?.template.spec
      const container = spec?.containers[0]
      expect(spec?.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 })
      expect(container?.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, runAsNonRoot: true, capabilities: { drop: ['ALL'] } })
      expect(container?.resources?.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) })
      expect(container?.resources?.limits).toMatchObject({ memory: expect.any(String) })

      const volumes = new Map((spec?.volumes ?? []).map((v) => [v.name, v]))
      const mounts = container?.volumeMounts ?? []
      for (const m of mounts) expect(volumes.has(m.name), m.name).toBe(true)
      const mountOf = (name: string) => mounts.find((m) => m.name === name)
      // The ConfigMap on a directory of its own, as --config names it; not subPath (never updated).
      const cfgVolume = [...volumes.values()].find((v) => v.configMap !== undefined)
      expect(cfgVolume?.configMap?.name).toBe(one('ConfigMap').metadata.name)
      const cfgMount = mountOf(cfgVolume?.name as string)
      expect(cfgMount?.subPath).toBeUndefined()
      expect(posix.join(cfgMount?.mountPath as string, 'router.yaml')).toBe(configPath(d))
      // The admin token Secret: required, so a pod without it waits instead of failing to start.
      const token = [...volumes.values()].find((v) => v.secret !== undefined)
      expect(token?.secret).toMatchObject({ secretName: 'modelsplit-admin-token', optional: false })
      expect(mountOf(token?.name as string)).toMatchObject({ mountPath: '/etc/modelsplit/secrets', readOnly: true })

      const r = compile(routerYaml(), configPath(d))
      if (!r.ok) throw new Error(JSON.stringify(r.problems))
      const rec = r.plan.config.recording
      const writable = mounts.filter((m) => m.readOnly !== true && volumes.get(m.name)?.emptyDir !== undefined)
      const volumeFor = (path: string) => {
        const m = writable.find((w) => path.startsWith(`${w.mountPath}/`))
        expect(m, `${path} is on no writable volume`).toBeDefined()
        return volumes.get(m?.name as string)?.emptyDir
      }
      const bytes = (q: string | undefined): number => {
        const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(q ?? '')
        if (m === null) throw new Error(`quantity ${q}`)
        return Number(m[1]) * ({ Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }[m[2] as 'Ki'] ?? 1)
      }
      const records = volumeFor(rec.path)
      expect(bytes(records?.sizeLimit as string)).toBeGreaterThanOrEqual(rec.max_bytes * (rec.keep + 1))
      const spool = volumeFor(posix.join(rec.spool.path, 'x'))
      expect(bytes(spool?.sizeLimit as string)).toBeGreaterThanOrEqual(rec.spool.max_bytes)
      volumeFor(DecisionEngine.stateFileFor(r.plan)) // decisions.json, beside the records
    })

    it('gives the pod time for preStop, the drain (shutdown_timeout_ms) and the sink\'s flush before SIGKILL', () => {
      const d = one<IDeployment>('Deployment')
      const spec = d.spec?.template.spec
      const command = spec?.containers[0]?.lifecycle?.preStop?.exec?.command ?? []
      expect(command[0]).toBe('sleep')
      const preStop = Number(command[1])
      expect(preStop).toBeGreaterThanOrEqual(3) // long enough for endpoints to drop the pod
      const r = compile(routerYaml(), configPath(d))
      if (!r.ok) throw new Error(JSON.stringify(r.problems))
      const t = r.plan.config.shutdown_timeout_ms / 1000
      // preStop, then the drain (up to t), 2 s for the last records, the sink's flush (up to t).
      const needed = preStop + t + 2 + t
      expect(spec?.terminationGracePeriodSeconds).toBeGreaterThan(needed)
      expect(spec?.terminationGracePeriodSeconds).toBeLessThanOrEqual(needed + 10)
    })

    it('runs the admin API with the token from the Secret, not insecure, and says so', async () => {
      const cfg = yaml.load(configMapYaml()) as { admin: { host: string; port: number; token_file?: string; insecure?: boolean; protect_metrics?: boolean } }
      expect(cfg.admin.insecure ?? false).toBe(false)
      // The key `kubectl create secret generic modelsplit-admin-token --from-file=token=…` makes.
      expect(cfg.admin.token_file).toBe(posix.join(secretMount(), 'token'))
      for (const file of ['deployment.yaml', 'configmap.yaml', 'service.yaml', 'kustomization.yaml']) {
        const text = await readFile(join(dir, file), 'utf8')
        expect(text, file).not.toMatch(/not read it yet|no authentication yet|insecure: true/)
      }
      const howTo = 'kubectl create secret generic modelsplit-admin-token --from-file=token='
      expect(await readFile(join(dir, 'kustomization.yaml'), 'utf8')).toContain(howTo)
      const readme = await readFile(join(root, 'README.md'), 'utf8')
      const k8s = readme.slice(readme.indexOf('## Running on Kubernetes'), readme.indexOf('\n## ', readme.indexOf('## Running on Kubernetes') + 1))
      expect(k8s).toContain(howTo)
      expect(k8s).not.toMatch(/does not read it yet|no authentication yet/)

      // A router with the example's admin block: the kubelet's probes and the ServiceMonitor's
      // scrape get in without the token; the admin API only with it.
      const u = await startUpstream(jsonEcho('m'))
      const tmp = await mkdtemp(join(tmpdir(), 'modelsplit-k8s-admin-'))
      const adminBlock = /^admin: .*$/m.exec(routerYaml())?.[0] as string
      await writeFile(join(tmp, 'router.yaml'), `${adminBlock}\nmodels:\n  m: { url: "${u.url}" }\nroutes:\n  - { name: r, path: /r, split: [{ model: m, weight: 1 }] }\n`)
      const r = await buildServer({ configFile: join(tmp, 'router.yaml'), watch: false, defaultMetrics: false })
      try {
        const { adminUrl } = await r.listen({ host: '127.0.0.1', port: 0, adminHost: '127.0.0.1', adminPort: 0 })
        const d = one<IDeployment>('Deployment').spec?.template.spec?.containers[0]
        const sm = one<{ spec: { endpoints: { path: string }[] } }>('ServiceMonitor')
        for (const path of [d?.readinessProbe?.httpGet?.path, d?.livenessProbe?.httpGet?.path, sm.spec.endpoints[0]?.path]) {
          expect((await fetch(`${adminUrl}${path}`)).status, path).toBe(200)
        }
        const auth = { authorization: `Bearer ${TOKEN}` }
        expect((await fetch(`${adminUrl}/admin/config`)).status).toBe(401)
        expect((await fetch(`${adminUrl}/admin/reload`, { method: 'POST' })).status).toBe(401)
        expect((await fetch(`${adminUrl}/admin/config`, { headers: auth })).status).toBe(200)
        expect((await fetch(`${adminUrl}/admin/reload`, { method: 'POST', headers: auth })).status).toBe(200)
      } finally {
        await r.close()
        await u.close()
        await rm(tmp, { recursive: true, force: true })
      }
    })
  })
})

describe('a ConfigMap update on disk (the kubelet\'s `..data` symlink swap)', () => {
  let v1: Upstream
  let v2: Upstream
  let router: Router | undefined
  let cmDir: string
  beforeAll(async () => {
    v1 = await startUpstream(jsonEcho('v1'))
    v2 = await startUpstream(jsonEcho('v2'))
  })
  afterAll(async () => {
    await router?.close()
    await v1?.close()
    await v2?.close()
    if (cmDir !== undefined) await rm(cmDir, { recursive: true, force: true })
  })

  const config = (w1: number, w2: number): string => `models:
  v1: { url: "${v1.url}" }
  v2: { url: "${v2.url}" }
routes:
  - name: churn
    path: /models/churn
    split: [{ model: v1, weight: ${w1} }, { model: v2, weight: ${w2} }]
`
  /** What the kubelet's atomic writer does: a new timestamped directory, `..data_tmp` renamed over `..data`, the old one removed. */
  async function kubeletUpdate(dirName: string, text: string, old: string | undefined): Promise<void> {
    await mkdir(join(cmDir, dirName))
    await writeFile(join(cmDir, dirName, 'router.yaml'), text)
    await symlink(dirName, join(cmDir, '..data_tmp'))
    await rename(join(cmDir, '..data_tmp'), join(cmDir, '..data'))
    if (old !== undefined) await rm(join(cmDir, old), { recursive: true })
  }
  const models = async (url: string): Promise<Record<string, number>> => {
    const seen: Record<string, number> = {}
    await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      const res = await fetch(`${url}/models/churn`, { headers: { 'x-user-id': `user-${i}` } })
      await res.arrayBuffer()
      const m = res.headers.get('x-modelsplit-model') as string
      seen[m] = (seen[m] ?? 0) + 1
    }))
    return seen
  }

  it('is seen by a running router\'s watch: the new config applies; a bad one is refused and the last good one kept', async () => {
    cmDir = await mkdtemp(join(tmpdir(), 'modelsplit-configmap-'))
    // As mounted: ..2026_11_30_…/router.yaml, ..data -> ..2026_11_30_…, router.yaml -> ..data/router.yaml
    await kubeletUpdate('..2026_11_30_10_00_00.123456789', config(100, 0), undefined)
    await symlink('..data/router.yaml', join(cmDir, 'router.yaml'))
    const configFile = join(cmDir, 'router.yaml')
    router = await buildServer({ configFile, watch: true, defaultMetrics: false })
    const { url, adminUrl } = await router.listen({ host: '127.0.0.1', port: 0, adminHost: '127.0.0.1', adminPort: 0 })
    const admin = async (): Promise<{ sha256: string; file: string }> => (await fetch(`${adminUrl}/admin/config`)).json() as Promise<{ sha256: string; file: string }>
    const reloads = async (): Promise<Map<string, number>> => parseMetrics(await (await fetch(`${adminUrl}/metrics`)).text())

    const first = await admin()
    expect(first.file).toBe(configFile)
    expect(await models(url)).toEqual({ v1: 50 })

    await kubeletUpdate('..2026_11_30_10_05_00.234567891', config(0, 100), '..2026_11_30_10_00_00.123456789')
    await vi.waitFor(async () => expect((await admin()).sha256).not.toBe(first.sha256), { timeout: 5000, interval: 50 })
    expect(await models(url)).toEqual({ v2: 50 })
    const second = await admin()
    expect((await reloads()).get('modelsplit_config_reloads_total{result="success"}')).toBe(1)

    // A broken edit reaches the pod the same way: refused, counted, the last good config serves on.
    await kubeletUpdate('..2026_11_30_10_10_00.345678912', 'routes: [', '..2026_11_30_10_05_00.234567891')
    await vi.waitFor(async () => expect((await reloads()).get('modelsplit_config_reloads_total{result="failure"}')).toBe(1), { timeout: 5000, interval: 50 })
    expect((await admin()).sha256).toBe(second.sha256)
    expect(await models(url)).toEqual({ v2: 50 })

    // The fix, another swap later: applied.
    await kubeletUpdate('..2026_11_30_10_15_00.456789123', config(50, 50), '..2026_11_30_10_10_00.345678912')
    await vi.waitFor(async () => expect((await reloads()).get('modelsplit_config_reloads_total{result="success"}')).toBe(2), { timeout: 5000, interval: 50 })
    const mixed = await models(url)
    expect((mixed.v1 ?? 0) + (mixed.v2 ?? 0)).toBe(50)
    expect(mixed.v1).toBeGreaterThan(10)
    expect(mixed.v2).toBeGreaterThan(10)
    // Only the kubelet's files are left: the old timestamped directories went, the links point at the new one.
    expect((await readdir(cmDir)).sort()).toEqual(['..2026_11_30_10_15_00.456789123', '..data', 'router.yaml'])
  }, 30_000)
})
