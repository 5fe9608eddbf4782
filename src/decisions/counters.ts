// How much a counter grew over a window, across process restarts: the rule of Prometheus'
// increase() (a drop means the series restarted from zero, so its new value is all growth) without
// its extrapolation, and with a series born inside the window counted from zero (increase() loses
// that first sample, such as a candidate's first requests).

/**
 * A counter's growth after `start` (its value when the window opened, undefined if the series did
 * not exist then) over the raw samples that follow, oldest first.
 */
export function counterIncrease(start: number | undefined, samples: readonly number[]): number {
  let previous = start ?? 0
  let total = 0
  for (const v of samples) {
    total += v >= previous ? v - previous : v
    previous = v
  }
  return total
}

/** The identity of a series: its labels without the metric name, in a stable order. */
export function seriesKey(labels: Readonly<Record<string, string>>): string {
  return JSON.stringify(Object.entries(labels).filter(([k]) => k !== '__name__').sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}
