export { loadConfig, parseConfig } from './load.js'
export { validateConfig, DEFAULTS } from './schema.js'
export { watchFile } from './watch.js'
export type * from './types.js'
