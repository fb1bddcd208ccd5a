/**
 * PostgreSQL connection strings: both forms (`postgres://...` URLs and
 * `key=value` conninfo), turned into `pg` client settings, and shown without password.
 *
 * @module
 */
import type { ClientConfig } from "pg";

/** A parsed source: `pg` settings and a printable form without the password. */
export interface Source {
  /** The connection string as given (may contain a password: never log it). */
  readonly conninfo: string;
  /** The same without the password, for logs, errors and the API. */
  readonly display: string;
  /** `host:port`, for metrics labels and status. */
  readonly address: string;
  /** Settings for a `pg` replication client. */
  readonly config: ClientConfig;
}

// A value is quoted ('...', with \\ escapes) or runs to the next blank (a quote inside it is
// literal, as libpq reads it).
const KV = /\s*([a-zA-Z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|(?:[^\s\\]|\\.)*)/y;

function parseKeyValue(text: string): Map<string, string> {
  const out = new Map<string, string>();
  KV.lastIndex = 0;
  let pos = 0;
  while (pos < text.length) {
    if (/^\s*$/.test(text.slice(pos))) break;
    KV.lastIndex = pos;
    const m = KV.exec(text);
    if (m === null) {
      // The text there may be part of a password: say where, not what.
      throw new TypeError(
        `Cannot parse connection string at character ${pos + 1}: expected key=value pairs separated by blanks`,
      );
    }
    let value = m[2]!;
    value = value.startsWith("'") ? value.slice(1, -1) : value;
    value = value.replace(/\\(.)/g, "$1");
    out.set(m[1]!, value);
    pos = KV.lastIndex;
  }
  return out;
}

/**
 * Parses a connection string for a physical replication connection. `application_name`
 * defaults to `tideline` (operators see it in `pg_stat_replication`). Throws `TypeError`
 * naming what is wrong (never echoing a password).
 *
 * @example
 * ```ts
 * import { parseSource } from "tideline/walreceiver";
 * parseSource("postgres://replicator:secret@127.0.0.1:5432/postgres").display;
 * // "postgres://replicator:***@127.0.0.1:5432/postgres"
 * ```
 */
export function parseSource(conninfo: string): Source {
  if (typeof conninfo !== "string" || conninfo.trim() === "") {
    throw new TypeError(
      "Empty connection string: expected postgres://user@host:port/db or host=... port=...",
    );
  }
  const settings = new Map<string, string>();
  let display: string;
  if (/^postgres(ql)?:\/\//.test(conninfo)) {
    let url: URL;
    try {
      url = new URL(conninfo);
    } catch {
      throw new TypeError(`Invalid connection URL "${redactText(conninfo)}"`);
    }
    if (url.hostname)
      settings.set("host", decodeURIComponent(url.hostname.replace(/^\[|\]$/g, "")));
    if (url.port) settings.set("port", url.port);
    if (url.username) settings.set("user", decodeURIComponent(url.username));
    if (url.password) settings.set("password", decodeURIComponent(url.password));
    const db = decodeURIComponent(url.pathname.replace(/^\//, ""));
    if (db) settings.set("dbname", db);
    for (const [k, v] of url.searchParams) settings.set(k, v);
    if (url.password) url.password = "***";
    if (url.searchParams.has("password")) url.searchParams.set("password", "***");
    display = url.toString();
  } else if (conninfo.includes("=")) {
    for (const [k, v] of parseKeyValue(conninfo)) settings.set(k, v);
    display = [...settings].map(([k, v]) => `${k}=${k === "password" ? "***" : v}`).join(" ");
  } else {
    throw new TypeError(
      `Invalid connection string "${redactText(conninfo)}": expected postgres://user@host:port/db or host=... port=...`,
    );
  }
  const port = settings.has("port") ? Number(settings.get("port")) : 5432;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TypeError(
      `Invalid port "${settings.get("port")}" in connection string: expected 1..65535`,
    );
  }
  const host = settings.get("host") ?? "127.0.0.1";
  const config: ClientConfig = {
    host,
    port,
    user: settings.get("user") ?? "postgres",
    database: settings.get("dbname") ?? "postgres",
    application_name: settings.get("application_name") ?? "tideline",
    replication: true,
  } as ClientConfig;
  const password = settings.get("password");
  if (password !== undefined) config.password = password;
  if (settings.get("sslmode") === "require") config.ssl = { rejectUnauthorized: false };
  return { conninfo, display, address: `${host}:${port}`, config };
}

/** Masks anything that looks like a password in free text. */
export function redactText(text: string): string {
  return text
    .replace(/(:\/\/[^:/@]*:)[^@]*@/, "$1***@")
    .replace(/(password\s*=\s*)('[^']*'|\S+)/gi, "$1***");
}
