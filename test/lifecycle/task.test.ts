import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import {
  CancellationToken,
  Gate,
  GateClosedError,
  RequestContext,
  sleep,
  spawn,
  TaskKind,
  TaskRegistry,
} from "../../src/lifecycle/index.js";

let unhandled: unknown[] = [];
const onUnhandled = (e: unknown) => unhandled.push(e);

function owner(name = "timeline") {
  return { token: new CancellationToken(), gate: new Gate(name), registry: new TaskRegistry() };
}

describe("spawn and Task", () => {
  beforeEach(() => {
    unhandled = [];
    process.on("unhandledRejection", onUnhandled);
  });
  afterEach(async () => {
    await new Promise((r) => setImmediate(r));
    process.off("unhandledRejection", onUnhandled);
    assert.deepEqual(unhandled, [], "no unhandled rejection");
  });

  it("runs the body after spawn returns, with a child token and a held guard", async () => {
    const o = owner();
    let bodyRan = false;
    const task = spawn({ ...o, name: "worker", kind: TaskKind.Background }, (ctx) => {
      bodyRan = true;
      assert.equal(ctx.taskKind, TaskKind.Background);
      assert.equal(ctx.task?.id, task.id);
      assert.deepEqual(
        o.gate.holders().map((h) => h.holder),
        ["Background worker"],
      );
      return "done";
    });
    assert.equal(bodyRan, false, "the body starts on a later microtask");
    assert.equal(o.registry.size, 1);
    const outcome = await task.join();
    assert.deepEqual(outcome, { status: "succeeded", value: "done" });
    assert.equal(o.gate.holders().length, 0);
    assert.equal(o.registry.size, 0);
    assert.equal(o.token.childCount, 0, "the task's token is unlinked");
  });

  it("join resolves only after the guard is released", async () => {
    const o = owner();
    const task = spawn({ ...o, name: "t", kind: "Background" }, () => 1);
    await task.join();
    assert.equal(task.isFinished, true);
    assert.equal(o.gate.holders().length, 0);
    await o.gate.close();
  });

  it("a failing task is an outcome, never an unhandled rejection, and reaches the observer", async () => {
    const ended: string[] = [];
    const o = owner();
    o.registry.observer = {
      taskEnded: (info, error) => ended.push(`${info.name}: ${(error as Error).message}`),
    };
    const task = spawn({ ...o, name: "bad", kind: "Background" }, async () => {
      await Promise.resolve();
      throw new Error("boom");
    });
    const sync = spawn({ ...o, name: "bad sync", kind: "Background" }, () => {
      throw new Error("sync boom");
    });
    const outcome = await task.join();
    assert.equal(outcome.status, "failed");
    assert.equal((await sync.join()).status, "failed");
    await assert.rejects(task.result(), /boom/);
    assert.deepEqual(ended.sort(), ["bad sync: sync boom", "bad: boom"]);
  });

  it("cancelling the owner's token cancels the task; closing the gate awaits it", async () => {
    const o = owner();
    let cleanedUp = false;
    const task = spawn({ ...o, name: "sleeper", kind: "Background" }, async (ctx) => {
      try {
        await sleep(60_000, ctx.token);
      } finally {
        await sleep(5, new CancellationToken());
        cleanedUp = true;
      }
    });
    await sleep(1, new CancellationToken());
    assert.equal(task.state, "running");
    o.token.cancel("shutdown");
    assert.equal(task.state, "cancelling");
    await o.gate.close();
    assert.equal(cleanedUp, true, "gate close waited for the task's cleanup");
    assert.equal(task.state, "cancelled");
    const outcome = await task.join();
    assert.equal(outcome.status, "cancelled");
  });

  it("task.cancel() cancels only that task, not the owner or its siblings", async () => {
    const o = owner();
    const a = spawn({ ...o, name: "a", kind: "Background" }, (ctx) => sleep(60_000, ctx.token));
    const b = spawn({ ...o, name: "b", kind: "Background" }, (ctx) => sleep(60_000, ctx.token));
    a.cancel();
    assert.equal((await a.join()).status, "cancelled");
    assert.equal(o.token.isCancelled, false);
    assert.equal(b.state, "running");
    o.token.cancel();
    await o.gate.close();
  });

  it("cancel during spawn: a cancelled owner still runs the body, on a born-cancelled token", async () => {
    const o = owner();
    o.token.cancel("early");
    const task = spawn({ ...o, name: "late", kind: "Background" }, (ctx) => {
      ctx.throwIfCancelled();
      return "unreachable";
    });
    const outcome = await task.join();
    assert.equal(outcome.status, "cancelled");
    await o.gate.close();
  });

  it("spawning into a closing gate throws GateClosedError and starts nothing", async () => {
    const o = owner();
    const closing = o.gate.close();
    let ran = false;
    assert.throws(
      () =>
        spawn({ ...o, name: "too late", kind: "Background" }, () => {
          ran = true;
        }),
      GateClosedError,
    );
    await closing;
    await sleep(1, new CancellationToken());
    assert.equal(ran, false);
    assert.equal(o.registry.size, 0);
    assert.equal(o.token.childCount, 0, "no token was derived");
  });

  it("rejects misuse with TypeError naming the problem", () => {
    const o = owner();
    assert.throws(() => spawn({ ...o, name: "", kind: "Background" }, () => 1), /non-empty name/);
    assert.throws(() => spawn({ ...o, name: "n", kind: "" }, () => 1), /needs a kind/);
    assert.throws(() => spawn({ ...o, name: "n", kind: "K" }, 5 as never), /function body/);
  });

  it("work a body leaves behind is cancelled when the task ends", async () => {
    const o = owner();
    let leftover: CancellationToken | undefined;
    const task = spawn({ ...o, name: "parent", kind: "Background" }, (ctx) => {
      leftover = ctx.token.child();
    });
    await task.join();
    assert.equal(leftover?.isCancelled, true);
  });

  it("nested tasks form a tree in the registry and under the context", async () => {
    const o = owner();
    const ready = new CancellationToken();
    const manager = spawn(
      { ...o, name: "manager", kind: TaskKind.WalReceiverManager },
      async (ctx) => {
        const handler = spawn(
          {
            token: ctx.token,
            gate: o.gate,
            parent: ctx,
            name: "handler",
            kind: TaskKind.WalReceiverConnectionHandler,
          },
          async (hctx) => {
            const poller = spawn(
              {
                token: hctx.token,
                gate: o.gate,
                parent: hctx,
                name: "poller",
                kind: TaskKind.WalReceiverConnectionPoller,
              },
              async (pctx) => {
                assert.equal(pctx.isWithin(manager), true);
                ready.cancel();
                await sleep(60_000, pctx.token);
              },
            );
            await poller.join();
          },
        );
        await handler.join();
      },
    );
    await ready.cancelled();
    const tree = o.registry.tree();
    assert.equal(tree.length, 1);
    assert.equal(tree[0]!.name, "manager");
    assert.equal(tree[0]!.children[0]!.name, "handler");
    assert.equal(tree[0]!.children[0]!.children[0]!.kind, TaskKind.WalReceiverConnectionPoller);
    assert.equal(tree[0]!.children[0]!.children[0]!.gate, "timeline");
    o.token.cancel();
    await o.gate.close();
    assert.equal(o.registry.size, 0);
    assert.equal(manager.state, "succeeded");
  });

  it("join(token) stops waiting when the waiter is cancelled; the task goes on", async () => {
    const o = owner();
    const task = spawn({ ...o, name: "long", kind: "Background" }, (ctx) =>
      sleep(60_000, ctx.token),
    );
    const waiter = new CancellationToken();
    const joining = task.join(waiter);
    waiter.cancel();
    await assert.rejects(joining, /cancelled/);
    assert.equal(task.state, "running");
    task.cancel();
    await task.join();
  });

  it("a root context can spawn through its registry", async () => {
    const registry = new TaskRegistry();
    const root = RequestContext.root(TaskKind.Main, new CancellationToken(), registry);
    const gate = new Gate("main");
    const t = spawn(
      { token: root.token, gate, parent: root, name: "child", kind: "Background" },
      () => {
        assert.equal(registry.size, 1);
      },
    );
    await t.result();
    assert.equal(registry.size, 0);
  });
});
