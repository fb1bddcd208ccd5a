/**
 * One writer per timeline: a lock file holding the writer's process id.
 *
 * @module
 */
import { open, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { TimelineInUseError } from "./errors.js";

const LOCK = "writer.lock";
/** Timeline directories locked by this process. */
const held = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Takes the writer lock of the timeline in `dir`, or throws
 * {@linkcode TimelineInUseError} naming the live holder. A lock left by a dead process
 * (a crash, kill -9) is taken over.
 *
 * @example
 * ```ts
 * import { acquireWriterLock } from "tideline/timeline";
 * const release = await acquireWriterLock("/data/timelines/main", "main");
 * await release();
 * ```
 */
export async function acquireWriterLock(dir: string, id: string): Promise<() => Promise<void>> {
  const path = join(dir, LOCK);
  if (held.has(dir)) throw new TimelineInUseError(id, process.pid);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const file = await open(path, "wx");
      try {
        await file.writeFile(`${process.pid}\n`);
      } finally {
        await file.close();
      }
      held.add(dir);
      return async () => {
        held.delete(dir);
        await rm(path, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const pid = Number.parseInt(await readFile(path, "utf8").catch(() => ""), 10);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid))
      throw new TimelineInUseError(id, pid);
    // Left by a dead process (or unreadable, or by this process before it restarted): take it over.
    await rm(path, { force: true });
  }
  throw new TimelineInUseError(id, Number.NaN);
}
