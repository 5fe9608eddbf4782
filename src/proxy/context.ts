// What the proxy's exchanges share across requests: the process-wide instruments, observer, shadow
// dispatcher, assignment memory and capture budget, built once by the listener and read by every
// exchange (HTTP and gRPC alike).
import type { AssignmentMemory } from '../evaluation/index.js'
import type { Metrics } from '../metrics/index.js'
import type { Observer, ShadowDispatcher } from '../shadow/index.js'
import type { CaptureBudget } from '../upstream/capture.js'
import type { Tracing } from '../tracing/types.js'

/** What every exchange shares: built once by the listener. */
export interface ProxyContext {
  readonly metrics: Metrics
  readonly observer: Observer
  readonly shadows: ShadowDispatcher
  readonly memory: AssignmentMemory
  readonly budget: CaptureBudget
  /** OpenTelemetry traces when `tracing` is configured; null (the default) costs a request one check. */
  tracing: Tracing | null
  isShuttingDown(): boolean
}
