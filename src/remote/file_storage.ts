/**
 * Remote storage in a local directory (`file:///path`): for a mounted network disk, for
 * tests, and as the default of the embedded setup.
 *
 * @module
 */
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import type { CancellationToken } from "../lifecycle/index.js";
import { writeFileAtomic } from "../timeline/index.js";
import { checkKey, type RemoteStorage, RemoteStorageError } from "./storage.js";

/**
 * A directory used as remote storage. `put` writes a temporary file, fsyncs it and
 * renames it into place ({@linkcode writeFileAtomic}), so readers never see a partial
 * object and a put that returned survives a crash.
 *
 * @example
 * ```ts
 * import { FileStorage } from "tideline/remote";
 * const storage = new FileStorage("/var/backups/tideline");
 * ```
 */
export class FileStorage implements RemoteStorage {
  readonly root: string;
  readonly display: string;

  constructor(root: string) {
    this.root = root;
    this.display = `file://${root}`;
  }

  #path(key: string): string {
    return join(this.root, ...checkKey(key).split("/"));
  }

  #fail(op: string, key: string, error: unknown): RemoteStorageError {
    const code = (error as NodeJS.ErrnoException).code ?? "";
    return new RemoteStorageError(
      op,
      key,
      this.display,
      (error as Error).message,
      ["EAGAIN", "EBUSY", "EIO", "EMFILE", "ENFILE"].includes(code),
      { cause: error },
    );
  }

  async put(key: string, data: Buffer, token: CancellationToken): Promise<void> {
    token.throwIfCancelled();
    const path = this.#path(key);
    try {
      await mkdir(dirname(path), { recursive: true });
      // `.tmp-<pid>`: `list` skips it, and two processes never write the same one.
      await writeFileAtomic(path, data, { tmp: `${path}.tmp-${process.pid}`, token });
    } catch (error) {
      if (token.isCancelled) throw error;
      throw this.#fail("put", key, error);
    }
  }

  async get(key: string, token: CancellationToken): Promise<Buffer | undefined> {
    const path = this.#path(key);
    token.throwIfCancelled();
    try {
      return await readFile(path);
    } catch (error) {
      // ENOTDIR/EISDIR: a part of the key is a file, or the key is a prefix of others.
      const code = (error as NodeJS.ErrnoException).code ?? "";
      if (["ENOENT", "ENOTDIR", "EISDIR"].includes(code)) return undefined;
      throw this.#fail("get", key, error);
    }
  }

  async list(prefix: string, token: CancellationToken): Promise<string[]> {
    token.throwIfCancelled();
    const out: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries: import("node:fs").Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
        throw this.#fail("list", prefix, error);
      }
      for (const e of entries) {
        const path = join(dir, e.name);
        if (e.isDirectory()) await walk(path);
        else if (!e.name.includes(".tmp-")) {
          const key = relative(this.root, path).split(sep).join("/");
          if (key.startsWith(prefix)) out.push(key);
        }
      }
    };
    await walk(this.root);
    return out.sort();
  }

  async delete(key: string, token: CancellationToken): Promise<void> {
    const path = this.#path(key);
    token.throwIfCancelled();
    try {
      await rm(path, { force: true });
    } catch (error) {
      throw this.#fail("delete", key, error);
    }
  }
}
