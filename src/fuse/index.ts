// The public surface of the FUSE server library: mount a connection, serve a
// read-only FileSystem on it, unmount. Knows nothing about images; the wire
// level (opcode table, struct codecs, debug printing) is exported for tools.

export type {
  Attr,
  AttrReply,
  Awaitable,
  ConnectionInfo,
  DirEntries,
  DirEntry,
  Entry,
  LookupContext,
  OpenResult,
  RequestContext,
  StatFs,
  Timespec,
} from './types.js';
export { makedev, devMajor, devMinor } from './types.js';
export { type FileSystem, DEFAULT_ANSWERS, attr } from './filesystem.js';
export { FuseError, errnoOf, errnoName } from './errors.js';
export {
  FuseSession,
  DeviceChannel,
  type Channel,
  type Logger,
  type LogLevel,
  type ReaderEvents,
  type ResponderSpec,
  type SessionOptions,
} from './session.js';
export { ReplyWriter, type ReaderResponder, type ResponderFactory } from './reader-responder.js';
export { readAheadKb, setReadAheadKb } from './read-ahead-kb.js';
export { type InitOptions, type InitDecision, negotiateInit, DEFAULT_MAX_WRITE, DEFAULT_MAX_PAGES } from './init.js';
export {
  mountFuse,
  unmount,
  detach,
  forceUnmount,
  forceUnmountSync,
  fuseMounts,
  isMounted,
  MountError,
  mustRunAsRoot,
  DEFAULT_MOUNT_OPTIONS,
  type FuseMount,
  type MountOptions,
  type MountErrorCode,
  type UnmountOptions,
} from './mount.js';
export { type MountEntry, canonicalMountPath, findMount, parseMountInfo, readMounts, unescapeMountField } from './mountinfo.js';
export {
  acceptInit,
  canResend,
  connectionFromJson,
  connectionToJson,
  encodeNotifyResend,
  NOTIFY_RESEND,
  UNIQUE_RESEND,
} from './takeover.js';
export { serveFuse, type FuseServer, type ServeOptions } from './serve.js';
export { formatRequest, formatReply, formatValue } from './print.js';
export { OPS, OPCODES, opcodeName, type OpName, type OpIn, type OpOut, type OpSpec } from './opcodes.js';
export { InitFlag, OpenFlag, WANTED_INIT_FLAGS, MAX_MINOR, MIN_KERNEL_MINOR, ROOT_ID, initFlagNames } from './constants.js';
