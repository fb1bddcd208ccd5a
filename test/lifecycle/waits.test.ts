import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CancellationToken,
  CancelledError,
  sleep,
  TimeoutError,
  withTimeout,
} from "../../src/lifecycle/index.js";

describe("sleep", () => {
  it("resolves after the time", async () => {
    const t = new CancellationToken();
    const start = performance.now();
    await sleep(10, t);
    assert.ok(performance.now() - start >= 9);
  });

  it("rejects at once when cancelled, and leaves no registration behind", async () => {
    const t = new CancellationToken();
    const p = sleep(60_000, t);
    t.cancel("stop");
    await assert.rejects(p, (e: unknown) => e instanceof CancelledError && e.reason === "stop");
    await assert.rejects(sleep(1, t), CancelledError);
  });

  it("rejects bad durations with RangeError naming them", async () => {
    await assert.rejects(
      sleep(-1, new CancellationToken()),
      (e: unknown) => e instanceof RangeError && /-1/.test(e.message),
    );
    await assert.rejects(sleep(Number.NaN, new CancellationToken()), RangeError);
  });
});

describe("withTimeout", () => {
  it("returns the body's value when it is fast enough", async () => {
    assert.equal(await withTimeout(new CancellationToken(), 1000, async () => 5), 5);
  });

  it("cancels the body's token and throws TimeoutError when time runs out", async () => {
    let bodyToken: CancellationToken | undefined;
    await assert.rejects(
      withTimeout(
        new CancellationToken(),
        10,
        (token) => {
          bodyToken = token;
          return sleep(60_000, token);
        },
        "wait_lsn",
      ),
      (e: unknown) =>
        e instanceof TimeoutError &&
        e.ms === 10 &&
        /wait_lsn timed out after 10 ms/.test(e.message),
    );
    assert.equal(bodyToken?.isCancelled, true);
  });

  it("throws TimeoutError even if the body ignores its token", async () => {
    await assert.rejects(
      withTimeout(new CancellationToken(), 5, () => new Promise<never>(() => {})),
      TimeoutError,
    );
  });

  it("cancelling the caller's token gives CancelledError, not TimeoutError", async () => {
    const t = new CancellationToken();
    const p = withTimeout(t, 60_000, (token) => sleep(60_000, token));
    t.cancel("shutdown");
    await assert.rejects(p, (e: unknown) => e instanceof CancelledError && e.reason === "shutdown");
    assert.equal(t.childCount, 0, "the child token was unlinked");
  });

  it("passes the body's own errors through", async () => {
    await assert.rejects(
      withTimeout(new CancellationToken(), 1000, async () => {
        throw new Error("own");
      }),
      /own/,
    );
  });
});
