import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CancellationToken,
  Gate,
  globalTaskRegistry,
  RequestContext,
  sleep,
  spawn,
  TaskKind,
  TaskRegistry,
} from "../../src/lifecycle/index.js";

describe("TaskRegistry", () => {
  it("renders live tasks with id, name, kind, state, parent, start time and gate", async () => {
    const registry = new TaskRegistry();
    const token = new CancellationToken();
    const gate = new Gate("timeline main");
    const before = Date.now();
    const t = spawn({ token, gate, registry, name: "flush", kind: TaskKind.LayerFlush }, (ctx) =>
      sleep(60_000, ctx.token),
    );
    const [info] = registry.list();
    assert.ok(info);
    assert.equal(info.id, t.id);
    assert.equal(info.name, "flush");
    assert.equal(info.kind, TaskKind.LayerFlush);
    assert.equal(info.state, "running");
    assert.equal(info.parentId, undefined);
    assert.equal(info.gate, "timeline main");
    assert.ok(info.startedAt >= before && info.startedAt <= Date.now());
    assert.deepEqual([...registry.countByKind()], [[TaskKind.LayerFlush, 1]]);
    t.cancel();
    assert.equal(registry.list()[0]?.state, "cancelling");
    await t.join();
    assert.equal(registry.size, 0, "ended tasks are not kept");
  });

  it("shows a task whose parent already ended as a root that remembers its parent", async () => {
    const registry = new TaskRegistry();
    const token = new CancellationToken();
    const gate = new Gate("g");
    let orphanId = 0;
    const parent = spawn({ token, gate, registry, name: "parent", kind: "Background" }, (ctx) => {
      // Spawned on the owner's token (not the parent's), so it outlives the parent.
      const orphan = spawn({ token, gate, parent: ctx, name: "orphan", kind: "Background" }, (c) =>
        sleep(60_000, c.token),
      );
      orphanId = orphan.id;
    });
    await parent.join();
    const tree = registry.tree();
    assert.equal(tree.length, 1);
    assert.equal(tree[0]!.id, orphanId);
    assert.equal(tree[0]!.parentId, parent.id);
    token.cancel();
    await gate.close();
  });

  it("spawn uses the global registry when given none", async () => {
    const before = globalTaskRegistry.size;
    const t = spawn(
      { token: new CancellationToken(), gate: new Gate(), name: "g", kind: "Background" },
      (ctx) => sleep(60_000, ctx.token),
    );
    assert.equal(globalTaskRegistry.size, before + 1);
    t.cancel();
    await t.join();
    assert.equal(globalTaskRegistry.size, before);
  });
});

describe("RequestContext", () => {
  it("child keeps the task, token and task kind; detachedChild takes a new token and kind", () => {
    const token = new CancellationToken();
    const root = RequestContext.root(TaskKind.HttpRequest, token);
    const child = root.child("WaitLsn");
    assert.equal(child.kind, "WaitLsn");
    assert.equal(child.taskKind, TaskKind.HttpRequest);
    assert.equal(child.token, token);
    const other = token.child();
    const detached = root.detachedChild(TaskKind.Background, other);
    assert.equal(detached.taskKind, TaskKind.Background);
    assert.equal(detached.token, other);
    token.cancel();
    assert.throws(() => child.throwIfCancelled(), /cancelled/);
  });

  it("isWithin follows the chain of spawning tasks", async () => {
    const token = new CancellationToken();
    const gate = new Gate();
    const registry = new TaskRegistry();
    const results: boolean[] = [];
    const outer = spawn(
      { token, gate, registry, name: "outer", kind: "Background" },
      async (ctx) => {
        const inner = spawn(
          { token: ctx.token, gate, parent: ctx, name: "inner", kind: "Background" },
          (ictx) => {
            results.push(ictx.isWithin(outer), ictx.isWithin(inner));
          },
        );
        await inner.join();
      },
    );
    const unrelated = spawn(
      { token, gate, registry, name: "unrelated", kind: "Background" },
      (ctx) => {
        results.push(ctx.isWithin(outer));
      },
    );
    await Promise.all([outer.join(), unrelated.join()]);
    assert.deepEqual(results.sort(), [false, true, true]);
  });
});
