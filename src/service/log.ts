/**
 * Structured logs: pino, JSON lines normally, readable lines on a terminal.
 *
 * @module
 */
import { Writable } from "node:stream";
import pino from "pino";

/** A Tideline logger. */
export type Logger = pino.Logger;

/**
 * A logger writing to stderr: JSON lines, or `HH:MM:SS level message key=value` on a TTY.
 *
 * @example
 * ```ts
 * import { createLogger } from "tideline";
 * const log = createLogger({ level: "info" });
 * log.info({ timeline: "main" }, "streaming");
 * ```
 */
export function createLogger(options: { level?: string; pretty?: boolean } = {}): Logger {
  const pretty = options.pretty ?? process.stderr.isTTY === true;
  const level = options.level ?? process.env.TIDELINE_LOG_LEVEL ?? "info";
  if (!pretty) return pino({ level, base: null }, pino.destination({ fd: 2, sync: true }));
  const out = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (line === "") continue;
        try {
          const { time, level: lvl, msg, ...rest } = JSON.parse(line) as Record<string, unknown>;
          const when = new Date(Number(time)).toISOString().slice(11, 19);
          const name = pino.levels.labels[Number(lvl)] ?? String(lvl);
          const extra = Object.entries(rest)
            .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
            .join(" ");
          process.stderr.write(
            `\r\x1b[K${when} ${name.padEnd(5)} ${String(msg ?? "")}${extra ? ` ${extra}` : ""}\n`,
          );
        } catch {
          process.stderr.write(`${line}\n`);
        }
      }
      done();
    },
  });
  return pino({ level, base: null }, out);
}
