// The call both gRPC benches make (bench/grpc.mjs, bench/grpc-tls.mjs): unary ModelInfer with one
// FP32 input of 4 values (raw_input_contents), the answer with one output of 3, and the model
// server's source (a node:http2 server answering every stream with that answer and grpc-status 0).
export const METHOD = '/inference.GRPCInferenceService/ModelInfer'

function ld(n, b) {
  const v = typeof b === 'string' ? Buffer.from(b) : b
  return Buffer.concat([Buffer.from([(n << 3) | 2, v.length]), v])
}
function frame(m) {
  const p = Buffer.alloc(5)
  p.writeUInt32BE(m.length, 1)
  return Buffer.concat([p, m])
}
export const REQUEST = frame(Buffer.concat([ld(1, 'iris'), ld(5, Buffer.concat([ld(1, 'x'), ld(2, 'FP32'), Buffer.from([0x1a, 2, 1, 4])])), ld(7, Buffer.alloc(16, 1))]))
export const ANSWER = frame(Buffer.concat([ld(1, 'iris'), ld(5, Buffer.concat([ld(1, 'y'), ld(2, 'FP32'), Buffer.from([0x1a, 2, 1, 3])])), ld(6, Buffer.alloc(12, 2))]))

/** The model server, as a module's source (run with `node --input-type=module -e`); prints its URL. */
export const MODEL = `
import { createServer } from 'node:http2'
const answer = Buffer.from('${ANSWER.toString('base64')}', 'base64')
const s = createServer()
s.on('stream', (st) => {
  st.on('error', () => {})
  st.resume()
  st.on('end', () => {
    st.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
    st.once('wantTrailers', () => st.sendTrailers({ 'grpc-status': '0' }))
    st.end(answer)
  })
})
s.listen(0, '127.0.0.1', () => console.log('http://127.0.0.1:' + s.address().port))
`
