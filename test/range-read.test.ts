// The one range-read wrapper that registry and S3 sources share
// (http/range-read.ts), against a real HTTP server on 127.0.0.1 that answers
// each request as scripted: a body cut short or a wrong Content-Range is
// asked for again and the bytes come out exact; a refusal is not retried.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ClipError } from '../src/errors.js';
import { createAgent, send } from '../src/http/client.js';
import { readRangeRetrying, type RangeRequest } from '../src/http/range-read.js';

type Answer = 'ok' | 'cut' | 'wrong-range' | 'not-found' | 'beyond';

const BLOB = Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 7 + 3) & 0xff));

describe('readRangeRetrying', () => {
  let server: http.Server;
  let base: URL;
  let script: Answer[] = [];
  let requests = 0;
  const agent = createAgent();

  before(async () => {
    server = http.createServer((req, res) => {
      requests++;
      const answer = script.shift() ?? 'ok';
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      const start = Number(m?.[1]);
      const last = Number(m?.[2]);
      if (answer === 'not-found') return void res.writeHead(404).end();
      if (answer === 'beyond' || last >= BLOB.length) return void res.writeHead(416, { 'content-range': `bytes */${BLOB.length}` }).end();
      const body = BLOB.subarray(start, last + 1);
      const range = answer === 'wrong-range' ? `bytes ${start + 1}-${last + 1}/${BLOB.length}` : `bytes ${start}-${last}/${BLOB.length}`;
      res.writeHead(206, { 'content-range': range, 'content-length': body.length });
      if (answer === 'cut') {
        res.write(body.subarray(0, body.length >> 1));
        setImmediate(() => res.socket?.destroy());
        return;
      }
      res.end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/blob`);
  });
  after(async () => {
    await agent.close();
    await new Promise((resolve) => server.close(resolve));
  });

  function request(start: number, end: number, retries: string[]): RangeRequest {
    return {
      send: () => send(agent, base, { headers: { range: `bytes=${start}-${end - 1}` } }),
      failure: async (res) => new ClipError('NOT_FOUND', `answered ${res.status}`),
      what: 'the test blob',
      onRetry: (reason) => retries.push(reason),
    };
  }

  it('a body cut short, then a wrong Content-Range: asked again each time, the bytes exact', async () => {
    script = ['cut', 'wrong-range', 'ok'];
    requests = 0;
    const retries: string[] = [];
    const got = await readRangeRetrying(1000, 40_000, request(1000, 40_000, retries));
    assert.ok(got.equals(BLOB.subarray(1000, 40_000)));
    assert.equal(requests, 3);
    assert.deepEqual(retries, ['body-cut', 'body-cut']);
  });

  it("a refusal is the source's error, a range beyond the end is BAD_ARGUMENT: neither asked again", async () => {
    script = ['not-found'];
    requests = 0;
    await assert.rejects(readRangeRetrying(0, 10, request(0, 10, [])), { code: 'NOT_FOUND', message: 'answered 404' });
    assert.equal(requests, 1);
    script = ['beyond'];
    await assert.rejects(readRangeRetrying(0, 10, request(0, 10, [])), {
      code: 'BAD_ARGUMENT',
      message: /beyond the end of the test blob \(size 65536\)/,
    });
    assert.equal(requests, 2);
  });

  it('a bad range is refused before any request; an empty one needs none', async () => {
    requests = 0;
    await assert.rejects(readRangeRetrying(10, 5, request(10, 5, [])), {
      code: 'BAD_ARGUMENT',
      message: 'invalid byte range [10, 5) of the test blob',
    });
    await assert.rejects(readRangeRetrying(-1, 5, request(-1, 5, [])), { code: 'BAD_ARGUMENT' });
    assert.equal((await readRangeRetrying(7, 7, request(7, 7, []))).length, 0);
    assert.equal(requests, 0);
  });
});
