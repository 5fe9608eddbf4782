import type { RecordingConfig } from '../config/types.js'
import type { RecordSink } from './sink.js'
import { sameSink } from './sinks.js'

/**
 * The record sink the config in force asks for: none until a route records, the same one across
 * reloads that leave `recording` as it was, a new one (the old closed after) when it changes.
 */
export class SinkInForce {
  #sink: RecordSink | undefined
  #config: RecordingConfig | undefined

  /** The sink records go to now; undefined when no route records. */
  get sink(): RecordSink | undefined {
    return this.#sink
  }

  /** The `recording` the sink was opened for; undefined when there is none. */
  get config(): RecordingConfig | undefined {
    return this.#config
  }

  /**
   * Puts the sink for `wanted` in force (undefined: none), opened by `open` before it returns, so no
   * record of the config that asked for it finds no sink; the one it replaces is closed afterwards.
   */
  async use(wanted: RecordingConfig | undefined, open: (recording: RecordingConfig) => RecordSink): Promise<void> {
    if (wanted !== undefined && this.#config !== undefined && sameSink(wanted, this.#config)) return
    const old = this.#sink
    this.#sink = wanted === undefined ? undefined : open(wanted)
    this.#config = wanted
    await old?.close()
  }
}
