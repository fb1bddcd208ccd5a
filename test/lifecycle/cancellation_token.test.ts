import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CancellationToken, CancelledError } from "../../src/lifecycle/index.js";

describe("CancellationToken", () => {
  it("starts uncancelled, and cancel() sets the flag and the reason once", () => {
    const t = new CancellationToken();
    assert.equal(t.isCancelled, false);
    assert.equal(t.reason, undefined);
    t.cancel("first");
    t.cancel("second");
    assert.equal(t.isCancelled, true);
    assert.equal(t.reason, "first");
  });

  it("cancels the whole subtree before cancel() returns, callbacks included", () => {
    const root = new CancellationToken();
    const a = root.child();
    const b = a.child();
    const c = root.child();
    const seen: string[] = [];
    b.onCancel(() => seen.push(`b sees a=${a.isCancelled} c=${c.isCancelled}`));
    c.onCancel((reason) => seen.push(`c ${String(reason)}`));
    root.cancel("stop");
    assert.deepEqual([a.isCancelled, b.isCancelled, c.isCancelled], [true, true, true]);
    assert.equal(b.reason, "stop");
    assert.deepEqual(seen.sort(), ["b sees a=true c=true", "c stop"]);
  });

  it("never cancels the parent when a child is cancelled", () => {
    const root = new CancellationToken();
    const child = root.child();
    const sibling = root.child();
    child.cancel();
    assert.equal(root.isCancelled, false);
    assert.equal(sibling.isCancelled, false);
    assert.equal(root.childCount, 1, "the cancelled child unlinked itself");
  });

  it("gives a cancelled parent's new children a cancelled start with its reason", () => {
    const root = new CancellationToken();
    root.cancel("gone");
    const child = root.child();
    assert.equal(child.isCancelled, true);
    assert.equal(child.reason, "gone");
    assert.equal(root.childCount, 0);
  });

  it("unlinks a disposed child: it no longer follows the parent", () => {
    const root = new CancellationToken();
    const child = root.child();
    child[Symbol.dispose]();
    assert.equal(root.childCount, 0);
    root.cancel();
    assert.equal(child.isCancelled, false);
    child[Symbol.dispose](); // idempotent
  });

  it("handles a chain far deeper than the call stack allows", () => {
    const root = new CancellationToken();
    let leaf = root;
    for (let i = 0; i < 200_000; i++) leaf = leaf.child();
    root.cancel();
    assert.equal(leaf.isCancelled, true);
  });

  it("resolves cancelled() on cancel, and at once when already cancelled", async () => {
    const t = new CancellationToken();
    let resolved = false;
    const p = t.cancelled().then(() => {
      resolved = true;
    });
    await Promise.resolve();
    assert.equal(resolved, false);
    t.cancel();
    await p;
    assert.equal(resolved, true);
    await t.cancelled();
  });

  it("throwIfCancelled throws CancelledError carrying the reason", () => {
    const t = new CancellationToken();
    t.throwIfCancelled();
    t.cancel("why");
    assert.throws(
      () => t.throwIfCancelled(),
      (e: unknown) => e instanceof CancelledError && e.reason === "why" && /why/.test(e.message),
    );
  });

  it("onCancel: disposing unregisters; registering on a cancelled token runs at once", () => {
    const t = new CancellationToken();
    let calls = 0;
    const reg = t.onCancel(() => calls++);
    reg[Symbol.dispose]();
    t.cancel();
    assert.equal(calls, 0);
    t.onCancel(() => calls++);
    assert.equal(calls, 1);
    assert.throws(() => t.onCancel(42 as never), TypeError);
  });

  it("runs every callback even when some throw; never throws; reports and returns their errors", () => {
    const root = new CancellationToken();
    const child = root.child();
    let ran = 0;
    const reported: unknown[] = [];
    const original = CancellationToken.onCallbackError;
    CancellationToken.onCallbackError = (error, token) => reported.push([error, token]);
    try {
      root.onCancel(() => {
        throw new Error("one");
      });
      child.onCancel(() => ran++);
      const errors = root.cancel();
      assert.equal(ran, 1);
      assert.equal(child.isCancelled, true);
      assert.equal(errors.length, 1);
      assert.equal((errors[0] as Error).message, "one");
      assert.deepEqual(reported, [[errors[0], root]]);
      assert.deepEqual(root.cancel(), [], "a second cancel has nothing to report");
    } finally {
      CancellationToken.onCallbackError = original;
    }
  });

  it("aborts its signal with a CancelledError, whether made before or after cancel", () => {
    const t = new CancellationToken();
    const early = t.signal;
    assert.equal(early.aborted, false);
    t.cancel("r");
    assert.equal(early.aborted, true);
    assert.ok(early.reason instanceof CancelledError);
    assert.equal((early.reason as CancelledError).reason, "r");
    const u = new CancellationToken();
    u.cancel();
    assert.equal(u.signal.aborted, true);
  });

  it("fromSignal follows an AbortSignal, and disposal removes its listener", async () => {
    const controller = new AbortController();
    const t = CancellationToken.fromSignal(controller.signal);
    controller.abort("external");
    assert.equal(t.isCancelled, true);
    assert.equal(t.reason, "external");

    const aborted = new AbortController();
    aborted.abort("before");
    assert.equal(CancellationToken.fromSignal(aborted.signal).reason, "before");

    const c2 = new AbortController();
    const t2 = CancellationToken.fromSignal(c2.signal);
    t2[Symbol.dispose]();
    c2.abort();
    assert.equal(t2.isCancelled, false);

    const timed = CancellationToken.fromSignal(AbortSignal.timeout(5));
    // AbortSignal.timeout's timer does not keep the process alive: this one does, or Node
    // may find nothing left to run and end the test while it waits.
    const keepAlive = setTimeout(() => {}, 10_000);
    await timed.cancelled();
    clearTimeout(keepAlive);
    assert.equal((timed.reason as Error).name, "TimeoutError");
  });

  it("race() settles like the promise, rejects on cancel, and unregisters either way", async () => {
    const t = new CancellationToken();
    assert.equal(await t.race(Promise.resolve(7)), 7);
    await assert.rejects(t.race(Promise.reject(new Error("inner"))), /inner/);
    const pending = t.race(new Promise<never>(() => {}));
    t.cancel("stop");
    await assert.rejects(
      pending,
      (e: unknown) => e instanceof CancelledError && e.reason === "stop",
    );
    await assert.rejects(t.race(Promise.resolve(1)), CancelledError);
  });

  it("isDescendantOf follows live links only", () => {
    const root = new CancellationToken();
    const mid = root.child();
    const leaf = mid.child();
    assert.equal(leaf.isDescendantOf(root), true);
    assert.equal(leaf.isDescendantOf(leaf), true);
    assert.equal(root.isDescendantOf(leaf), false);
    assert.equal(new CancellationToken().isDescendantOf(root), false);
    mid[Symbol.dispose]();
    assert.equal(leaf.isDescendantOf(root), false, "disposal cut the link");
  });
});
