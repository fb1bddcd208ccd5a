/**
 * What `tideline server` remembers of each timeline it runs, so that a restart reattaches
 * them all: its id, its sources, its slot. One JSON file per timeline under
 * `<dataDir>/server/timelines/`, readable by the owner only (connection strings may
 * carry passwords, as PostgreSQL's own `primary_conninfo` does).
 *
 * @module
 */
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { fsyncDir, isTimelineId, writeFileAtomic } from "../timeline/index.js";
import { formatLsn, type Lsn, parseLsn } from "../wal/index.js";
import { parseSource } from "../walreceiver/index.js";

/** A timeline as `POST /v1/timelines` defined it. */
export interface TimelineDefinition {
  /** The timeline's id. */
  readonly id: string;
  /** Connection strings of its sources, as given (never returned or logged as they are). */
  readonly sources: readonly string[];
  /** A physical replication slot to stream through, created when missing. */
  readonly slot?: string;
  /** Where a new timeline starts (the segment holding it). */
  readonly startLsn?: Lsn;
  /** When it was defined, ISO 8601. */
  readonly createdAt: string;
}

const SLOT = /^[a-z0-9_]{1,63}$/;

/**
 * Checks a definition's parts, throwing `RangeError` naming the offending value: the id,
 * each connection string (parsed, so a bad one is refused before anything is written),
 * the slot name (PostgreSQL's rule: lower-case letters, digits and `_`, at most 63).
 *
 * @example
 * ```ts
 * import { checkTimelineDefinition } from "tideline/service";
 * checkTimelineDefinition({ id: "main", sources: ["postgres://postgres@127.0.0.1/postgres"], createdAt: new Date().toISOString() });
 * ```
 */
export function checkTimelineDefinition(def: TimelineDefinition): TimelineDefinition {
  if (!isTimelineId(def.id)) {
    throw new RangeError(
      `Invalid timeline id ${JSON.stringify(def.id)}: expected 1 to 64 letters, digits, "-" or "_"`,
    );
  }
  if (!Array.isArray(def.sources) || def.sources.length === 0) {
    throw new RangeError("A timeline needs at least one source connection string");
  }
  for (const [i, s] of def.sources.entries()) {
    try {
      parseSource(s);
    } catch (error) {
      throw new RangeError(`sources[${i}]: ${(error as Error).message}`);
    }
  }
  if (def.slot !== undefined && !SLOT.test(def.slot)) {
    throw new RangeError(
      `Invalid slot name ${JSON.stringify(def.slot)}: expected 1 to 63 lower-case letters, digits or "_"`,
    );
  }
  return def;
}

/** The folder holding the definitions. */
export function definitionsDir(dataDir: string): string {
  return join(dataDir, "server", "timelines");
}

/**
 * Writes (or replaces) a definition atomically, mode 0600.
 *
 * @example
 * ```ts
 * import { saveTimelineDefinition } from "tideline/service";
 * await saveTimelineDefinition("/data", { id: "main", sources: ["host=127.0.0.1"], createdAt: new Date().toISOString() });
 * ```
 */
export async function saveTimelineDefinition(
  dataDir: string,
  def: TimelineDefinition,
): Promise<void> {
  const dir = definitionsDir(dataDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const json = {
    id: def.id,
    sources: def.sources,
    ...(def.slot !== undefined ? { slot: def.slot } : {}),
    ...(def.startLsn !== undefined ? { startLsn: formatLsn(def.startLsn) } : {}),
    createdAt: def.createdAt,
  };
  await writeFileAtomic(join(dir, `${def.id}.json`), `${JSON.stringify(json, null, 2)}\n`, {
    mode: 0o600,
  });
}

/**
 * Removes a definition (durably); a missing one is not an error.
 *
 * @example
 * ```ts
 * import { removeTimelineDefinition } from "tideline/service";
 * await removeTimelineDefinition("/data", "main");
 * ```
 */
export async function removeTimelineDefinition(dataDir: string, id: string): Promise<void> {
  const dir = definitionsDir(dataDir);
  await rm(join(dir, `${id}.json`), { force: true });
  await fsyncDir(dir).catch(() => {});
}

/**
 * Reads every definition, sorted by id. A file that cannot be parsed throws `Error`
 * naming it: the server must not start without a timeline it was asked to run.
 *
 * @example
 * ```ts
 * import { loadTimelineDefinitions } from "tideline/service";
 * for (const def of await loadTimelineDefinitions("/data")) console.log(def.id);
 * ```
 */
export async function loadTimelineDefinitions(dataDir: string): Promise<TimelineDefinition[]> {
  const dir = definitionsDir(dataDir);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  const out: TimelineDefinition[] = [];
  for (const name of names.sort()) {
    if (!name.endsWith(".json")) continue;
    const path = join(dir, name);
    try {
      const raw = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
      const def: TimelineDefinition = {
        id: raw.id as string,
        sources: raw.sources as string[],
        ...(typeof raw.slot === "string" ? { slot: raw.slot } : {}),
        ...(typeof raw.startLsn === "string" ? { startLsn: parseLsn(raw.startLsn) } : {}),
        createdAt: String(raw.createdAt),
      };
      checkTimelineDefinition(def);
      if (`${def.id}.json` !== name) throw new RangeError(`it names timeline "${def.id}"`);
      out.push(def);
    } catch (error) {
      throw new Error(`Timeline definition ${path} is damaged: ${(error as Error).message}`);
    }
  }
  return out;
}
