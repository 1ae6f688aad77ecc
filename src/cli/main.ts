// The clip command line: one subcommand per file, this file wires them up and
// turns ClipErrors into a message and a non-zero exit.

import { Command } from 'commander';
import { isClipError } from '../errors.js';
import { VERSION } from '../version.js';
import { archiveCommand } from './archive-command.js';
import { catCommand } from './cat-command.js';
import { daemonCommand } from './daemon-command.js';
import { extractCommand } from './extract-command.js';
import { indexCommand } from './index-command.js';
import { inspectCommand } from './inspect-command.js';
import { lsCommand } from './ls-command.js';
import { mountCommand } from './mount-command.js';
import { umountCommand } from './umount-command.js';
import { statsCommand } from './stats-command.js';
import { psCommand } from './ps-command.js';
import { MountError } from '../fuse/index.js';

const program = new Command('clip')
  .description('index OCI images into metadata-only .clip files and read them lazily from the registry; pack trees into .clip archives')
  .version(`clip ${VERSION}`, '-V, --version', 'print the clip version')
  .showHelpAfterError()
  .addCommand(indexCommand())
  .addCommand(archiveCommand())
  .addCommand(extractCommand())
  .addCommand(inspectCommand())
  .addCommand(lsCommand())
  .addCommand(catCommand())
  .addCommand(mountCommand())
  .addCommand(umountCommand())
  .addCommand(statsCommand())
  .addCommand(psCommand())
  .addCommand(daemonCommand())
  .addCommand(
    new Command('version').description('print the clip version').action(() => {
      process.stdout.write(`clip ${VERSION}\n`);
    }),
  );

program.parseAsync(process.argv).catch((e: unknown) => {
  if (isClipError(e) || e instanceof MountError) {
    process.stderr.write(`clip: ${e.message}\n`);
  } else if (e instanceof Error && (e as NodeJS.ErrnoException).code === 'EPIPE') {
    // The reader of our stdout went away (clip cat | head): not an error.
    process.exit(0);
  } else {
    process.stderr.write(`clip: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  }
  process.exitCode = 1;
});
