import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CancellationToken,
  CancelledError,
  Channel,
  Gate,
  GateClosedError,
  JoinSet,
  sleep,
  TaskRegistry,
} from "../../src/lifecycle/index.js";

function owner() {
  return { token: new CancellationToken(), gate: new Gate("set"), registry: new TaskRegistry() };
}

describe("JoinSet", () => {
  it("joins tasks in the order they finish, then returns undefined when empty", async () => {
    const o = owner();
    const set = new JoinSet<string>(o);
    const order = new Channel<string>({ capacity: 10 });
    const gates = { slow: new CancellationToken(), fast: new CancellationToken() };
    set.spawn("slow", "Background", async () => {
      await gates.slow.cancelled();
      return "slow";
    });
    set.spawn("fast", "Background", async () => {
      await gates.fast.cancelled();
      return "fast";
    });
    assert.equal(set.size, 2);
    gates.fast.cancel();
    const first = await set.joinNext();
    gates.slow.cancel();
    const second = await set.joinNext();
    assert.deepEqual(
      [first?.outcome, second?.outcome],
      [
        { status: "succeeded", value: "fast" },
        { status: "succeeded", value: "slow" },
      ],
    );
    assert.equal(await set.joinNext(), undefined);
    assert.equal(set.size, 0);
    order.close();
  });

  it("keeps outcomes of tasks that finish before anyone joins", async () => {
    const set = new JoinSet<number>(owner());
    set.spawn("a", "Background", () => 1);
    set.spawn("b", "Background", () => {
      throw new Error("b failed");
    });
    await sleep(5, new CancellationToken());
    const statuses = [
      (await set.joinNext())?.outcome.status,
      (await set.joinNext())?.outcome.status,
    ];
    assert.deepEqual(statuses.sort(), ["failed", "succeeded"]);
  });

  it("a cancelled joinNext loses no outcome", async () => {
    const set = new JoinSet<string>(owner());
    const release = new CancellationToken();
    set.spawn("t", "Background", async () => {
      await release.cancelled();
      return "kept";
    });
    const waiter = new CancellationToken();
    const joining = set.joinNext(waiter);
    waiter.cancel();
    await assert.rejects(joining, CancelledError);
    release.cancel();
    const next = await set.joinNext();
    assert.deepEqual(next?.outcome, { status: "succeeded", value: "kept" });
  });

  it("shutdown cancels every task, waits for all, and returns their outcomes", async () => {
    const o = owner();
    const set = new JoinSet<void>(o);
    for (let i = 0; i < 5; i++)
      set.spawn(`sleeper ${i}`, "Background", (ctx) => sleep(60_000, ctx.token));
    const joined = await set.shutdown("bye");
    assert.equal(joined.length, 5);
    assert.ok(joined.every((j) => j.outcome.status === "cancelled"));
    assert.equal(o.gate.holders().length, 0);
    assert.equal(o.registry.size, 0);
    assert.equal(o.token.isCancelled, false, "the owner is untouched");
  });

  it("await using shuts it down at scope exit", async () => {
    const o = owner();
    let task: { state: string } | undefined;
    {
      await using set = new JoinSet<void>(o);
      task = set.spawn("s", "Background", (ctx) => sleep(60_000, ctx.token));
    }
    assert.equal(task.state, "cancelled");
  });

  it("refuses to spawn once the owner's gate is closing", async () => {
    const o = owner();
    const set = new JoinSet<void>(o);
    await o.gate.close();
    assert.throws(() => set.spawn("late", "Background", () => {}), GateClosedError);
    assert.equal(set.size, 0);
  });

  it("tryJoinNext returns a finished task without waiting, else undefined", async () => {
    const set = new JoinSet<number>(owner());
    const gate = new CancellationToken();
    set.spawn("slow", "Background", async () => {
      await gate.cancelled();
      return 2;
    });
    set.spawn("fast", "Background", () => 1);
    assert.equal(set.tryJoinNext(), undefined, "nothing has finished yet");
    await sleep(5, new CancellationToken());
    assert.deepEqual(set.tryJoinNext()?.outcome, { status: "succeeded", value: 1 });
    assert.equal(set.tryJoinNext(), undefined);
    gate.cancel();
    assert.deepEqual((await set.joinNext())?.outcome, { status: "succeeded", value: 2 });
  });
});
