// What a read of a span's output up to `end` must fetch when the index has
// marks and chunk digests (format v6): the span's first chunks, as many as
// cover the first mark at or after `end`, and the output those chunks are
// known to produce (up to the last mark they cover). Pure: no I/O.

import { spanOutputRange, spanRange } from '../gzip/span-reader.js';
import { CHUNK_SIZE, type SpanTable } from '../gzip/types.js';

export interface PrefixPlan {
  /** Chunks to fetch and verify, from the span's compressed start. */
  chunks: number;
  /** Compressed range to fetch: [start, end), absolute. */
  start: number;
  end: number;
  /** Output bytes to inflate, from the span's output start (at least the read's). */
  length: number;
}

/**
 * The prefix of span i that gives its output up to absolute offset `end`,
 * fetching at least `minChunks` chunks; undefined when that is the whole span
 * (or the index has no marks), so the whole span is read as before.
 */
export function planPrefix(table: SpanTable, i: number, end: number, minChunks = 0): PrefixPlan | undefined {
  const fine = table.fine?.[i];
  if (!fine || table.compression !== 'gzip') return undefined;
  const input = spanRange(table, i);
  const output = spanOutputRange(table, i);
  const mark = fine.marks.find((m) => m.out >= end);
  if (!mark) return undefined;
  const chunks = Math.max(minChunks, Math.ceil((mark.in - input.start) / CHUNK_SIZE));
  const to = input.start + chunks * CHUNK_SIZE;
  if (to >= input.end) return undefined;
  // The chunks may reach further marks: their output comes at no extra fetch.
  let length = mark.out - output.start;
  for (const m of fine.marks) if (m.in <= to && m.out - output.start > length) length = m.out - output.start;
  return { chunks, start: input.start, end: to, length };
}

/** All of span i as a prefix plan: how a read that continues a held prefix fetches the rest of the span. */
export function wholeAsPrefix(table: SpanTable, i: number): PrefixPlan {
  const input = spanRange(table, i);
  const output = spanOutputRange(table, i);
  return {
    chunks: Math.ceil((input.end - input.start) / CHUNK_SIZE),
    start: input.start,
    end: input.end,
    length: output.end - output.start,
  };
}
