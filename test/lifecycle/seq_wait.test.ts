import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CancellationToken,
  CancelledError,
  SeqWait,
  ShutdownError,
  TimeoutError,
} from "../../src/lifecycle/index.js";

describe("SeqWait", () => {
  it("resolves at once when the target is already reached", async () => {
    const s = new SeqWait(10n);
    assert.equal(await s.wait(10n, { token: new CancellationToken() }), 10n);
    assert.equal(s.wouldWait(10n), false);
    assert.equal(s.wouldWait(11n), true);
  });

  it("advance wakes every waiter at or below the new value, lowest target first", async () => {
    const token = new CancellationToken();
    const s = new SeqWait(0n);
    const woken: bigint[] = [];
    const waits = [50n, 10n, 30n, 70n, 20n].map((target) =>
      s.wait(target, { token }).then(() => woken.push(target)),
    );
    s.advance(30n);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(woken, [10n, 20n, 30n]);
    assert.equal(s.waiters, 2);
    s.advance(100n);
    await Promise.all(waits);
    assert.deepEqual(woken, [10n, 20n, 30n, 50n, 70n]);
  });

  it("works across the 32-bit boundary of a 64-bit LSN", async () => {
    const token = new CancellationToken();
    const s = new SeqWait(0xffff_ffffn);
    const w = s.wait(0x1_0000_0000n, { token });
    s.advance(0x1_0000_0008n);
    assert.equal(await w, 0x1_0000_0008n);
  });

  it("refuses to move backwards, and ignores the same value", () => {
    const s = new SeqWait(5, { name: "lastRecordLsn" });
    assert.equal(s.advance(5), 5);
    assert.throws(
      () => s.advance(4),
      (e: unknown) => e instanceof RangeError && /lastRecordLsn.*5.*4/.test(e.message),
    );
  });

  it("a cancelled waiter is rejected and removed; others are unaffected", async () => {
    const s = new SeqWait(0);
    const a = new CancellationToken();
    const b = new CancellationToken();
    const wa = s.wait(10, { token: a });
    const wb = s.wait(10, { token: b });
    a.cancel("client went away");
    await assert.rejects(
      wa,
      (e: unknown) => e instanceof CancelledError && e.reason === "client went away",
    );
    assert.equal(s.waiters, 1);
    s.advance(10);
    assert.equal(await wb, 10);
  });

  it("times out with the description in the message", async () => {
    const s = new SeqWait(0);
    await assert.rejects(
      s.wait(1, {
        token: new CancellationToken(),
        timeoutMs: 5,
        describe: () => "waiting for 0/1; walreceiver: connecting",
      }),
      (e: unknown) =>
        e instanceof TimeoutError && e.ms === 5 && /walreceiver: connecting/.test(e.message),
    );
    assert.equal(s.waiters, 0);
  });

  it("shutdown wakes all with an error and refuses later waits", async () => {
    const s = new SeqWait(0);
    const token = new CancellationToken();
    const w1 = s.wait(5, { token });
    const w2 = s.wait(7, { token });
    s.shutdown();
    await assert.rejects(w1, ShutdownError);
    await assert.rejects(w2, ShutdownError);
    await assert.rejects(s.wait(1, { token }), ShutdownError);
    const custom = new SeqWait(0);
    const w3 = custom.wait(1, { token });
    custom.shutdown(new Error("timeline deleted"));
    await assert.rejects(w3, /timeline deleted/);
  });

  it("a cancelled token or bad timeout rejects without registering", async () => {
    const s = new SeqWait(0);
    const t = new CancellationToken();
    t.cancel();
    await assert.rejects(s.wait(1, { token: t }), CancelledError);
    await assert.rejects(s.wait(1, { token: new CancellationToken(), timeoutMs: -3 }), /-3/);
    assert.equal(s.waiters, 0);
  });
});
