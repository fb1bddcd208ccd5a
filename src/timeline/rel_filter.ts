/**
 * A layer's relation filter: a 512-bit Bloom filter of the relation forks (tablespace,
 * database, relation, fork) its records touch, kept in the timeline index beside the layer.
 * It answers "may this layer touch that relation?" without the layer file, so that a block's
 * history does not download evicted layers that cannot hold it. "No" is certain; "maybe" is
 * wrong for a few layers in a thousand when a layer touches ~20 relations (and for more as
 * it touches more: a layer of thousands answers "maybe" to everything, which is only slower).
 *
 * @module
 */
import type { BlockKey, BlockTable } from "./layer_tables.js";

/** Bytes of a filter: small enough for the index, which is rewritten at every flush. */
export const REL_FILTER_BYTES = 64;
const BITS = REL_FILTER_BYTES * 8;
const HASHES = 3;

/** Two independent 32-bit hashes of a relation fork (murmur3's finalizer on mixed words). */
function hashes(spc: number, db: number, rel: number, fork: number): [number, number] {
  let h = Math.imul(spc ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ db ^ (h >>> 13), 0xc2b2ae35);
  h = Math.imul(h ^ rel ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ fork ^ (h >>> 13), 0xc2b2ae35);
  h ^= h >>> 16;
  let g = Math.imul(rel ^ 0x27d4eb2f, 0x165667b1);
  g = Math.imul(g ^ spc ^ (g >>> 15), 0xd3a2646c);
  g = Math.imul(g ^ db ^ (g >>> 13), 0xfd7046c5);
  g = Math.imul(g ^ fork ^ (g >>> 16), 0xb55a4f09);
  g ^= g >>> 15;
  return [h >>> 0, (g | 1) >>> 0];
}

function setBits(bits: Uint8Array, spc: number, db: number, rel: number, fork: number): void {
  const [h, g] = hashes(spc, db, rel, fork);
  for (let i = 0; i < HASHES; i++) {
    const bit = ((h + Math.imul(i, g)) >>> 0) % BITS;
    bits[bit >>> 3]! |= 1 << (bit & 7);
  }
}

/**
 * The filter of the relation forks in `blocks` (base64, {@link REL_FILTER_BYTES} bytes).
 *
 * @example
 * ```ts
 * const filter = relationFilter(layer.blocks);
 * mayTouchRelation(filter, { spc: 1663, db: 5, rel: 16384, fork: 0, blk: 7 }); // true if it does
 * ```
 */
export function relationFilter(blocks: BlockTable): string {
  const bits = new Uint8Array(REL_FILTER_BYTES);
  let spc = -1;
  let db = -1;
  let rel = -1;
  let fork = -1;
  for (let i = 0; i < blocks.length; i++) {
    const s = blocks.spc[i]!;
    const d = blocks.db[i]!;
    const r = blocks.rel[i]!;
    const f = blocks.fork[i]!;
    // Runs of the same relation are the rule: hash each run once.
    if (s === spc && d === db && r === rel && f === fork) continue;
    spc = s;
    db = d;
    rel = r;
    fork = f;
    setBits(bits, s, d, r, f);
  }
  return Buffer.from(bits).toString("base64");
}

/**
 * Whether a layer with relation filter `filter` may touch `key`'s relation fork: false only
 * when it certainly does not. A missing filter (an index written before filters) answers true.
 *
 * @example
 * ```ts
 * if (!mayTouchRelation(slot.entry.relFilter, key)) continue; // no download needed
 * ```
 */
export function mayTouchRelation(filter: string | undefined, key: BlockKey): boolean {
  if (filter === undefined) return true;
  const bits = Buffer.from(filter, "base64");
  if (bits.length !== REL_FILTER_BYTES) return true;
  const [h, g] = hashes(key.spc, key.db, key.rel, key.fork);
  for (let i = 0; i < HASHES; i++) {
    const bit = ((h + Math.imul(i, g)) >>> 0) % BITS;
    if ((bits[bit >>> 3]! & (1 << (bit & 7))) === 0) return false;
  }
  return true;
}

/**
 * Whether `value` is a well-formed filter (for the index reader).
 *
 * @example
 * ```ts
 * isRelationFilter("AAAA"); // false: not 64 bytes
 * ```
 */
export function isRelationFilter(value: unknown): value is string {
  return (
    typeof value === "string" &&
    /^[A-Za-z0-9+/]*={0,2}$/.test(value) &&
    Buffer.from(value, "base64").length === REL_FILTER_BYTES
  );
}
