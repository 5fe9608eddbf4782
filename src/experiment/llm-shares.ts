// An LLM route's arms side by side: each arm's share of the requests, of the tokens and of the
// cost. A 5 % request share can be a very different token or cost share (a model that writes
// longer answers, or costs more per token), and that is what a ramp spends. Pure.

/** One arm's served totals (what users got, shadows apart). */
export interface LlmArmCounts {
  readonly model: string
  readonly requests: number
  readonly input_tokens: number
  readonly output_tokens: number
  readonly cost: number
}

/** One arm's totals with its shares of the route's (null when the route has none of it yet). */
export interface LlmArmShares extends LlmArmCounts {
  readonly tokens: number
  readonly request_share: number | null
  /** Of input + output tokens. */
  readonly token_share: number | null
  readonly output_token_share: number | null
  readonly cost_share: number | null
}

/** Each arm's shares of the route's requests, tokens and cost. */
export function llmSharesOf(arms: readonly LlmArmCounts[]): LlmArmShares[] {
  let requests = 0
  let tokens = 0
  let output = 0
  let cost = 0
  for (const a of arms) {
    requests += a.requests
    tokens += a.input_tokens + a.output_tokens
    output += a.output_tokens
    cost += a.cost
  }
  const share = (x: number, total: number): number | null => (total > 0 ? x / total : null)
  return arms.map((a) => ({
    ...a,
    tokens: a.input_tokens + a.output_tokens,
    request_share: share(a.requests, requests),
    token_share: share(a.input_tokens + a.output_tokens, tokens),
    output_token_share: share(a.output_tokens, output),
    cost_share: share(a.cost, cost),
  }))
}

/** Several processes' counts as one (serve --workers): summed per route and model, in first-seen order. */
export function sumLlmCounts(answers: readonly (readonly { readonly route: string; readonly arms: readonly LlmArmCounts[] }[])[]): { route: string; arms: LlmArmCounts[] }[] {
  const routes = new Map<string, Map<string, { model: string; requests: number; input_tokens: number; output_tokens: number; cost: number }>>()
  for (const answer of answers) {
    for (const r of answer) {
      let arms = routes.get(r.route)
      if (arms === undefined) routes.set(r.route, arms = new Map())
      for (const a of r.arms) {
        const sum = arms.get(a.model)
        if (sum === undefined) arms.set(a.model, { ...a })
        else {
          sum.requests += a.requests
          sum.input_tokens += a.input_tokens
          sum.output_tokens += a.output_tokens
          sum.cost += a.cost
        }
      }
    }
  }
  return [...routes].map(([route, arms]) => ({ route, arms: [...arms.values()] }))
}
