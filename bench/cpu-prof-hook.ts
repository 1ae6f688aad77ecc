// Loaded with NODE_OPTIONS=--import by bench:ml when BENCH_PROF=DIR is set
// (Node 20 refuses --cpu-prof in NODE_OPTIONS, and clip's daemon spawns its
// serving process itself): profiles the process from its start and writes
// DIR/clip-PID.cpuprofile at exit, for Chrome DevTools or speedscope.

import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import path from 'node:path';

const dir = process.env['BENCH_PROF'];
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.start');
  // The in-process session answers synchronously, so this works in an exit handler.
  process.on('exit', () => {
    session.post('Profiler.stop', (err, result) => {
      if (!err) writeFileSync(path.join(dir, `clip-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
