// Property-based tests of the lifecycle library: random trees of tokens, gates and
// tasks under random schedules of spawn/cancel/close/release, and random schedules
// against SeqWait and Channel, each checked against a small model.
//
// Every property is seeded and bounded so that the file stays well under 30 s on a
// 2-core machine. To reproduce a failure, fast-check prints the seed and the path.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import {
  CancellationToken,
  CancelledError,
  Channel,
  ChannelClosedError,
  Gate,
  GateClosedError,
  type GateGuard,
  JoinSet,
  type RequestContext,
  SeqWait,
  ShutdownError,
  sleep,
  spawn,
  type Task,
  TaskRegistry,
  TimeoutError,
  withTimeout,
} from "../../src/lifecycle/index.js";

// Fixed, so that `npm test` is reproducible; set TIDELINE_PROPERTY_SEED (and
// TIDELINE_PROPERTY_RUNS, a multiplier) to explore further.
const SEED = Number(process.env.TIDELINE_PROPERTY_SEED ?? 20_261_126);
const RUNS = Number(process.env.TIDELINE_PROPERTY_RUNS ?? 1);

// ---------------------------------------------------------------------------------
// Turns of the event loop

/** Lets every pending promise reaction run (and the reactions they queue). */
async function microtasks(n = 12): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}
const immediate = () => new Promise<void>((resolve) => setImmediate(resolve));
const timer = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Awaits `promise`, failing (instead of hanging the suite) if it never settles. */
async function settlesWithin<T>(promise: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let handle: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    handle = setTimeout(() => reject(new Error(`${what} never settled`)), ms);
  });
  try {
    return await Promise.race([promise, hang]);
  } finally {
    clearTimeout(handle);
  }
}

// ---------------------------------------------------------------------------------
// Unhandled rejections: none may happen anywhere in this file.

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => {
  unhandled.push(reason);
};
before(() => {
  process.on("unhandledRejection", onUnhandled);
});
after(() => {
  process.off("unhandledRejection", onUnhandled);
});
async function assertNoUnhandledRejection(): Promise<void> {
  // 'unhandledRejection' is emitted after the microtask queue drains.
  await immediate();
  await immediate();
  assert.deepEqual(unhandled, [], "no unhandled rejection");
}

// ---------------------------------------------------------------------------------
// Trees of tokens, gates and tasks

const BODIES = [
  "sleepLoop", // sleeps (short or "forever") in a loop until cancelled
  "recvLoop", // receives from its node's channel until cancelled
  "seqLoop", // waits for its node's SeqWait to move on, until cancelled
  "slowStop", // waits until cancelled, then takes a timer turn to stop
  "timeoutLoop", // withTimeout(sleep) in a loop, until cancelled
  "finite", // sleeps a little, then returns or throws
  "throws", // fails at once
  "guarded", // holds an extra guard of its node's gate while it sleeps
  "nested", // spawns a sub-task under its own token and joins it
  "joinSet", // runs two sub-tasks in a JoinSet, drained at cancellation
  "hookThrows", // registers an onCancel hook that throws, then returns or waits
] as const;
type Body = (typeof BODIES)[number];
/** Bodies that end only when their token is cancelled. */
const FOREVER: ReadonlySet<Body> = new Set([
  "sleepLoop",
  "recvLoop",
  "seqLoop",
  "slowStop",
  "timeoutLoop",
]);

type TreeOp =
  | { k: "node"; at: number }
  | { k: "spawn"; at: number; body: Body; p: number }
  | { k: "cancelTask"; i: number }
  | { k: "shutdown"; at: number }
  | { k: "cancel"; at: number }
  | { k: "close"; at: number }
  | { k: "enter"; at: number }
  | { k: "clone"; i: number }
  | { k: "release"; i: number; twice: boolean }
  | { k: "send"; at: number }
  | { k: "advance"; at: number; by: number }
  | { k: "turn"; how: "micro" | "immediate" | "timer"; n: number };

const nodeIndex = fc.nat(63);
const treeOp: fc.Arbitrary<TreeOp> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant("node" as const), at: nodeIndex }) },
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant("spawn" as const),
      at: nodeIndex,
      body: fc.constantFrom(...BODIES),
      p: fc.nat(11),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("cancelTask" as const), i: fc.nat(63) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("shutdown" as const), at: nodeIndex }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("cancel" as const), at: nodeIndex }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("close" as const), at: nodeIndex }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("enter" as const), at: nodeIndex }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("clone" as const), i: fc.nat(63) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("release" as const),
      i: fc.nat(63),
      twice: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("send" as const), at: nodeIndex }) },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("advance" as const), at: nodeIndex, by: fc.nat(3) }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant("turn" as const),
      how: fc.constantFrom("micro" as const, "immediate" as const, "timer" as const),
      n: fc.integer({ min: 1, max: 3 }),
    }),
  },
);

interface TreeNode {
  readonly id: number;
  readonly parent: TreeNode | undefined;
  readonly token: CancellationToken;
  readonly gate: Gate;
  readonly children: TreeNode[];
  readonly tasks: TaskModel[];
  readonly guards: GateGuard[];
  readonly channel: Channel<number>;
  readonly seq: SeqWait<number>;
  /** `cancel()` was called on this node's token. */
  cancelled: boolean;
  /** `close()` was called on this node's gate. */
  closePromise: Promise<void> | undefined;
  closeResolved: boolean;
}

interface TaskModel {
  readonly node: TreeNode;
  readonly body: Body;
  readonly task: Task<unknown>;
  /** `task.cancel()` was called. */
  cancelledSelf: boolean;
  /** Tasks its body spawned. */
  readonly subtasks: Task<unknown>[];
}

const isCancelledInModel = (n: TreeNode): boolean =>
  n.cancelled || (n.parent !== undefined && isCancelledInModel(n.parent));
const isClosingInModel = (n: TreeNode): boolean =>
  n.closePromise !== undefined || (n.parent !== undefined && isClosingInModel(n.parent));
const isWithin = (n: TreeNode, root: TreeNode): boolean =>
  n === root || (n.parent !== undefined && isWithin(n.parent, root));
const ENDED = new Set(["succeeded", "failed", "cancelled"]);
const HOOK_FAILED = "onCancel hook failed";

/**
 * Cancels via `cancel`, accepting the AggregateError that `cancel()` throws (after
 * cancelling everything) when onCancel hooks of the "hookThrows" bodies throw.
 */
function cancelling(cancel: () => void): void {
  try {
    cancel();
  } catch (error) {
    assert.ok(error instanceof AggregateError, `cancel() threw ${error}`);
    for (const e of error.errors) assert.equal((e as Error).message, HOOK_FAILED);
  }
}

class World {
  readonly registry = new TaskRegistry();
  readonly nodes: TreeNode[] = [];
  readonly tasks: TaskModel[] = [];
  readonly guards: GateGuard[] = [];
  /** Invariant violations seen inside callbacks (where throwing would be swallowed). */
  readonly violations: string[] = [];
  readonly slowClosed = new Set<string>();
  readonly root: TreeNode;

  constructor() {
    const gate = new Gate("timeline", {
      slowCloseMs: 1,
      observer: {
        slowClose: (e) => {
          this.slowClosed.add(e.gate);
          if (e.holders.length === 0)
            this.violations.push(`slowClose of ${e.gate} without holders`);
        },
        keptClosing: (e) => {
          if (!this.slowClosed.has(e.gate)) {
            this.violations.push(`keptClosing of ${e.gate} before its slowClose`);
          }
        },
      },
    });
    this.root = this.#makeNode(undefined, new CancellationToken(), gate);
  }

  #makeNode(parent: TreeNode | undefined, token: CancellationToken, gate: Gate): TreeNode {
    const node: TreeNode = {
      id: this.nodes.length,
      parent,
      token,
      gate,
      children: [],
      tasks: [],
      guards: [],
      channel: new Channel<number>({ capacity: 4, name: `ch${this.nodes.length}` }),
      seq: new SeqWait(0),
      cancelled: false,
      closePromise: undefined,
      closeResolved: false,
    };
    this.nodes.push(node);
    parent?.children.push(node);
    return node;
  }

  node(at: number): TreeNode {
    return this.nodes[at % this.nodes.length]!;
  }

  subtree(n: TreeNode): TreeNode[] {
    return this.nodes.filter((m) => isWithin(m, n));
  }

  addNode(parent: TreeNode): void {
    if (isClosingInModel(parent)) {
      assert.throws(() => parent.gate.child(`n${this.nodes.length}`), GateClosedError);
      return;
    }
    const gate = parent.gate.child(`n${this.nodes.length}`);
    this.#makeNode(parent, parent.token.child(), gate);
  }

  spawn(node: TreeNode, body: Body, p: number): void {
    const owner = { token: node.token, gate: node.gate, registry: this.registry };
    const options = { ...owner, name: `${body}#${this.tasks.length}`, kind: "UnitTest" };
    if (isClosingInModel(node)) {
      const before = this.registry.size;
      const children = node.token.childCount;
      assert.throws(() => spawn(options, () => undefined), GateClosedError);
      assert.equal(this.registry.size, before, "a refused spawn registers nothing");
      assert.equal(node.token.childCount, children, "a refused spawn derives no token");
      return;
    }
    const subtasks: Task<unknown>[] = [];
    const task = spawn<unknown>(options, (ctx) => this.#run(body, p, node, ctx, subtasks));
    const model: TaskModel = { node, body, task, cancelledSelf: false, subtasks };
    node.tasks.push(model);
    this.tasks.push(model);
  }

  async #run(
    body: Body,
    p: number,
    node: TreeNode,
    ctx: RequestContext,
    subtasks: Task<unknown>[],
  ): Promise<unknown> {
    const token = ctx.token;
    switch (body) {
      case "sleepLoop":
        for (;;) await sleep(p % 3 === 0 ? 1e9 : p % 3, token);
      case "recvLoop":
        for (;;) await node.channel.recv(token);
      case "seqLoop":
        for (;;) await node.seq.wait(node.seq.load() + 1, { token });
      case "slowStop":
        try {
          await sleep(1e9, token);
        } finally {
          await timer(1);
        }
        return "unreachable";
      case "timeoutLoop":
        for (;;) {
          await withTimeout(token, p % 3, (t) => sleep(1e9, t)).catch((error: unknown) => {
            if (!(error instanceof TimeoutError)) throw error;
          });
        }
      case "finite":
        await sleep(p % 3, token);
        if (p % 2 === 1) throw new Error("finite task failed");
        return p;
      case "throws":
        throw new Error("task failed at once");
      case "guarded": {
        using _guard = node.gate.enter("guarded body");
        await sleep(1e9, token);
        return "unreachable";
      }
      case "nested": {
        const sub = spawn<unknown>(
          { token, gate: node.gate, parent: ctx, name: "nested sub", kind: "UnitTest" },
          (c) => sleep(1e9, c.token),
        );
        subtasks.push(sub);
        return (await sub.join()).status;
      }
      case "joinSet": {
        await using set = new JoinSet<unknown>({ token, gate: node.gate, parent: ctx });
        for (let i = 0; i < 2; i++) {
          subtasks.push(set.spawn(`set member ${i}`, "UnitTest", (c) => sleep(1e9, c.token)));
        }
        return await set.joinNext(token);
      }
      case "hookThrows":
        token.onCancel(() => {
          throw new Error(HOOK_FAILED);
        });
        if (p % 2 === 0) await sleep(1e9, token);
        return p;
    }
  }

  shutdown(node: TreeNode): void {
    this.cancel(node);
    this.close(node);
  }

  cancel(node: TreeNode): void {
    node.cancelled = true;
    cancelling(() => node.token.cancel(`cancel n${node.id}`));
    // cancel() has cancelled the whole subtree by the time it returns.
    for (const m of this.subtree(node)) {
      assert.ok(m.token.isCancelled, `n${m.id} cancelled with n${node.id}`);
      for (const t of m.tasks) assert.ok(t.task.token.isCancelled);
    }
  }

  close(node: TreeNode): void {
    if (node.closePromise !== undefined) {
      assert.equal(node.gate.close(), node.closePromise, "a second close() is the same wait");
      return;
    }
    const promise = node.gate.close();
    node.closePromise = promise;
    assert.ok(node.gate.isClosing);
    promise.then(
      () => this.#onClosed(node),
      (error: unknown) => this.violations.push(`close of n${node.id} rejected: ${error}`),
    );
  }

  /** Runs when a node's close() resolves: its whole subtree must be quiet. */
  #onClosed(node: TreeNode): void {
    node.closeResolved = true;
    const v = this.violations;
    if (!node.gate.isClosed) v.push(`n${node.id}: close resolved but not isClosed`);
    for (const m of this.subtree(node)) {
      if (!m.gate.isClosed) v.push(`n${m.id} (under closed n${node.id}) not closed`);
      if (m.gate.holders().length > 0) v.push(`n${m.id}: holders after close`);
      for (const g of m.guards) if (!g.isReleased) v.push(`n${m.id}: a guard outlived close`);
      for (const t of m.tasks) {
        for (const task of [t.task, ...t.subtasks]) {
          if (!task.isFinished || !ENDED.has(task.state)) {
            v.push(`n${m.id}: task ${task.name} still ${task.state} after close`);
          }
          if (this.registry.list().some((i) => i.id === task.id)) {
            v.push(`n${m.id}: ended task ${task.name} still registered`);
          }
        }
      }
    }
  }

  enter(node: TreeNode): void {
    if (isClosingInModel(node)) {
      assert.throws(() => node.gate.enter("test"), GateClosedError);
      return;
    }
    const guard = node.gate.enter("test");
    node.guards.push(guard);
    this.guards.push(guard);
  }

  clone(i: number): void {
    const guard = this.guards[i % Math.max(1, this.guards.length)];
    if (guard === undefined) return;
    if (guard.isReleased) {
      assert.throws(() => guard.tryClone(), TypeError);
      return;
    }
    const node = this.nodes.find((n) => n.guards.includes(guard))!;
    const copy = guard.tryClone("test clone");
    if (isClosingInModel(node)) {
      assert.equal(copy, undefined, "no clone into a closing gate");
    } else {
      assert.ok(copy !== undefined);
      node.guards.push(copy);
      this.guards.push(copy);
    }
  }

  release(i: number, twice: boolean): void {
    const guard = this.guards[i % Math.max(1, this.guards.length)];
    if (guard === undefined) return;
    const node = this.nodes.find((n) => n.guards.includes(guard))!;
    const before = node.gate.holders().length;
    const wasReleased = guard.isReleased;
    guard.release();
    if (twice) guard.release();
    // Releasing frees exactly this guard's place, a second release never another's.
    assert.equal(node.gate.holders().length, wasReleased ? before : before - 1);
  }

  /** The model's view of the whole tree, checked against the library's. */
  check(): void {
    assert.deepEqual(this.violations, []);
    const live = new Set(this.registry.list().map((info) => info.id));
    for (const info of this.registry.list()) {
      assert.ok(!ENDED.has(info.state), `registry holds ended task ${info.name}`);
    }
    for (const n of this.nodes) {
      const cancelled = isCancelledInModel(n);
      const closing = isClosingInModel(n);
      assert.equal(n.token.isCancelled, cancelled, `n${n.id} token cancelled = ${cancelled}`);
      assert.equal(n.gate.isClosing, closing, `n${n.id} gate closing = ${closing}`);
      if (closing) {
        assert.throws(() => n.gate.enter("probe"), GateClosedError);
      } else {
        n.gate.enter("probe").release(); // open gates stay enterable
      }
      if (n.gate.isClosed) assert.deepEqual(n.gate.holders(), []);
      // Tokens unlink cancelled and ended children: only live ones stay linked.
      const liveChildren =
        n.children.filter((c) => !isCancelledInModel(c)).length +
        n.tasks.filter((t) => !t.task.token.isCancelled).length;
      assert.equal(n.token.childCount, cancelled ? 0 : liveChildren, `n${n.id} childCount`);
      for (const t of n.tasks) {
        const shouldRun = FOREVER.has(t.body) && !cancelled && !t.cancelledSelf;
        if (shouldRun) {
          assert.equal(t.task.state, "running", `${t.task.name} at n${n.id} keeps running`);
          assert.ok(live.has(t.task.id), `${t.task.name} registered while running`);
        }
        if (cancelled || t.cancelledSelf) {
          assert.ok(t.task.token.isCancelled);
          assert.notEqual(t.task.state, "running");
        }
        for (const task of [t.task, ...t.subtasks]) {
          assert.equal(live.has(task.id), !task.isFinished, `${task.name} registered iff live`);
          if (task.isFinished)
            assert.ok(task.token.isCancelled, "an ended task's token is cancelled");
        }
      }
    }
  }

  async apply(op: TreeOp): Promise<void> {
    switch (op.k) {
      case "node":
        return this.addNode(this.node(op.at));
      case "spawn":
        return this.spawn(this.node(op.at), op.body, op.p);
      case "cancelTask": {
        const t = this.tasks[op.i % Math.max(1, this.tasks.length)];
        if (t === undefined) return;
        t.cancelledSelf = true;
        cancelling(() => t.task.cancel("test cancels task"));
        assert.ok(t.task.token.isCancelled);
        return;
      }
      case "shutdown":
        return this.shutdown(this.node(op.at));
      case "cancel": {
        const n = this.node(op.at);
        return n === this.root ? undefined : this.cancel(n);
      }
      case "close":
        return this.close(this.node(op.at));
      case "enter":
        return this.enter(this.node(op.at));
      case "clone":
        return this.clone(op.i);
      case "release":
        return this.release(op.i, op.twice);
      case "send": {
        const n = this.node(op.at);
        n.channel.trySend(n.id);
        return;
      }
      case "advance": {
        const n = this.node(op.at);
        n.seq.advance(n.seq.load() + op.by);
        return;
      }
      case "turn":
        for (let i = 0; i < op.n; i++) {
          if (op.how === "micro") await microtasks(3);
          else if (op.how === "immediate") await immediate();
          else await timer(1);
        }
    }
  }

  /** Shuts the root down and checks that everything ended and nothing leaked. */
  async finish(): Promise<void> {
    for (const g of this.guards) g.release();
    this.shutdown(this.root);
    const closes = this.nodes.flatMap((n) =>
      n.closePromise === undefined ? [] : [n.closePromise],
    );
    await settlesWithin(Promise.all(closes), "closing the tree");
    await microtasks();
    assert.deepEqual(this.violations, []);
    for (const n of this.nodes) {
      assert.ok(n.gate.isClosed, `n${n.id} closed`);
      assert.ok(n.closePromise === undefined || n.closeResolved, `close of n${n.id} resolved`);
      assert.equal(n.seq.waiters, 0, `no waiter left on n${n.id}'s SeqWait`);
    }
    for (const t of this.tasks) {
      for (const task of [t.task, ...t.subtasks]) {
        assert.ok(task.isFinished, `${task.name} ended`);
        const outcome = await task.join(); // resolves, never rejects
        assert.ok(ENDED.has(outcome.status));
        if (outcome.status === "cancelled") assert.ok(outcome.error instanceof CancelledError);
      }
    }
    assert.equal(this.registry.size, 0, "registry empty");
    assert.deepEqual(this.root.gate.holders(), []);
    assert.equal(this.root.token.childCount, 0);
    await assertNoUnhandledRejection();
  }
}

describe("lifecycle properties: trees of tokens, gates and tasks", () => {
  // The "hookThrows" bodies' onCancel hooks throw on purpose: their reports must be exactly those.
  const reporter = CancellationToken.onCallbackError;
  const unexpectedHookErrors: unknown[] = [];
  before(() => {
    CancellationToken.onCallbackError = (error) => {
      if ((error as Error).message !== HOOK_FAILED) unexpectedHookErrors.push(error);
    };
  });
  after(() => {
    CancellationToken.onCallbackError = reporter;
    assert.deepEqual(unexpectedHookErrors, []);
  });
  it("shutting down any subtree ends exactly its tasks and leaves the rest alone", async () => {
    await fc.assert(
      fc.asyncProperty(
        // A random tree (each entry picks the parent of a new node) ...
        fc.array(nodeIndex, { maxLength: 12, size: "max" }),
        // ... tasks spread over it ...
        fc.array(fc.record({ at: nodeIndex, body: fc.constantFrom(...BODIES), p: fc.nat(11) }), {
          maxLength: 16,
          size: "max",
        }),
        // ... then a random schedule.
        fc.array(treeOp, { minLength: 1, maxLength: 40, size: "max" }),
        async (shape, initial, ops) => {
          const world = new World();
          try {
            for (const at of shape) world.addNode(world.node(at));
            for (const t of initial) world.spawn(world.node(t.at), t.body, t.p);
            await microtasks(3);
            world.check();
            for (const op of ops) {
              await world.apply(op);
              await microtasks(3);
              world.check();
            }
          } finally {
            await world.finish();
          }
        },
      ),
      { seed: SEED, numRuns: 500 * RUNS },
    );
  });
});

// ---------------------------------------------------------------------------------
// SeqWait

type SeqOp =
  | { k: "wait"; d: number; timeoutMs: number | null; preCancelled: boolean }
  | { k: "advance"; by: number }
  | { k: "cancel"; i: number }
  | { k: "turn"; how: "immediate" | "timer" }
  | { k: "shutdown" };

const seqOp: fc.Arbitrary<SeqOp> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant("wait" as const),
      d: fc.integer({ min: -2, max: 12 }),
      timeoutMs: fc.option(fc.integer({ min: 0, max: 3 }), { freq: 3 }),
      preCancelled: fc.boolean(),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant("advance" as const),
      by: fc.integer({ min: 0, max: 5 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("cancel" as const), i: fc.nat(99) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("turn" as const),
      how: fc.constantFrom("immediate" as const, "timer" as const),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ k: "shutdown" as const }) },
);

type WaitStatus = "pending" | "resolved" | "cancelled" | "timeout" | "shutdown" | "other";
interface SeqWaiter {
  readonly target: number;
  readonly token: CancellationToken;
  readonly hasTimeout: boolean;
  status: WaitStatus;
  value: number | undefined;
  settledTimes: number;
}

describe("lifecycle properties: SeqWait", () => {
  it("wakes every waiter exactly when the value reaches its target, lowest first", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(seqOp, { minLength: 1, maxLength: 60 }), async (ops) => {
        const root = new CancellationToken();
        const seq = new SeqWait(0);
        const waiters: SeqWaiter[] = [];
        const log: SeqWaiter[] = []; // in the order reactions ran
        let shutdown = false;
        const pending = () => waiters.filter((w) => w.status === "pending");

        for (const op of ops) {
          switch (op.k) {
            case "wait": {
              const target = seq.load() + op.d;
              const token = root.child();
              const cancelFirst = op.preCancelled;
              if (cancelFirst) token.cancel("before waiting");
              const w: SeqWaiter = {
                target,
                token,
                hasTimeout: op.timeoutMs !== null,
                status: "pending",
                value: undefined,
                settledTimes: 0,
              };
              waiters.push(w);
              const options =
                op.timeoutMs === null ? { token } : { token, timeoutMs: op.timeoutMs };
              seq.wait(target, options).then(
                (value) => {
                  w.settledTimes++;
                  w.status = "resolved";
                  w.value = value;
                  log.push(w);
                },
                (error: unknown) => {
                  w.settledTimes++;
                  w.status =
                    error instanceof CancelledError
                      ? "cancelled"
                      : error instanceof TimeoutError
                        ? "timeout"
                        : error instanceof ShutdownError
                          ? "shutdown"
                          : "other";
                  log.push(w);
                },
              );
              await microtasks();
              const expected: WaitStatus = shutdown
                ? "shutdown"
                : target <= seq.load()
                  ? "resolved"
                  : cancelFirst
                    ? "cancelled"
                    : "pending";
              assert.equal(w.status, expected, `wait(${target}) at ${seq.load()}`);
              if (expected === "resolved") assert.equal(w.value, seq.load());
              break;
            }
            case "advance": {
              const value = seq.load() + op.by;
              const before = pending();
              const from = log.length;
              seq.advance(value);
              await microtasks();
              const woken = log.slice(from);
              const due = before.filter((w) => w.target <= value);
              assert.deepEqual(
                new Set(woken),
                new Set(due),
                `advance(${value}) wakes exactly those at or below it`,
              );
              assert.equal(woken.length, due.length);
              for (const w of woken) {
                assert.equal(w.status, "resolved");
                assert.equal(w.value, value);
              }
              for (let i = 1; i < woken.length; i++) {
                assert.ok(woken[i - 1]!.target <= woken[i]!.target, "lowest target first");
              }
              for (const w of before) if (w.target > value) assert.equal(w.status, "pending");
              break;
            }
            case "cancel": {
              const w = waiters[op.i % Math.max(1, waiters.length)];
              if (w === undefined) break;
              const was = w.status;
              w.token.cancel("cancel waiter");
              await microtasks();
              assert.equal(w.status, was === "pending" ? "cancelled" : was);
              break;
            }
            case "turn": {
              const before = pending();
              if (op.how === "immediate") await immediate();
              else await timer(2);
              await microtasks();
              // Only timeouts can settle a waiter while nothing advances.
              for (const w of before) {
                if (w.status !== "pending") {
                  assert.equal(w.status, "timeout");
                  assert.ok(w.hasTimeout);
                  assert.ok(w.target > seq.load());
                }
              }
              break;
            }
            case "shutdown": {
              const before = pending();
              seq.shutdown();
              shutdown = true;
              await microtasks();
              for (const w of before) assert.equal(w.status, "shutdown");
              break;
            }
          }
          assert.equal(seq.waiters, pending().length, "SeqWait holds exactly the pending waiters");
        }
        root.cancel("end");
        await microtasks();
        assert.deepEqual(pending(), [], "no waiter left");
        assert.equal(seq.waiters, 0);
        for (const w of waiters) {
          assert.equal(w.settledTimes, 1);
          assert.notEqual(w.status, "other");
        }
        await assertNoUnhandledRejection();
      }),
      { seed: SEED, numRuns: 1000 * RUNS },
    );
  });
});

// ---------------------------------------------------------------------------------
// Channel

type ChannelOp =
  | { k: "send"; w: number; cancellable: boolean }
  | { k: "trySend"; w: number }
  | { k: "recv" }
  | { k: "tryRecv" }
  | { k: "cancelSend"; i: number }
  | { k: "cancelRecv"; i: number }
  | { k: "close" }
  | { k: "turn" };

const weight = fc.integer({ min: 0, max: 12 });
const channelOp: fc.Arbitrary<ChannelOp> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({ k: fc.constant("send" as const), w: weight, cancellable: fc.boolean() }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("trySend" as const), w: weight }) },
  { weight: 5, arbitrary: fc.constant({ k: "recv" as const }) },
  { weight: 2, arbitrary: fc.constant({ k: "tryRecv" as const }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("cancelSend" as const), i: fc.nat(99) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("cancelRecv" as const), i: fc.nat(99) }) },
  { weight: 1, arbitrary: fc.constant({ k: "close" as const }) },
  { weight: 1, arbitrary: fc.constant({ k: "turn" as const }) },
);

interface Item {
  readonly id: number;
  readonly w: number;
}
type SendStatus = "pending" | "sent" | "refused" | "cancelled" | "closed";
interface SendModel {
  readonly item: Item;
  readonly token: CancellationToken;
  status: SendStatus;
}
type RecvStatus = "pending" | "got" | "cancelled" | "closed";
interface RecvModel {
  readonly seq: number; // call order
  readonly token: CancellationToken;
  status: RecvStatus;
  item: Item | undefined;
}

describe("lifecycle properties: Channel", () => {
  it("is FIFO, bounded by count and weight, and loses or duplicates nothing", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.option(fc.integer({ min: 1, max: 10 }), { nil: undefined }),
        fc.array(channelOp, { minLength: 1, maxLength: 60 }),
        async (capacity, maxWeight, ops) => {
          const root = new CancellationToken();
          const ch = new Channel<Item>(
            maxWeight === undefined
              ? { capacity }
              : { capacity, maxWeight, weigh: (item) => item.w },
          );
          const max = maxWeight ?? Number.POSITIVE_INFINITY;
          const sends: SendModel[] = [];
          const recvs: RecvModel[] = [];
          let nextId = 0;
          let closed = false;
          const admitted = () => sends.filter((s) => s.status === "sent");
          const taken = () => recvs.filter((r) => r.status === "got").map((r) => r.item!);
          const classify = (error: unknown): "cancelled" | "closed" => {
            if (error instanceof CancelledError) return "cancelled";
            if (error instanceof ChannelClosedError) return "closed";
            throw error;
          };
          const recordRecv = (r: RecvModel, p: Promise<Item>) => {
            p.then(
              (item) => {
                r.status = "got";
                r.item = item;
              },
              (error: unknown) => {
                r.status = classify(error);
              },
            );
          };

          const check = () => {
            assert.ok(ch.size <= capacity, `size ${ch.size} <= capacity ${capacity}`);
            if (ch.size > 1) assert.ok(ch.weight <= max, `weight ${ch.weight} <= ${max}`);
            // Exactly what was admitted and not taken is inside, in weight too.
            const inside = admitted().length - taken().length;
            assert.equal(ch.size, inside, "size = admitted - taken");
            if (maxWeight !== undefined) {
              const w =
                admitted().reduce((a, s) => a + s.item.w, 0) - taken().reduce((a, i) => a + i.w, 0);
              assert.equal(ch.weight, w, "weight = admitted - taken");
            } else {
              assert.equal(ch.weight, 0, "without weigh, nothing weighs anything");
            }
            // A receiver waits only on an empty channel.
            if (recvs.some((r) => r.status === "pending")) assert.equal(ch.size, 0);
            // The first waiting sender waits only because its item does not fit.
            const first = sends.find((s) => s.status === "pending");
            if (first !== undefined) {
              const fits = ch.size === 0 || (ch.size < capacity && ch.weight + first.item.w <= max);
              assert.ok(
                !fits,
                `sender of #${first.item.id} (w=${first.item.w}) waits although it fits`,
              );
            }
            // FIFO: items come out in the order they were sent, to receivers in call order.
            const out = recvs
              .filter((r) => r.status === "got")
              .sort((a, b) => a.seq - b.seq)
              .map((r) => r.item!.id);
            for (let i = 1; i < out.length; i++) assert.ok(out[i - 1]! < out[i]!, "FIFO");
          };

          for (const op of ops) {
            switch (op.k) {
              case "send": {
                const token = op.cancellable ? root.child() : root;
                const s: SendModel = { item: { id: nextId++, w: op.w }, token, status: "pending" };
                sends.push(s);
                ch.send(s.item, token).then(
                  () => {
                    s.status = "sent";
                  },
                  (error: unknown) => {
                    s.status = classify(error);
                  },
                );
                break;
              }
              case "trySend": {
                const s: SendModel = {
                  item: { id: nextId++, w: op.w },
                  token: root,
                  status: "pending",
                };
                sends.push(s);
                if (closed) {
                  assert.throws(() => ch.trySend(s.item), ChannelClosedError);
                  s.status = "closed";
                } else {
                  s.status = ch.trySend(s.item) ? "sent" : "refused";
                }
                break;
              }
              case "recv": {
                const r: RecvModel = {
                  seq: recvs.length,
                  token: root.child(),
                  status: "pending",
                  item: undefined,
                };
                recvs.push(r);
                recordRecv(r, ch.recv(r.token));
                break;
              }
              case "tryRecv": {
                const item = ch.tryRecv();
                const r: RecvModel = {
                  seq: recvs.length,
                  token: root,
                  status: item === undefined ? "closed" : "got",
                  item,
                };
                recvs.push(r);
                break;
              }
              case "cancelSend": {
                const s = sends[op.i % Math.max(1, sends.length)];
                if (s !== undefined && s.token !== root) s.token.cancel("cancel send");
                break;
              }
              case "cancelRecv": {
                const r = recvs[op.i % Math.max(1, recvs.length)];
                if (r !== undefined && r.token !== root) r.token.cancel("cancel recv");
                break;
              }
              case "close":
                ch.close();
                closed = true;
                break;
              case "turn":
                await immediate();
                break;
            }
            await microtasks();
            check();
          }

          // Close, then drain: every admitted item comes out once, in order; nothing else.
          ch.close();
          for (let item = ch.tryRecv(); item !== undefined; item = ch.tryRecv()) {
            recvs.push({ seq: recvs.length, token: root, status: "got", item });
          }
          await microtasks();
          const late: RecvModel = {
            seq: recvs.length,
            token: root,
            status: "pending",
            item: undefined,
          };
          recordRecv(late, ch.recv(root));
          root.cancel("end");
          await microtasks();
          assert.equal(late.status, "closed", "a drained closed channel rejects recv");
          assert.ok(
            sends.every((s) => s.status !== "pending"),
            "no sender left waiting",
          );
          assert.ok(
            recvs.every((r) => r.status !== "pending"),
            "no receiver left waiting",
          );
          check();
          assert.deepEqual(
            recvs
              .filter((r) => r.status === "got")
              .sort((a, b) => a.seq - b.seq)
              .map((r) => r.item!.id),
            admitted().map((s) => s.item.id),
            "received = admitted, in order",
          );
          await assertNoUnhandledRejection();
        },
      ),
      {
        seed: SEED,
        numRuns: 1000 * RUNS,
        examples: [
          // A cancelled sender at the head of the queue held back one that fit.
          [
            4,
            10,
            [
              { k: "trySend", w: 5 },
              { k: "send", w: 8, cancellable: true },
              { k: "send", w: 1, cancellable: false },
              { k: "cancelSend", i: 1 },
            ],
          ],
        ],
      },
    );
  });
});

// ---------------------------------------------------------------------------------
// Cases the properties above found, kept as plain examples.

describe("lifecycle properties: regressions", () => {
  it("a task whose onCancel hook throws still releases its guard, leaves the registry and joins", async () => {
    const ended: unknown[] = [];
    const registry = new TaskRegistry({ taskEnded: (_info, error) => ended.push(error) });
    const owner = { token: new CancellationToken(), gate: new Gate("g"), registry };
    const task = spawn({ ...owner, name: "hooked", kind: "UnitTest" }, (ctx) => {
      ctx.token.onCancel(() => {
        throw new Error(HOOK_FAILED);
      });
      return 1;
    });
    const outcome = await settlesWithin(task.join(), "join");
    assert.deepEqual(outcome, { status: "succeeded", value: 1 });
    assert.deepEqual(owner.gate.holders(), []);
    assert.equal(registry.size, 0);
    await settlesWithin(owner.gate.close(), "close");
    assert.equal(ended.length, 1, "the hook's error reaches the registry's observer");
    assert.ok(ended[0] instanceof AggregateError);
    await assertNoUnhandledRejection();
  });

  it("a cancelled sender at the head of the queue does not hold back one that fits", async () => {
    const root = new CancellationToken();
    const ch = new Channel<number>({ capacity: 4, maxWeight: 10, weigh: (n) => n });
    assert.ok(ch.trySend(5));
    const heavy = root.child();
    const heavySend = ch.send(8, heavy); // 5 + 8 > 10: waits
    let lightSent = false;
    const lightSend = ch.send(1, root).then(() => {
      lightSent = true;
    });
    heavy.cancel();
    await assert.rejects(heavySend, CancelledError);
    await microtasks();
    assert.ok(lightSent, "5 + 1 <= 10: the light item is admitted once the heavy one left");
    assert.equal(ch.size, 2);
    await lightSend;
  });
});

describe("lifecycle: gates with very many children", () => {
  it("holders() lists 200k child gates' holders, in order", async () => {
    const gate = new Gate("t");
    const guards = [];
    for (let i = 0; i < 200_000; i++) guards.push(gate.child(`c${i}`).enter(`h${i}`));
    const holders = gate.holders(); // threw RangeError (push(...children)) past ~120k
    assert.equal(holders.length, 200_000);
    assert.equal(holders[0]?.holder, "h0");
    assert.equal(holders[199_999]?.gate, "t/c199999");
    for (const g of guards) g.release();
    await gate.close();
    assert.deepEqual(gate.holders(), []);
  });
});

// ---------------------------------------------------------------------------------
// Issues found while writing these tests, fixed since: long delays and throwing hooks.

describe("lifecycle: long delays and throwing hooks", () => {
  it("sleep() longer than 2^31-1 ms waits (Node's setTimeout clamps it to 1 ms)", async () => {
    const token = new CancellationToken();
    let woke = false;
    const sleeping = sleep(2 ** 31, token).then(
      () => {
        woke = true;
      },
      () => {},
    );
    await timer(20);
    token.cancel();
    await sleeping;
    assert.equal(woke, false, "a 24-day sleep was still sleeping after 20 ms");
  });

  it("an onCancel hook that throws when withTimeout's time runs out is not an uncaught exception", () => {
    const script = `
        import { CancellationToken, sleep, withTimeout } from ${JSON.stringify(
          new URL("../../src/lifecycle/index.js", import.meta.url).href,
        )};
        const root = new CancellationToken();
        await withTimeout(root, 1, async (t) => {
          t.onCancel(() => { throw new Error("hook"); });
          await sleep(1000, t);
        }).catch(() => {});
        console.log("survived");`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      encoding: "utf8",
    });
    assert.equal(r.stdout.trim(), "survived", r.stderr);
    assert.equal(r.status, 0);
  });
});
