// Leak tests: a long-lived parent (token, gate) that sees a million short-lived
// children, guards, registrations or waits must keep a flat heap. Each test measures
// heapUsed after full GCs before and after a million operations; the bound is
// generous (5 MB) against the ~50-150 MB that keeping what each operation creates
// would cost (checked by hand with leaking variants: see BENCHMARKS.md).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import v8 from "node:v8";
import vm from "node:vm";
import {
  CancellationToken,
  CancelledError,
  Gate,
  SeqWait,
  sleep,
  spawn,
  TaskRegistry,
} from "../../src/lifecycle/index.js";

const MILLION = 1_000_000;
const BOUND = 5 * 1024 * 1024;

/** `gc()`: the runner passes --expose-gc; without it, expose it now. */
const gc: () => void =
  typeof globalThis.gc === "function"
    ? globalThis.gc
    : (() => {
        v8.setFlagsFromString("--expose-gc");
        return vm.runInNewContext("gc") as () => void;
      })();

const immediate = () => new Promise<void>((resolve) => setImmediate(resolve));

async function heapAfterGc(): Promise<number> {
  // Several rounds, with turns between, so that promise jobs and weak callbacks finish.
  for (let i = 0; i < 4; i++) {
    await immediate();
    gc();
  }
  return process.memoryUsage().heapUsed;
}

/**
 * Runs `run(n)` once small to warm up, then measures the heap around `run(MILLION)`.
 * Everything that must stay alive across the run (the root, the gate) is created by
 * the caller before the first measurement.
 */
async function assertFlat(
  what: string,
  run: (n: number) => Promise<void> | void,
  n = MILLION,
): Promise<void> {
  await run(10_000);
  const before = await heapAfterGc();
  await run(n);
  const after = await heapAfterGc();
  const growth = after - before;
  assert.ok(
    growth < BOUND,
    `${what}: heap grew by ${(growth / 1024 / 1024).toFixed(1)} MB (bound ${BOUND / 1024 / 1024} MB)`,
  );
}

const noop = () => {};

describe("lifecycle leaks: a long-lived token", () => {
  it("keeps a flat heap across a million children created and disposed", async () => {
    const root = new CancellationToken();
    await assertFlat("child + dispose", (n) => {
      for (let i = 0; i < n; i++) {
        using _child = root.child();
      }
    });
    assert.equal(root.childCount, 0);
    assert.ok(!root.isCancelled);
  });

  it("keeps a flat heap across a million children with a callback, created and disposed", async () => {
    const root = new CancellationToken();
    await assertFlat("child + onCancel + dispose", (n) => {
      for (let i = 0; i < n; i++) {
        using child = root.child();
        child.onCancel(noop);
      }
    });
    assert.equal(root.childCount, 0);
  });

  it("keeps a flat heap across a million children cancelled one by one", async () => {
    const root = new CancellationToken();
    await assertFlat("child + cancel", (n) => {
      for (let i = 0; i < n; i++) root.child().cancel(i);
    });
    assert.equal(root.childCount, 0);
    assert.ok(!root.isCancelled, "cancelling children never cancels the parent");
  });

  it("keeps a flat heap across a million grandchildren whose middle token is disposed", async () => {
    const root = new CancellationToken();
    await assertFlat("child.child + dispose", (n) => {
      for (let i = 0; i < n; i++) {
        using child = root.child();
        child.child().onCancel(noop);
      }
    });
    assert.equal(root.childCount, 0);
  });

  it("keeps a flat heap across a million onCancel registrations disposed", async () => {
    const root = new CancellationToken();
    await assertFlat("onCancel + dispose", (n) => {
      for (let i = 0; i < n; i++) root.onCancel(noop)[Symbol.dispose]();
    });
    // The registrations are gone: cancelling runs nothing that was disposed.
    let ran = 0;
    root.onCancel(() => ran++);
    root.cancel();
    assert.equal(ran, 1);
  });

  it("keeps a flat heap across a million race() calls that settle", async () => {
    const root = new CancellationToken();
    await assertFlat("race", async (n) => {
      const batch = 10_000;
      for (let done = 0; done < n; done += batch) {
        const races: Promise<number>[] = [];
        for (let i = 0; i < batch; i++) races.push(root.race(Promise.resolve(i)));
        await Promise.all(races);
      }
    });
  });

  it("keeps a flat heap across a million sleep() calls that end on their own", async () => {
    const root = new CancellationToken();
    await assertFlat("sleep(0)", async (n) => {
      const batch = 20_000;
      for (let done = 0; done < n; done += batch) {
        const sleeps: Promise<void>[] = [];
        for (let i = 0; i < batch; i++) sleeps.push(sleep(0, root));
        await Promise.all(sleeps);
      }
    });
  });

  it("keeps a flat heap across a million sleep() calls cancelled", async () => {
    const root = new CancellationToken();
    let cancelled = 0;
    const count = (error: unknown) => {
      if (error instanceof CancelledError) cancelled++;
    };
    await assertFlat("sleep(long) + cancel", async (n) => {
      for (let i = 0; i < n; i++) {
        const token = root.child();
        sleep(1e9, token).catch(count);
        token.cancel();
        if (i % 10_000 === 9_999) await immediate();
      }
      await immediate();
    });
    assert.equal(cancelled, 10_000 + MILLION, "every sleep was cancelled");
    assert.equal(root.childCount, 0);
  });

  it("keeps a flat heap across many SeqWait waits cancelled", async () => {
    const root = new CancellationToken();
    const seq = new SeqWait(0);
    // A fifth of a million (each wait also arms and clears a timer): enough to show.
    await assertFlat(
      "SeqWait.wait + cancel",
      async (n) => {
        for (let i = 0; i < n; i++) {
          const token = root.child();
          seq.wait(1, { token, timeoutMs: 1e9 }).catch(noop);
          token.cancel();
          if (i % 10_000 === 9_999) await immediate();
        }
        await immediate();
      },
      MILLION / 5,
    );
    assert.equal(seq.waiters, 0);
  });
});

describe("lifecycle leaks: a long-lived gate", () => {
  it("keeps a flat heap across a million enter/release", async () => {
    const gate = new Gate("timeline");
    await assertFlat("enter + release", (n) => {
      for (let i = 0; i < n; i++) gate.enter("flush").release();
    });
    assert.deepEqual(gate.holders(), []);
    await gate.close();
  });

  it("keeps a flat heap across a million `using` guards of a child gate", async () => {
    const gate = new Gate("timeline");
    const child = gate.child("walreceiver");
    await assertFlat("using child.enter", (n) => {
      for (let i = 0; i < n; i++) {
        using _guard = child.enter("poller");
      }
    });
    assert.deepEqual(gate.holders(), []);
    await gate.close();
  });
});

describe("lifecycle leaks: child gates of a long-lived gate", () => {
  it("keeps a flat heap across many child gates entered, released and closed", async () => {
    const gate = new Gate("timeline");
    // A fifth of a million (each close is a few promises): enough to show.
    await assertFlat(
      "child gate + close",
      async (n) => {
        const batch = 10_000;
        for (let done = 0; done < n; done += batch) {
          const closes: Promise<void>[] = [];
          for (let i = 0; i < batch; i++) {
            const child = gate.child("connection");
            const guard = child.enter("handler");
            closes.push(child.close());
            guard.release();
          }
          await Promise.all(closes);
        }
      },
      MILLION / 5,
    );
    assert.deepEqual(gate.holders(), []);
    assert.ok(!gate.isClosing);
    await gate.close();
  });
});

describe("lifecycle leaks: tasks under a long-lived owner", () => {
  it("keeps a flat heap across many tasks spawned and joined", async () => {
    const registry = new TaskRegistry();
    const owner = { token: new CancellationToken(), gate: new Gate("timeline"), registry };
    // A tenth of a million: each task is a few promises and a registry entry.
    await assertFlat(
      "spawn + join",
      async (n) => {
        const batch = 1_000;
        for (let done = 0; done < n; done += batch) {
          const tasks = [];
          for (let i = 0; i < batch; i++) {
            tasks.push(spawn({ ...owner, name: "t", kind: "UnitTest" }, () => i));
          }
          for (const t of tasks) await t.join();
        }
      },
      MILLION / 10,
    );
    assert.equal(registry.size, 0);
    assert.equal(owner.token.childCount, 0);
    assert.deepEqual(owner.gate.holders(), []);
  });
});
