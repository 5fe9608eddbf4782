/** Options for accepting a batch of records at once. */
export interface WriteBatchOptions {
  /** How long to wait for room (or for a failing file to recover) before giving up; 0 (default) does not wait. */
  readonly timeoutMs?: number
}

/**
 * Where records go. Every method is safe to call at any time and none throws: what cannot be
 * taken is refused (false) and counted by the sink.
 */
export interface RecordSink {
  /**
   * Queues one record; never blocks, never throws. False when it was dropped (buffer full, not
   * serializable, sink closed): for prediction records, which must never slow a request.
   */
  write(record: object): boolean
  /**
   * Accepts every record of `records` or none of them: resolves true once all are queued, false
   * when there was no room (or the sink could not write) within `timeoutMs`, the sink is closed,
   * or a record is not serializable. For outcomes, which must not be acknowledged and then lost.
   * `records` is iterated once; a generator lets each record be garbage as soon as it is serialized.
   */
  writeBatch(records: Iterable<object>, opts?: WriteBatchOptions): Promise<boolean>
  /** Resolves when every record accepted before the call is written, or dropped and counted. */
  flush(): Promise<void>
  /** Stops accepting, writes what is queued, releases the file. Never rejects; safe to call twice. */
  close(): Promise<void>
  /** Closes and reopens the destination by name (SIGHUP after log rotation). Never rejects. */
  reopen(): Promise<void>
}
