import { defineConfig } from 'vitest/config'

// The tests against a real Kafka broker (a JVM on the same two cores) run on their own, after the
// rest, so the broker's load does not skew the timing checks of other files.
export default defineConfig({
  test: {
    include: ['test/kafka-sink.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    reporters: ['default', './test/helpers/summary-reporter.ts'],
  },
})
