// The clip command line: one subcommand per file, this file wires them up and
// turns ClipErrors into a message and a non-zero exit.

import { Command } from 'commander';
import { isClipError } from '../errors.js';
import { VERSION } from '../version.js';
import { MountError } from '../fuse/mount.js';

// Each command's module is loaded only when that command runs (or for help):
// `clip mount` of an image the daemon already serves is mostly this process's
// own start, so it must not load the indexer, the archiver and the registry client.
const COMMANDS: Record<string, () => Promise<Command>> = {
  index: async () => (await import('./index-command.js')).indexCommand(),
  archive: async () => (await import('./archive-command.js')).archiveCommand(),
  extract: async () => (await import('./extract-command.js')).extractCommand(),
  inspect: async () => (await import('./inspect-command.js')).inspectCommand(),
  ls: async () => (await import('./ls-command.js')).lsCommand(),
  cat: async () => (await import('./cat-command.js')).catCommand(),
  mount: async () => (await import('./mount-command.js')).mountCommand(),
  umount: async () => (await import('./umount-command.js')).umountCommand(),
  stats: async () => (await import('./stats-command.js')).statsCommand(),
  ps: async () => (await import('./ps-command.js')).psCommand(),
  pull: async () => (await import('./pull-command.js')).pullCommand(),
  daemon: async () => (await import('./daemon-command.js')).daemonCommand(),
};
const ALIASES: Record<string, string> = { unmount: 'umount' };

const program = new Command('clip')
  .description('index OCI images into metadata-only .clip files and read them lazily from the registry; pack trees into .clip archives')
  .version(`clip ${VERSION}`, '-V, --version', 'print the clip version')
  .showHelpAfterError()
  .addCommand(
    new Command('version').description('print the clip version').action(() => {
      process.stdout.write(`clip ${VERSION}\n`);
    }),
  );

async function run(): Promise<void> {
  const asked = process.argv[2];
  const name = asked !== undefined ? (ALIASES[asked] ?? asked) : undefined;
  const only = name !== undefined ? COMMANDS[name] : undefined;
  // A known command: only its module; anything else (help, a typo): all of them, for the listing.
  for (const load of only ? [only] : Object.values(COMMANDS)) program.addCommand(await load());
  await program.parseAsync(process.argv);
}

run().catch((e: unknown) => {
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
