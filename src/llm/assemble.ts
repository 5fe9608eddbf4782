// A finished OpenAI-style answer, streamed or not, put back together: its text, its tool calls
// and its usage. Pure; run off the request path, when both sides of a comparison are in.

export interface ToolCall {
  readonly name: string
  readonly arguments: string
}

export interface AssembledAnswer {
  readonly text: string
  readonly toolCalls: readonly ToolCall[]
  readonly inputTokens: number | null
  readonly outputTokens: number | null
}

type Json = Record<string, unknown>

function obj(v: unknown): Json | null {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v as Json : null
}

class Builder {
  text = ''
  tools: { name: string; arguments: string }[] = []
  input: number | null = null
  output: number | null = null

  usage(u: unknown): void {
    const o = obj(u)
    if (o === null) return
    const i = o.prompt_tokens ?? o.input_tokens
    const out = o.completion_tokens ?? o.output_tokens
    if (typeof i === 'number') this.input = i
    if (typeof out === 'number') this.output = out
  }

  tool(index: number, name: unknown, args: unknown): void {
    const t = (this.tools[index] ??= { name: '', arguments: '' })
    if (typeof name === 'string') t.name += name
    if (typeof args === 'string') t.arguments += args
  }

  /** One chat/completions chunk or whole answer (first choice only: n > 1 is not compared). */
  choice(c: Json, streamed: boolean): void {
    const part = obj(streamed ? c.delta : c.message)
    if (part !== null) {
      if (typeof part.content === 'string') this.text += part.content
      const calls = Array.isArray(part.tool_calls) ? part.tool_calls : []
      calls.forEach((call, k) => {
        const o = obj(call)
        const fn = obj(o?.function)
        this.tool(typeof o?.index === 'number' ? o.index : k, fn?.name, fn?.arguments)
      })
    }
    if (typeof c.text === 'string') this.text += c.text
  }

  /** A data payload of any of the three APIs. */
  payload(p: Json, streamed: boolean): void {
    if (p.usage !== undefined) this.usage(p.usage)
    const choices = Array.isArray(p.choices) ? p.choices : []
    const first = obj(choices[0])
    if (first !== null) this.choice(first, streamed)
    const type = p.type
    if (type === 'response.output_text.delta' && typeof p.delta === 'string') this.text += p.delta
    else if (type === 'response.completed') this.usage(obj(p.response)?.usage)
    else if (!streamed && Array.isArray(p.output)) this.responseOutput(p.output)
  }

  /** The Responses API's non-streamed `output` items. */
  responseOutput(items: unknown[]): void {
    for (const item of items) {
      const o = obj(item)
      if (o?.type === 'message' && Array.isArray(o.content)) {
        for (const c of o.content) {
          const t = obj(c)?.text
          if (typeof t === 'string') this.text += t
        }
      } else if (o?.type === 'function_call') this.tool(this.tools.length, o.name, o.arguments)
    }
  }

  done(): AssembledAnswer {
    return { text: this.text, toolCalls: this.tools.filter((t) => t !== undefined), inputTokens: this.input, outputTokens: this.output }
  }
}

/** The answer in a captured body: SSE when it reads as events, else one JSON document; null if neither. */
export function assembleAnswer(body: Buffer): AssembledAnswer | null {
  const text = body.toString('utf8')
  const b = new Builder()
  if (/^(data|event|:)/.test(text.trimStart())) {
    let events = 0
    for (const line of text.split(/\r\n|\r|\n/)) {
      if (!line.startsWith('data:')) continue
      const data = line.slice(line.charCodeAt(5) === 32 ? 6 : 5)
      if (data === '[DONE]') continue
      let p: unknown
      try {
        p = JSON.parse(data)
      } catch {
        continue // counted by the live reader as malformed; what can be read still is
      }
      const o = obj(p)
      if (o !== null) {
        b.payload(o, true)
        events++
      }
    }
    return events === 0 ? null : b.done()
  }
  let p: unknown
  try {
    p = JSON.parse(text)
  } catch {
    return null
  }
  const o = obj(p)
  if (o === null) return null
  b.payload(o, false)
  return b.done()
}
