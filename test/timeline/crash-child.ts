/**
 * The child process of the crash tests (`crash.test.ts`): opens (or creates) a timeline
 * and ingests the source WAL from its `diskConsistentLsn` in random pieces, flushing now
 * and then, printing a progress line at every step, until the parent kills it (SIGKILL)
 * or it has ingested everything, flushed, and shut down cleanly.
 *
 * Usage: node crash-child.js <config.json>
 * config: { dataDir, id, srcFile, start, segmentSize, layerSize, seed, pauseAfterLayer? }
 * - `start` (hex) is where the source bytes in `srcFile` begin;
 * - `pauseAfterLayer: n` makes the n-th layer file written by this process stop right after
 *   it is renamed into place, before the index lists it, and print `layer-written <name>`
 *   (so the parent can kill exactly between the two).
 *
 * Lines (stdout): `open <dcl> <lastRecord>`, `piece <end>`, `flush <lsn>`,
 * `flushed <dcl>`, `layer-start <name>`, `layer-done <name>`, `layer-written <name>`,
 * `done <dcl>`. LSNs in hex.
 */
import { readFileSync, writeSync } from "node:fs";
import { CancellationToken, RequestContext, TaskKind } from "../../src/lifecycle/index.js";
import { Timeline, writeLayerFile } from "../../src/timeline/index.js";
import { prng } from "./source.js";

interface Config {
  dataDir: string;
  id: string;
  srcFile: string;
  start: string;
  segmentSize: number;
  layerSize: number;
  seed: number;
  pauseAfterLayer?: number;
}

const config = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as Config;
const src = readFileSync(config.srcFile);
const start = BigInt(`0x${config.start}`);
const end = start + BigInt(src.length);
const hex = (lsn: bigint) => lsn.toString(16);
/** Synchronous, so a line printed is out before the next step starts (and before a kill). */
const say = (line: string) => writeSync(1, `${line}\n`);

let layersWritten = 0;
const writeLayer: typeof writeLayerFile = async (dir, layer, meta, token) => {
  say(`layer-start ${hex(layer.start)}-${hex(layer.end)}`);
  const result = await writeLayerFile(dir, layer, meta, token);
  layersWritten++;
  if (config.pauseAfterLayer === layersWritten) {
    say(`layer-written ${result.name}`);
    // Hold here (the file is in place, the index does not list it yet) until killed.
    await new Promise((resolve) => setTimeout(resolve, 1_000_000_000));
  }
  say(`layer-done ${result.name}`);
  return result;
};

const options = {
  dataDir: config.dataDir,
  id: config.id,
  layerSize: config.layerSize,
  writeLayer,
};
const tl = Timeline.exists(config.dataDir, config.id)
  ? await Timeline.open(options)
  : await Timeline.create({ ...options, startLsn: start, segmentSize: config.segmentSize });
say(`open ${hex(tl.diskConsistentLsn)} ${hex(tl.lastRecordLsn)}`);

const ctx = RequestContext.root(TaskKind.UnitTest, new CancellationToken());
const rnd = prng(config.seed);
let at = tl.streamEnd;
while (at < end) {
  const n = BigInt(Math.max(1, Math.floor(rnd() * rnd() * 96_000)));
  const stop = at + n < end ? at + n : end;
  // A copy: the timeline keeps the buffer it is given.
  await tl.ingest(at, Buffer.from(src.subarray(Number(at - start), Number(stop - start))), ctx);
  at = stop;
  say(`piece ${hex(at)}`);
  if (rnd() < 0.04) {
    say(`flush ${hex(tl.lastRecordLsn)}`);
    await tl.flush(ctx);
    say(`flushed ${hex(tl.diskConsistentLsn)}`);
  }
}
const result = await tl.shutdown("freeze-and-flush");
say(`done ${hex(result.diskConsistentLsn)}`);
