/**
 * Buffered, synchronous output for commands that print a lot (waldump prints millions
 * of lines): a line at a time would be a system call each. A closed pipe
 * (`tideline waldump ... | head`) ends the output quietly instead of crashing.
 *
 * @module
 */
import { writeSync } from "node:fs";

/**
 * Collects text and writes it to a file descriptor in large pieces.
 *
 * @example
 * ```ts
 * import { BufferedOutput } from "./output.js";
 * const out = new BufferedOutput(1);
 * out.line("hello");
 * out.flush();
 * ```
 */
export class BufferedOutput {
  readonly #fd: number;
  #pending: string[] = [];
  #size = 0;
  #closed = false;

  constructor(fd: number) {
    this.#fd = fd;
  }

  /** Whether the reader went away (EPIPE): callers may stop producing. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Adds a line (a newline is appended). */
  line(text: string): void {
    if (this.#closed) return;
    this.#pending.push(text, "\n");
    this.#size += text.length + 1;
    if (this.#size >= 1 << 16) this.flush();
  }

  /** Writes everything collected. */
  flush(): void {
    if (this.#closed || this.#pending.length === 0) return;
    let data = Buffer.from(this.#pending.join(""));
    this.#pending = [];
    this.#size = 0;
    while (data.length > 0) {
      try {
        const n = writeSync(this.#fd, data);
        data = data.subarray(n);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "EAGAIN") continue;
        if (code === "EPIPE") {
          this.#closed = true;
          return;
        }
        throw error;
      }
    }
  }
}
