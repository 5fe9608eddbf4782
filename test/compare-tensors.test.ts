// The tensor comparator against golden vectors from scripts/tensor_reference.py: messages encoded
// there by hand, values from numpy's dtypes, agreement from numpy.isclose and numpy.argmax.
import { describe, expect, it } from 'vitest'
import { compareTensors, decodeInferResponse, decodePredictResponse, halfToNumber, tensorsFromJson, type Tensor } from '../src/compare/index.js'
import fixture from './fixtures/compare-tensors.json' with { type: 'json' }

type Case = (typeof fixture.cases)[number]

function decode(c: Case, side: 'primary' | 'shadow'): Tensor[] {
  const v = c[side]
  if (c.format === 'rest') return tensorsFromJson(v)
  const bytes = Buffer.from(v as string, 'base64')
  return c.format === 'tf' ? decodePredictResponse(bytes) : decodeInferResponse(bytes)
}

describe('tensor answers decoded as numpy wrote them', () => {
  it.each(fixture.cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const tensors = decode(c, 'primary')
    expect(tensors.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape }))).toEqual(c.decoded.map((d) => ({ name: d.name, datatype: d.datatype, shape: d.shape })))
    tensors.forEach((t, i) => {
      const want = (c.decoded[i] as Case['decoded'][number]).values
      const got = t.data.values.map((v) => Buffer.isBuffer(v) ? v.toString('latin1') : v)
      expect(got).toHaveLength(want.length)
      got.forEach((v, k) => {
        const w = want[k] as string
        if (typeof v === 'bigint') expect(String(v)).toBe(w)
        else if (typeof v === 'string') expect(v).toBe(w)
        else if (w === 'nan') expect(v).toBeNaN()
        else expect(v).toBe(w === 'inf' ? Infinity : w === '-inf' ? -Infinity : Number(w))
      })
    })
  })
})

describe('tensor comparison equals numpy.isclose per instance', () => {
  it.each(fixture.cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const r = compareTensors(decode(c, 'primary'), decode(c, 'shadow'), { atol: c.atol, rtol: c.rtol })
    const e = c.expected
    expect(r.agree).toBe(e.agree)
    expect(r.compared).toBe(e.compared)
    expect(r.fraction_agree).toBeCloseTo(e.fraction_agree, 12)
    if (e.abs_diff_max === null) expect(r.abs_diff_max).toBeNull()
    else expect(r.abs_diff_max).toBeCloseTo(e.abs_diff_max, 12)
    const outs = [...r.outputs].sort((a, b) => a.name.localeCompare(b.name))
    const want = [...e.outputs].sort((a, b) => a.name.localeCompare(b.name))
    expect(outs.map(({ absDiffMax: _, ...rest }) => rest)).toEqual(want)
  })

  it('the same answers agree alike over OIP gRPC (raw and typed) and REST JSON', () => {
    const same = fixture.cases.filter((c) => c.name.startsWith('FP32 probabilities'))
    expect(same).toHaveLength(3)
    const results = same.map((c) => compareTensors(decode(c, 'primary'), decode(c, 'shadow'), { atol: c.atol, rtol: c.rtol }))
    for (const r of results) expect(r).toEqual(results[0])
  })

  it('refuses contents that do not fill the shape, with the output named', () => {
    const json = { outputs: [{ name: 'y', datatype: 'FP32', shape: [2, 2], data: [1, 2, 3] }] }
    expect(() => tensorsFromJson(json)).toThrow('output "y": shape [2, 2] holds 4 elements, its contents 3')
    expect(() => decodeInferResponse(Buffer.from([0x2a, 0x05, 0x0a]))).toThrow(/runs past the end/)
  })

  it('reads FP16 subnormals, infinities and NaN as IEEE 754 binary16', () => {
    expect(halfToNumber(0x0001)).toBe(2 ** -24)
    expect(halfToNumber(0x7bff)).toBe(65504)
    expect(halfToNumber(0xfc00)).toBe(-Infinity)
    expect(halfToNumber(0x7e00)).toBeNaN()
  })
})
