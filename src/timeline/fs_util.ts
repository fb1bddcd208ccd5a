/**
 * Small durable-file helpers.
 *
 * @module
 */
import { open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";

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
 * Replaces `path` with `data` atomically: write a temporary file, fsync it, rename it
 * over `path`, fsync the directory. After a crash, `path` holds the old or the new
 * content, never a mix. With `fsync: false` (testing, benchmarks) only a process crash
 * is survived, not a machine crash.
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
  options: { fsync?: boolean; mode?: number } = {},
): Promise<void> {
  const fsync = options.fsync ?? true;
  const tmp = `${path}.tmp`;
  const handle = await open(tmp, "w", options.mode ?? 0o666);
  try {
    await handle.writeFile(data);
    if (fsync) await handle.sync();
  } catch (error) {
    await handle.close().catch(() => {});
    await rm(tmp, { force: true });
    throw error;
  }
  await handle.close();
  await rename(tmp, path);
  if (fsync) await fsyncDir(dirname(path));
}
