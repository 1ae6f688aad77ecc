// Reads a Prometheus text exposition in tests: scrape it, sum one metric.

import { httpRequest } from './http.js';

export async function scrape(addr: string): Promise<string> {
  const res = await httpRequest('GET', `http://${addr}/metrics`);
  if (res.status !== 200) throw new Error(`GET http://${addr}/metrics answered ${res.status}`);
  return res.body.toString('utf8');
}

/** The sum of the samples of `name` whose label text contains `labels` ('' for all). */
export function metric(text: string, name: string, labels = ''): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const sample = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (sample && sample[1] === name && (sample[2] ?? '').includes(labels)) total += Number(sample[3]);
  }
  return total;
}
