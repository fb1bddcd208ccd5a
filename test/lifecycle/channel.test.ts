import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CancellationToken,
  CancelledError,
  Channel,
  ChannelClosedError,
} from "../../src/lifecycle/index.js";

const settle = () => new Promise((r) => setImmediate(r));

describe("Channel", () => {
  it("passes items in FIFO order", async () => {
    const t = new CancellationToken();
    const ch = new Channel<number>({ capacity: 3 });
    for (const n of [1, 2, 3]) await ch.send(n, t);
    assert.deepEqual([await ch.recv(t), await ch.recv(t), await ch.recv(t)], [1, 2, 3]);
  });

  it("makes send wait while full, and wakes it when room appears", async () => {
    const t = new CancellationToken();
    const ch = new Channel<number>({ capacity: 1 });
    await ch.send(1, t);
    let sent = false;
    const pending = ch.send(2, t).then(() => {
      sent = true;
    });
    await settle();
    assert.equal(sent, false);
    assert.equal(ch.size, 1);
    assert.equal(await ch.recv(t), 1);
    await pending;
    assert.equal(await ch.recv(t), 2);
  });

  it("bounds by weight, but admits one oversized item into an empty channel", async () => {
    const t = new CancellationToken();
    const ch = new Channel<Uint8Array>({ capacity: 10, maxWeight: 100, weigh: (b) => b.length });
    assert.equal(ch.trySend(new Uint8Array(60)), true);
    assert.equal(ch.trySend(new Uint8Array(60)), false, "would exceed 100 bytes");
    assert.equal(ch.weight, 60);
    await ch.recv(t);
    assert.equal(ch.trySend(new Uint8Array(500)), true, "oversized into an empty channel");
    assert.equal(ch.trySend(new Uint8Array(1)), false);
  });

  it("a cancelled send does not deliver its item; a cancelled recv loses nothing", async () => {
    const ch = new Channel<string>({ capacity: 1 });
    const t = new CancellationToken();
    await ch.send("a", t);
    const sendToken = new CancellationToken();
    const blocked = ch.send("never", sendToken);
    sendToken.cancel();
    await assert.rejects(blocked, CancelledError);
    assert.equal(await ch.recv(t), "a");
    assert.equal(ch.size, 0, "the cancelled item was not queued");

    const recvToken = new CancellationToken();
    const waiting = ch.recv(recvToken);
    recvToken.cancel();
    await assert.rejects(waiting, CancelledError);
    await ch.send("b", t);
    assert.equal(await ch.recv(t), "b");
  });

  it("close: waiting senders fail, receivers drain then get ChannelClosedError", async () => {
    const t = new CancellationToken();
    const ch = new Channel<number>({ capacity: 1, name: "frozen layers" });
    await ch.send(1, t);
    const blocked = ch.send(2, t);
    ch.close();
    ch.close();
    await assert.rejects(
      blocked,
      (e: unknown) => e instanceof ChannelClosedError && /frozen layers/.test(e.message),
    );
    await assert.rejects(ch.send(3, t), ChannelClosedError);
    assert.throws(() => ch.trySend(3), ChannelClosedError);
    assert.equal(await ch.recv(t), 1);
    await assert.rejects(ch.recv(t), ChannelClosedError);
  });

  it("close wakes a waiting receiver", async () => {
    const t = new CancellationToken();
    const ch = new Channel<number>({ capacity: 1 });
    const waiting = ch.recv(t);
    ch.close();
    await assert.rejects(waiting, ChannelClosedError);
  });

  it("iterate() yields until closed and drained", async () => {
    const t = new CancellationToken();
    const ch = new Channel<number>({ capacity: 4 });
    const got: number[] = [];
    const consumer = (async () => {
      for await (const n of ch.iterate(t)) got.push(n);
    })();
    for (let i = 0; i < 10; i++) await ch.send(i, t);
    ch.close();
    await consumer;
    assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it("rejects bad options and weights with errors naming the value", () => {
    assert.throws(() => new Channel({ capacity: 0 }), /capacity must be an integer >= 1, got 0/);
    assert.throws(() => new Channel({ capacity: 1, maxWeight: 10 }), /weigh/);
    const ch = new Channel<number>({ capacity: 1, maxWeight: 10, weigh: () => -1 });
    assert.throws(() => ch.trySend(1), /got -1/);
  });
});
