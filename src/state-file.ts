import { readFileSync } from 'node:fs'
import { mkdir, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'

/**
 * A small state file a module keeps beside the records (decisions.json, registry.json): read once
 * at start, written atomically (a temp file, then a rename over the old one), one write at a time
 * and in order. A write that fails is reported, never thrown: the state in memory is what counts.
 */
export class StateFile {
  #saving: Promise<void> = Promise.resolve()

  constructor(readonly path: string, readonly onError: (message: string) => void) {}

  /** The file's text, or undefined when there is none yet (or it cannot be read). */
  read(): string | undefined {
    try {
      return readFileSync(this.path, 'utf8')
    } catch {
      return undefined
    }
  }

  /** Replaces the file's content; resolves once this and every earlier write are done. */
  save(body: string): Promise<void> {
    this.#saving = this.#saving.then(async () => {
      try {
        await mkdir(dirname(this.path), { recursive: true })
        const tmp = `${this.path}.${process.pid}.tmp`
        await writeFile(tmp, body)
        await rename(tmp, this.path)
      } catch (err) {
        this.onError(`cannot save ${this.path}: ${(err as Error).message}`)
      }
    })
    return this.#saving
  }
}
