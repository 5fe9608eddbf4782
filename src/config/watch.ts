import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname, resolve } from 'node:path'

/**
 * Calls `onChange` after the file changes. Watches the directory, not the file, because
 * editors and `kubectl`-mounted ConfigMaps replace files by rename, which ends a file watch.
 * Bursts of events (write + rename + chmod) are coalesced into one call.
 */
export function watchFile(file: string, onChange: () => void, debounceMs = 100): { close(): void } {
  const abs = resolve(file)
  const name = basename(abs)
  let timer: NodeJS.Timeout | undefined
  let watcher: FSWatcher | undefined
  try {
    watcher = watch(dirname(abs), { persistent: false }, (_event, changed) => {
      // ConfigMaps swap a `..data` symlink rather than the file itself, so any change
      // whose name we cannot see, or that is not ours, is only ignored when it is clearly another file.
      if (changed !== null && changed !== name && !changed.startsWith('..')) return
      if (timer !== undefined) clearTimeout(timer)
      timer = setTimeout(onChange, debounceMs)
      timer.unref()
    })
  } catch {
    watcher = undefined
  }
  return {
    close() {
      if (timer !== undefined) clearTimeout(timer)
      watcher?.close()
    },
  }
}
