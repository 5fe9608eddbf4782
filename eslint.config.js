// @ts-check
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import globals from 'globals'

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'bench/results/', 'bench/.dist-*/', '.venv*/', '**/.run/', 'clients/python/build/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: { ...globals.node }
    },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-fallthrough': 'error'
    }
  },
  // Arrows point one way (../shared/ARCHITECTURE.md): pure modules import nothing of ours but each
  // other's types, the decision core knows no transport, the offline report never touches the
  // online modules, and nothing but the CLI and the package entry imports the server.
  ...layer(['src/assign/**', 'src/compare/**', 'src/stats/**'], [ours('config', 'plan', 'proxy', 'shadow', 'upstream', 'record', 'evaluation', 'metrics', 'admin', 'report', 'cli', 'server', 'errors')], []),
  ...layer(['src/plan/**'], [ours('proxy', 'shadow', 'upstream', 'record', 'evaluation', 'metrics', 'admin', 'report', 'cli', 'server')], ['fastify', 'node:http', 'undici']),
  ...layer(['src/report/**'], [ours('proxy', 'shadow', 'upstream', 'metrics', 'admin', 'server', 'cli', 'plan')], ['fastify', 'undici', 'node:http']),
  ...layer(['src/upstream/**', 'src/record/**', 'src/metrics/**'], [ours('proxy', 'shadow', 'evaluation', 'admin', 'report', 'cli', 'server')], ['fastify']),
  // The OpenAI answer reader is called by the exchange, never the other way round.
  // (judge.ts calls the judge model itself, through undici: side work, off the request path.)
  ...layer(['src/llm/sse.ts', 'src/llm/request.ts', 'src/llm/assemble.ts', 'src/llm/answer.ts', 'src/llm/observe.ts', 'src/llm/encoded.ts'], [ours('proxy', 'shadow', 'upstream', 'record', 'evaluation', 'admin', 'report', 'cli', 'server')], ['fastify', 'node:http', 'undici']),
  ...layer(['src/llm/judge.ts'], [ours('proxy', 'shadow', 'upstream', 'record', 'evaluation', 'admin', 'report', 'cli', 'server')], ['fastify', 'node:http']),
  // MLflow is reached from timers and decisions, never from a request: no transport of ours.
  ...layer(['src/mlflow/**'], [ours('admin', 'report', 'cli', 'server', 'shadow', 'upstream')], ['fastify', 'node:http']),
  ...layer(['src/shadow/**', 'src/proxy/**', 'src/evaluation/**', 'src/config/**', 'src/admin/**'], [ours('server', 'cli')], []),
)

/** `../NAME` and `../NAME/*` for each folder or file of src/ named. */
function ours(...names) {
  return names.flatMap((n) => [`../${n}`, `../${n}.js`, `../${n}/*`])
}

/** A no-restricted-imports rule for files under `files`: value imports only (types may cross). */
function layer(files, groups, packages) {
  return [{
    files,
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', {
        patterns: groups.map((group) => ({ group, allowTypeImports: true, message: 'this import points against the layering in ../shared/ARCHITECTURE.md' })),
        paths: packages.map((name) => ({ name, allowTypeImports: true, message: 'this module stays transport-free' })),
      }],
    },
  }]
}
