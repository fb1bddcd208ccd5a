// Benchmarks of the lifecycle library, side by side with the platform's own
// cancellation (AbortController/AbortSignal) where there is an equivalent.
//
//   npm run bench -- lifecycle
//
// Every measurement runs in a fresh child process (so that one case's garbage, or
// AbortSignal.any's leak, never slows another), several times; the table shows the
// median. Prints a markdown table.
import { spawnSync } from "node:child_process";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { CancellationToken, Channel, Gate, SeqWait, sleep } from "../src/lifecycle/index.js";

const RUNS = 5;
const noop = () => {};
const immediate = () => new Promise<void>((resolve) => setImmediate(resolve));
const gc = (globalThis as { gc?: () => void }).gc ?? noop;

/** One measurement: milliseconds, and optionally a count of operations. */
interface Sample {
  ms: number;
  ops?: number;
  /** Heap still used after GC at the end, in MB (for create/dispose cases). */
  heapMB?: number;
}

type Impl = "tideline" | "any" | "manual";
interface Case {
  readonly id: string;
  readonly title: string;
  /** "ms": lower is better; "ops": operations per second, higher is better. */
  readonly unit: "ms" | "ops";
  readonly impls: Partial<Record<Impl, () => Promise<Sample> | Sample>>;
  readonly runs?: Partial<Record<Impl, number>>;
}

function timed(fn: () => void): number {
  const start = performance.now();
  fn();
  return performance.now() - start;
}

// ---------------------------------------------------------------------------------
// Trees: every node has one callback/listener, every node is kept alive.

const FLAT = 100_000;

function tokenTree(parentOf: (i: number) => number, n: number) {
  const root = new CancellationToken();
  const nodes: CancellationToken[] = [root];
  for (let i = 1; i < n; i++) {
    const t = nodes[parentOf(i)]!.child();
    t.onCancel(noop);
    nodes.push(t);
  }
  return { nodes, cancel: () => root.cancel("bench") };
}

function anyTree(parentOf: (i: number) => number, n: number) {
  const root = new AbortController();
  const nodes: AbortSignal[] = [root.signal];
  for (let i = 1; i < n; i++) {
    const s = AbortSignal.any([nodes[parentOf(i)]!]);
    s.addEventListener("abort", noop, { once: true });
    nodes.push(s);
  }
  return { nodes, cancel: () => root.abort("bench") };
}

function manualTree(parentOf: (i: number) => number, n: number) {
  const root = new AbortController();
  const nodes: AbortController[] = [root];
  for (let i = 1; i < n; i++) {
    const parent = nodes[parentOf(i)]!.signal;
    const c = new AbortController();
    parent.addEventListener("abort", () => c.abort(parent.reason), { once: true });
    c.signal.addEventListener("abort", noop, { once: true });
    nodes.push(c);
  }
  return { nodes, cancel: () => root.abort("bench") };
}

const flat = () => 0;
const bushy = (i: number) => Math.floor((i - 1) / 10); // 10 children per node
const DEPTH = 1_000;
const deep = (i: number) => (i <= 100 ? 0 : i - 100); // 100 chains, 1000 deep

function treeCase(
  id: string,
  title: string,
  parentOf: (i: number) => number,
  phase: "build" | "cancel",
): Case {
  const run =
    (make: typeof tokenTree): (() => Sample) =>
    () => {
      let tree: ReturnType<typeof tokenTree> | undefined;
      const buildMs = timed(() => {
        tree = make(parentOf, FLAT);
      });
      const cancelMs = timed(() => tree!.cancel());
      return { ms: phase === "build" ? buildMs : cancelMs };
    };
  return {
    id,
    title,
    unit: "ms",
    impls: {
      tideline: run(tokenTree),
      any: run(anyTree as unknown as typeof tokenTree),
      manual: run(manualTree as unknown as typeof tokenTree),
    },
    // One parent with 100k listeners: EventTarget's addEventListener is linear in
    // the listeners already there, so that build is quadratic (about a minute).
    ...(parentOf === flat ? { runs: { manual: 1 } } : {}),
  };
}

// ---------------------------------------------------------------------------------

const MILLION = 1_000_000;

async function heapMB(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await immediate();
    gc();
  }
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

const createDispose: Case = {
  id: "create-dispose",
  title: "create + dispose 1M children of one parent (ms; heap kept after GC)",
  unit: "ms",
  impls: {
    async tideline() {
      const root = new CancellationToken();
      const before = await heapMB();
      const ms = timed(() => {
        for (let i = 0; i < MILLION; i++) {
          using _child = root.child();
        }
      });
      return { ms, heapMB: (await heapMB()) - before };
    },
    async any() {
      const root = new AbortController();
      const before = await heapMB();
      const ms = timed(() => {
        // Nothing to dispose: the platform drops dependents at GC (leaky on Node 20).
        for (let i = 0; i < MILLION; i++) AbortSignal.any([root.signal]);
      });
      return { ms, heapMB: (await heapMB()) - before };
    },
    async manual() {
      const root = new AbortController();
      const before = await heapMB();
      const ms = timed(() => {
        for (let i = 0; i < MILLION; i++) {
          const c = new AbortController();
          const link = () => c.abort(root.signal.reason);
          root.signal.addEventListener("abort", link, { once: true });
          root.signal.removeEventListener("abort", link);
        }
      });
      return { ms, heapMB: (await heapMB()) - before };
    },
  },
};

const gateCase = (useUsing: boolean): Case => ({
  id: useUsing ? "gate-using" : "gate-release",
  title: useUsing ? "gate enter + `using` release (ops/s)" : "gate enter + release() (ops/s)",
  unit: "ops",
  impls: {
    tideline() {
      const gate = new Gate("timeline").child("walreceiver");
      const ms = useUsing
        ? timed(() => {
            for (let i = 0; i < MILLION; i++) {
              using _guard = gate.enter("flush");
            }
          })
        : timed(() => {
            for (let i = 0; i < MILLION; i++) gate.enter("flush").release();
          });
      return { ms, ops: MILLION };
    },
  },
});

const SLEEPS = 100_000;
const sleepCancel: Case = {
  id: "sleep-cancel",
  title: "sleep(0) + cancel, 100k (ms, until every rejection is handled)",
  unit: "ms",
  impls: {
    async tideline() {
      const root = new CancellationToken();
      const start = performance.now();
      const all: Promise<void>[] = [];
      for (let i = 0; i < SLEEPS; i++) {
        const token = root.child();
        all.push(sleep(0, token).catch(noop));
        token.cancel();
      }
      await Promise.all(all);
      return { ms: performance.now() - start };
    },
    async manual() {
      // The platform's own: timers/promises setTimeout with an AbortSignal.
      const start = performance.now();
      const all: Promise<unknown>[] = [];
      for (let i = 0; i < SLEEPS; i++) {
        const ac = new AbortController();
        all.push(delay(0, undefined, { signal: ac.signal }).catch(noop));
        ac.abort();
      }
      await Promise.all(all);
      return { ms: performance.now() - start };
    },
  },
};

const WAITERS = 10_000;
const seqWaitCase = (oneStep: boolean): Case => ({
  id: oneStep ? "seqwait-one" : "seqwait-steps",
  title: oneStep
    ? "SeqWait: 10k waiters, one advance past all (ms, until all resolved)"
    : "SeqWait: 10k waiters, 10k advances by 1 (ms, until all resolved)",
  unit: "ms",
  impls: {
    async tideline() {
      const token = new CancellationToken();
      const seq = new SeqWait(0);
      // Targets in a scrambled order, so the heap does real work.
      const targets = Array.from({ length: WAITERS }, (_, i) => ((i * 7919) % WAITERS) + 1);
      const start = performance.now();
      const all = targets.map((t) => seq.wait(t, { token }));
      if (oneStep) seq.advance(WAITERS);
      else for (let v = 1; v <= WAITERS; v++) seq.advance(v);
      await Promise.all(all);
      return { ms: performance.now() - start };
    },
  },
});

const ITEMS = 1_000_000;
const channelCase = (sync: boolean): Case => ({
  id: sync ? "channel-try" : "channel-async",
  title: sync
    ? "Channel trySend/tryRecv, 1M items, capacity 64 (items/s)"
    : "Channel send/recv between two async loops, 1M items, capacity 64 (items/s)",
  unit: "ops",
  impls: {
    async tideline() {
      const token = new CancellationToken();
      const ch = new Channel<number>({ capacity: 64 });
      const start = performance.now();
      if (sync) {
        for (let i = 0; i < ITEMS; ) {
          while (i < ITEMS && ch.trySend(i)) i++;
          while (ch.tryRecv() !== undefined) {}
        }
      } else {
        const producer = (async () => {
          for (let i = 0; i < ITEMS; i++) await ch.send(i, token);
          ch.close();
        })();
        let received = 0;
        for await (const _ of ch.iterate(token)) received++;
        await producer;
        if (received !== ITEMS) throw new Error(`received ${received}`);
      }
      return { ms: performance.now() - start, ops: ITEMS };
    },
  },
});

const CASES: Case[] = [
  treeCase("flat-build", "build a 100k-child flat tree, one callback each (ms)", flat, "build"),
  treeCase("flat-cancel", "cancel a 100k-child flat tree (ms)", flat, "cancel"),
  treeCase("bushy-build", "build a 100k-node tree, 10 children per node (ms)", bushy, "build"),
  treeCase("bushy-cancel", "cancel a 100k-node tree, 10 children per node (ms)", bushy, "cancel"),
  treeCase("deep-build", `build 100 chains ${DEPTH} deep (ms)`, deep, "build"),
  treeCase("deep-cancel", `cancel 100 chains ${DEPTH} deep (ms)`, deep, "cancel"),
  createDispose,
  gateCase(false),
  gateCase(true),
  sleepCancel,
  seqWaitCase(true),
  seqWaitCase(false),
  channelCase(false),
  channelCase(true),
];

// ---------------------------------------------------------------------------------
// Child: run one case/implementation and print its samples as JSON.

async function child(caseId: string, impl: Impl, runs: number): Promise<void> {
  const c = CASES.find((x) => x.id === caseId)!;
  const fn = c.impls[impl]!;
  if (c.runs?.[impl] === undefined) await fn(); // warm-up, unless too slow for that
  const samples: Sample[] = [];
  for (let i = 0; i < runs; i++) {
    await heapMB(); // start every run from a collected heap
    samples.push(await fn());
  }
  process.stdout.write(`${JSON.stringify(samples)}\n`);
}

// ---------------------------------------------------------------------------------
// Parent: run every case in children and print the table.

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

function format(c: Case, samples: Sample[]): string {
  const value =
    c.unit === "ms"
      ? median(samples.map((s) => s.ms))
      : median(samples.map((s) => ((s.ops ?? 0) * 1000) / s.ms));
  let text =
    c.unit === "ms"
      ? value >= 100
        ? `${value.toFixed(0)} ms`
        : `${value.toFixed(1)} ms`
      : `${(value / 1e6).toFixed(2)} M/s`;
  const heaps = samples.flatMap((s) => (s.heapMB === undefined ? [] : [s.heapMB]));
  if (heaps.length > 0) text += `, ${Math.max(0, median(heaps)).toFixed(1)} MB kept`;
  if (samples.length === 1) text += " (1 run)";
  return text;
}

function runChild(file: string, c: Case, impl: Impl): Sample[] | undefined {
  const r = spawnSync(
    process.execPath,
    ["--expose-gc", "--no-warnings", file, "--child", c.id, impl, "1"],
    {
      encoding: "utf8",
      maxBuffer: 1 << 20,
    },
  );
  if (r.status !== 0) {
    process.stderr.write(r.stderr);
    return undefined;
  }
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]!) as Sample[];
}

function parent(filters: string[]): void {
  const file = fileURLToPath(import.meta.url);
  const impls = ["tideline", "any", "manual"] as const;
  const rows: string[] = [];
  for (const c of CASES) {
    if (filters.length > 0 && !filters.some((f) => c.id.includes(f))) continue;
    process.stderr.write(`${c.id} ...\n`);
    // Runs of the implementations alternate, each in a fresh process, so that a
    // busy moment of the machine does not land on one implementation only.
    const samples = new Map<Impl, Sample[] | undefined>();
    for (let run = 0; run < RUNS; run++) {
      for (const impl of impls) {
        if (c.impls[impl] === undefined || run >= (c.runs?.[impl] ?? RUNS)) continue;
        if (samples.has(impl) && samples.get(impl) === undefined) continue; // failed
        const got = runChild(file, c, impl);
        samples.set(impl, got === undefined ? undefined : [...(samples.get(impl) ?? []), ...got]);
      }
    }
    const cells = impls.map((impl) => {
      if (c.impls[impl] === undefined) return "—";
      const got = samples.get(impl);
      return got === undefined ? "failed" : format(c, got);
    });
    rows.push(`| ${c.title} | ${cells.join(" | ")} |`);
  }
  console.log(
    `Node ${process.version}, ${process.platform}/${process.arch}, median of ${RUNS} runs`,
  );
  console.log("");
  console.log("| case | tideline | `AbortSignal.any` | AbortController + listeners |");
  console.log("| --- | --- | --- | --- |");
  for (const row of rows) console.log(row);
}

const args = process.argv.slice(2);
if (args[0] === "--child") {
  await child(args[1]!, args[2] as Impl, Number(args[3]));
} else {
  parent(args);
}
