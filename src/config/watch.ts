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

/**
 * Calls `onChange` after any of `files` changes: the config file and the files a reload reads
 * again (the gRPC listener's certificate, key and CA), so a renewal written by certbot or
 * cert-manager reloads like an edit. `follow` changes the list to what the config in force names.
 */
export function watchFiles(files: readonly string[], onChange: () => void, debounceMs = 100): { follow(files: readonly string[]): void; close(): void } {
  const watching = new Map<string, { close(): void }>()
  const follow = (wanted: readonly string[]): void => {
    const abs = new Set(wanted.map((f) => resolve(f)))
    for (const [file, w] of watching) {
      if (abs.has(file)) continue
      w.close()
      watching.delete(file)
    }
    for (const file of abs) if (!watching.has(file)) watching.set(file, watchFile(file, onChange, debounceMs))
  }
  follow(files)
  return {
    follow,
    close() {
      for (const w of watching.values()) w.close()
      watching.clear()
    },
  }
}

/** The files of a config a reload reads again besides the config file itself: the gRPC listener's TLS files. */
export function reloadedFiles(config: { readonly listen: { readonly grpc?: { readonly tls?: { readonly cert_file: string; readonly key_file: string; readonly ca_file?: string } } } }): string[] {
  const tls = config.listen.grpc?.tls
  if (tls === undefined) return []
  return tls.ca_file === undefined ? [tls.cert_file, tls.key_file] : [tls.cert_file, tls.key_file, tls.ca_file]
}
