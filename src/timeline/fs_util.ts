/**
 * Small durable-file helpers.
 *
 * @module
 */
import { type FileHandle, open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";
import type { CancellationToken } from "../lifecycle/index.js";

/**
 * fsyncs a directory, so that a rename or a new file in it survives a crash.
 *
 * @example
 * ```ts
 * import { fsyncDir } from "tideline/timeline";
 * await fsyncDir("/data/timelines/main");
 * ```
 */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes all of `parts`, one after another, at `position` of `file` (a `writev`, repeated
 * for what a short write left).
 *
 * @example
 * ```ts
 * import { open } from "node:fs/promises";
 * import { writeFully } from "tideline/timeline";
 * const file = await open("/tmp/out", "w");
 * await writeFully(file, [Buffer.from("a"), Buffer.from("b")], 0);
 * await file.close();
 * ```
 */
export async function writeFully(
  file: FileHandle,
  parts: readonly Uint8Array[],
  position: number,
): Promise<void> {
  const rest = parts.filter((p) => p.length > 0);
  while (rest.length > 0) {
    const { bytesWritten } = await file.writev(rest, position);
    if (bytesWritten <= 0) throw new Error(`writev wrote nothing at position ${position}`);
    position += bytesWritten;
    let skip = bytesWritten;
    while (rest.length > 0 && skip >= rest[0]!.length) skip -= rest.shift()!.length;
    if (skip > 0) rest[0] = rest[0]!.subarray(skip);
  }
}

/** Options of {@linkcode writeFileAtomic}. */
export interface WriteFileAtomicOptions {
  /** fsync the file and the directory (default true). */
  fsync?: boolean;
  /** The new file's mode (default 0o666, less the umask). */
  mode?: number;
  /** The temporary file (default `<path>.tmp`), e.g. one a directory listing skips. */
  tmp?: string;
  /** Cancels the write: nothing is renamed into place and the temporary file is removed. */
  token?: CancellationToken;
}

/**
 * Replaces `path` with `data` atomically: write a temporary file, fsync it, rename it
 * over `path`, fsync the directory. After a crash, `path` holds the old or the new
 * content, never a mix; after a failure or a cancellation (`token`, which then throws
 * its `CancelledError`), `path` is as it was and the temporary file is gone. With
 * `fsync: false` (testing, benchmarks, throwaway copies) only a process crash is
 * survived, not a machine crash.
 *
 * @example
 * ```ts
 * import { writeFileAtomic } from "tideline/timeline";
 * await writeFileAtomic("/data/timelines/main/index.json", JSON.stringify({}));
 * ```
 */
export async function writeFileAtomic(
  path: string,
  data: string | Buffer,
  options: WriteFileAtomicOptions = {},
): Promise<void> {
  const fsync = options.fsync ?? true;
  const { token } = options;
  const tmp = options.tmp ?? `${path}.tmp`;
  token?.throwIfCancelled();
  try {
    const handle = await open(tmp, "w", options.mode ?? 0o666);
    try {
      await handle.writeFile(data, token !== undefined ? { signal: token.signal } : {});
      if (fsync) await handle.sync();
    } catch (error) {
      await handle.close().catch(() => {});
      throw error;
    }
    await handle.close();
    token?.throwIfCancelled();
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    token?.throwIfCancelled();
    throw error;
  }
  if (fsync) await fsyncDir(dirname(path));
}
