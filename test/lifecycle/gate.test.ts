import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CancellationToken,
  CancelledError,
  Gate,
  GateClosedError,
  type KeptClosingEvent,
  type SlowCloseEvent,
} from "../../src/lifecycle/index.js";

/** Lets every pending promise reaction run. */
const settle = () => new Promise((r) => setImmediate(r));

function tracked(p: Promise<void>) {
  const state = { done: false };
  const promise = p.then(() => {
    state.done = true;
  });
  return { state, promise };
}

describe("Gate", () => {
  it("enter never blocks, and close() waits for every guard", async () => {
    const gate = new Gate("g");
    const a = gate.enter("a");
    const b = gate.enter("b");
    const closing = tracked(gate.close());
    assert.equal(gate.isClosing, true);
    assert.equal(gate.isClosed, false);
    a.release();
    await settle();
    assert.equal(closing.state.done, false, "b still inside");
    b.release();
    await closing.promise;
    assert.equal(gate.isClosed, true);
  });

  it("refuses entry once closing has begun, naming gate and holder", async () => {
    const gate = new Gate("timeline main");
    const guard = gate.enter();
    const closing = gate.close();
    assert.throws(
      () => gate.enter("flush"),
      (e: unknown) =>
        e instanceof GateClosedError &&
        e.gate === "timeline main" &&
        e.holder === "flush" &&
        /timeline main/.test(e.message),
    );
    guard.release();
    await closing;
    assert.throws(() => gate.enter(), GateClosedError);
  });

  it("close() called twice waits for the same thing", async () => {
    const gate = new Gate();
    const guard = gate.enter();
    const first = gate.close();
    const second = gate.close();
    assert.equal(first, second);
    guard.release();
    await Promise.all([first, second]);
  });

  it("resolves a close pending on a guard released in the same tick", async () => {
    const gate = new Gate();
    const guard = gate.enter();
    const closing = gate.close();
    guard.release();
    await closing;
    assert.equal(gate.isClosed, true);
  });

  it("release is idempotent: a second release never frees another holder", async () => {
    const gate = new Gate();
    const a = gate.enter("a");
    gate.enter("b");
    a.release();
    a.release();
    assert.deepEqual(
      gate.holders().map((h) => h.holder),
      ["b"],
    );
    const closing = tracked(gate.close());
    await settle();
    assert.equal(closing.state.done, false);
  });

  it("guards are Disposable: `using` releases at scope exit", async () => {
    const gate = new Gate();
    {
      using guard = gate.enter("scoped");
      assert.equal(guard.isReleased, false);
      assert.equal(gate.holders().length, 1);
    }
    assert.equal(gate.holders().length, 0);
    await gate.close();
  });

  it("tryClone enters again while open, returns undefined once closing, refuses released guards", async () => {
    const gate = new Gate();
    const guard = gate.enter("handler");
    const clone = guard.tryClone("poller");
    assert.ok(clone);
    assert.equal(clone.holder, "poller");
    guard.release();
    const closing = tracked(gate.close());
    await settle();
    assert.equal(closing.state.done, false, "the clone holds the gate");
    assert.throws(() => guard.tryClone(), TypeError);
    clone.release();
    await closing.promise;
    const fresh = new Gate();
    const g2 = fresh.enter();
    const c = fresh.close();
    assert.equal(g2.tryClone(), undefined);
    g2.release();
    await c;
  });

  describe("hierarchy", () => {
    it("a child's guards hold the parent open", async () => {
      const parent = new Gate("t");
      const child = parent.child("walreceiver");
      const guard = child.enter("poller");
      const closing = tracked(parent.close());
      await settle();
      assert.equal(closing.state.done, false);
      assert.deepEqual(parent.holders(), [
        { gate: "t/walreceiver", holder: "poller", since: guard.since },
      ]);
      guard.release();
      await closing.promise;
      assert.equal(child.isClosed, true);
    });

    it("closing a child waits only for its subtree while the parent stays open", async () => {
      const parent = new Gate("t");
      const child = parent.child("walreceiver");
      const grandchild = child.child("connection");
      const parentGuard = parent.enter("flush");
      const inner = grandchild.enter("poller");
      const childClosed = tracked(child.close());
      assert.equal(grandchild.isClosing, true, "closing marks descendants at once");
      assert.equal(parent.isClosing, false);
      const later = parent.enter("still open");
      later.release();
      await settle();
      assert.equal(childClosed.state.done, false);
      inner.release();
      await childClosed.promise;
      assert.equal(parent.isClosed, false);
      assert.equal(parentGuard.isReleased, false);
      parentGuard.release();
      await parent.close();
    });

    it("closing the parent closes its children first: entering a child of a closing parent throws", async () => {
      const parent = new Gate("t");
      const child = parent.child("w");
      const guard = parent.enter();
      const closing = parent.close();
      assert.equal(child.isClosing, true);
      assert.throws(() => child.enter("late"), GateClosedError);
      assert.throws(() => parent.child("new"), GateClosedError);
      guard.release();
      await closing;
      assert.equal(child.isClosed, true);
    });

    it("a child gate closing while the parent closes: both resolve, once each guard is gone", async () => {
      const parent = new Gate("t");
      const child = parent.child("w");
      const g = child.enter("handler");
      const childClosing = child.close();
      const parentClosing = tracked(parent.close());
      assert.equal(child.close(), childClosing);
      await settle();
      assert.equal(parentClosing.state.done, false);
      g.release();
      await Promise.all([childClosing, parentClosing.promise]);
      assert.equal(parent.isClosed && child.isClosed, true);
    });

    it("a closed child unlinks from its parent, so restarting a subtree does not accumulate", async () => {
      const parent = new Gate("t");
      for (let i = 0; i < 1000; i++) {
        const child = parent.child(`walreceiver ${i}`);
        child.enter("x").release();
        await child.close();
      }
      assert.equal(parent.holders().length, 0);
      await parent.close();
    });
  });

  describe("slow close reports", () => {
    it("reports holders still inside after the threshold, then who kept it", async () => {
      const slow: SlowCloseEvent[] = [];
      const kept: KeptClosingEvent[] = [];
      const gate = new Gate("t", {
        slowCloseMs: 20,
        observer: { slowClose: (e) => slow.push(e), keptClosing: (e) => kept.push(e) },
      });
      const fast = gate.enter("fast");
      const child = gate.child("walreceiver");
      const stuck = child.enter("stuck poller");
      const closing = gate.close();
      fast.release();
      await new Promise((r) => setTimeout(r, 60));
      assert.equal(slow.length, 1, "one report, from the gate close() was called on");
      assert.equal(slow[0]!.gate, "t");
      assert.deepEqual(
        slow[0]!.holders.map((h) => `${h.gate}:${h.holder}`),
        ["t/walreceiver:stuck poller"],
      );
      assert.ok(slow[0]!.elapsedMs >= 20);
      stuck.release();
      await closing;
      assert.equal(kept.length, 1);
      assert.equal(kept[0]!.holder.holder, "stuck poller");
      assert.equal(kept[0]!.gate, "t");
    });

    it("says nothing when close finishes within the threshold", async () => {
      const slow: SlowCloseEvent[] = [];
      const gate = new Gate("t", { slowCloseMs: 50, observer: { slowClose: (e) => slow.push(e) } });
      const g = gate.enter();
      const closing = gate.close();
      g.release();
      await closing;
      await new Promise((r) => setTimeout(r, 80));
      assert.equal(slow.length, 0);
    });

    it("rejects a bad threshold with a RangeError naming it", () => {
      assert.throws(() => new Gate("g", { slowCloseMs: -1 }), /-1/);
    });
  });

  it("close(token) rejects when the waiter's token is cancelled, and the gate still closes", async () => {
    const gate = new Gate();
    const guard = gate.enter();
    const token = new CancellationToken();
    const waiting = gate.close(token);
    token.cancel("impatient");
    await assert.rejects(waiting, CancelledError);
    assert.equal(gate.isClosing, true);
    guard.release();
    await gate.close();
    assert.equal(gate.isClosed, true);
  });
});
