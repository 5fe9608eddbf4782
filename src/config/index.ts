export { loadConfig, parseConfig } from './load.js'
export { validateConfig, DEFAULTS } from './schema.js'
export { reloadedFiles, watchFile, watchFiles } from './watch.js'
export type * from './types.js'
