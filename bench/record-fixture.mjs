// The bench's /rec record as record-cost.mjs and record-loop.mjs make it without HTTP: the route
// (no shadow, `record: true`, inputs, `prediction: auto`), the request's body and the model's
// answer, and one request's observation, from begin to the primary's answer.
export const ANSWER = '{"predictions":[0.96],"model":"model_a","n":8}'

/**
 * `one(i)` records request i through `observer` (of the build in `dist`), with the answer's text
 * `answerText`; the latency moves with `i` when `varyLatency`, so its digits are not all the same.
 */
export async function recordOne(dist, observer, budget, { answerText = ANSWER, varyLatency = false } = {}) {
  const { Capture } = await import(`${dist}/upstream/capture.js`)
  const route = {
    name: 'rec',
    plan: { isOpenAi: false, config: { grpc: null, compare: {} }, prediction: 'auto', record: true, includeInputs: true, compare: {}, judge: null },
    targets: [{ model: 'model_a', registry: null, price: null }, { model: 'model_b', registry: null, price: null }],
    assigner: { models: ['model_a', 'model_b'], shares: [0.5, 0.5] },
  }
  const input = Buffer.from(JSON.stringify({ features: [0.12, 3.4, 5.6, 7.8, 0.91, 2, 1, 0] }))
  const answer = Buffer.from(answerText)
  return (i) => {
    const obs = observer.begin(route, `4c65904f-0000-4000-8000-${String(i).padStart(12, '0')}`, `user-${i & 255}`, 'hash', input, false)
    obs.hold()
    const capture = new Capture()
    capture.expect(answer.length)
    capture.add(answer, 1 << 20, budget)
    obs.release()
    obs.primaryDone('model_a', 200, varyLatency ? 1.234567 + (i & 1023) / 1000 : 1.234567, capture.body(), null, capture)
  }
}
