// Resource manager and record type names: the tables' own invariants and the API's contract.
// (rmgr-servers.test.ts checks every entry against PostgreSQL 15..18 themselves.)
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  BUILTIN_RMGRS,
  checkVersion,
  isCustomRmgrId,
  isSupportedVersion,
  isValidRmgrId,
  RM_MAX_BUILTIN_ID,
  RmgrId,
  recordTypeName,
  recordTypes,
  rmgrName,
  rmgrs,
  SUPPORTED_VERSIONS,
  type SupportedVersion,
} from "../../src/wal/rmgr/index.js";

const version = fc.constantFrom(...SUPPORTED_VERSIONS);
const builtinRmid = fc.integer({ min: 0, max: RM_MAX_BUILTIN_ID });
const customRmid = fc.integer({ min: 128, max: 255 });
const validRmid = fc.oneof(builtinRmid, customRmid);
const byte = fc.integer({ min: 0, max: 255 });

describe("SUPPORTED_VERSIONS and checkVersion", () => {
  it("lists 15..18 and accepts exactly those", () => {
    assert.deepEqual([...SUPPORTED_VERSIONS], [15, 16, 17, 18]);
    for (const v of SUPPORTED_VERSIONS) assert.equal(checkVersion(v), v);
    assert.equal(isSupportedVersion(14), false);
    assert.equal(isSupportedVersion("16"), false);
  });

  it("names the bad value: RangeError for other numbers, TypeError for non-numbers", () => {
    assert.throws(() => checkVersion(14), { name: "RangeError", message: /\b14\b/ });
    assert.throws(() => checkVersion(19), { name: "RangeError", message: /\b19\b/ });
    assert.throws(() => checkVersion(16.5), { name: "RangeError", message: /16\.5/ });
    assert.throws(() => checkVersion("16"), { name: "TypeError", message: /string 16/ });
    assert.throws(() => rmgrName(14 as SupportedVersion, 0), { name: "RangeError", message: /14/ });
    assert.throws(() => rmgrs(13 as SupportedVersion), { name: "RangeError", message: /13/ });
  });
});

describe("rmgrName and rmgrs", () => {
  it("lists the 22 built-in rmgrs in id order, as pg_waldump --stats does", () => {
    for (const v of SUPPORTED_VERSIONS) {
      const list = rmgrs(v);
      assert.equal(list.length, 22);
      assert.deepEqual(
        list.map((r) => r.id),
        list.map((_, i) => i),
      );
      assert.equal(list[0]?.name, "XLOG");
      assert.equal(list[9]?.name, "Heap2");
      assert.equal(list[16]?.name, "SPGist");
      assert.equal(list[21]?.name, "LogicalMessage");
      for (const r of list) assert.equal(rmgrName(v, r.id), r.name);
      assert.ok(Object.isFrozen(list));
    }
  });

  it("agrees with RmgrId", () => {
    for (const [name, id] of Object.entries(RmgrId)) assert.equal(rmgrName(16, id), name);
  });

  it("names custom rmgrs custom### like pg_waldump", () => {
    assert.equal(rmgrName(15, 128), "custom128");
    assert.equal(rmgrName(18, 255), "custom255");
  });

  it("rejects invalid ids, naming them", () => {
    for (const bad of [22, 42, 127]) {
      assert.throws(() => rmgrName(15, bad), { name: "RangeError", message: new RegExp(`${bad}`) });
    }
    for (const bad of [-1, 256, 1.5, Number.NaN]) {
      assert.throws(() => rmgrName(15, bad), { name: "RangeError" });
    }
    assert.throws(() => rmgrName(15, "1" as unknown as number), { name: "TypeError" });
  });

  it("classifies ids like RmgrIdIsValid / RmgrIdIsCustom", () => {
    fc.assert(
      fc.property(fc.integer({ min: -5, max: 300 }), (id) => {
        assert.equal(isValidRmgrId(id), (id >= 0 && id <= 21) || (id >= 128 && id <= 255));
        assert.equal(isCustomRmgrId(id), id >= 128 && id <= 255);
      }),
    );
  });
});

describe("recordTypeName", () => {
  it("gives the identify functions' names", () => {
    const cases: [SupportedVersion, number, number, string][] = [
      [15, RmgrId.XLOG, 0x10, "CHECKPOINT_ONLINE"],
      [15, RmgrId.XLOG, 0xa0, "FPI_FOR_HINT"],
      [16, RmgrId.XLOG, 0xe0, "UNKNOWN (e0)"],
      [17, RmgrId.XLOG, 0xe0, "CHECKPOINT_REDO"],
      [18, RmgrId.XLOG, 0xe0, "CHECKPOINT_REDO"],
      [15, RmgrId.Heap, 0x00, "INSERT"],
      [15, RmgrId.Heap, 0x80, "INSERT+INIT"],
      [16, RmgrId.Heap, 0x40, "HOT_UPDATE"],
      [16, RmgrId.Heap, 0xc0, "HOT_UPDATE+INIT"],
      [17, RmgrId.Heap, 0x90, "UNKNOWN (90)"],
      [15, RmgrId.Heap2, 0x10, "PRUNE"],
      [16, RmgrId.Heap2, 0x30, "FREEZE_PAGE"],
      [17, RmgrId.Heap2, 0x10, "PRUNE_ON_ACCESS"],
      [17, RmgrId.Heap2, 0x20, "PRUNE_VACUUM_SCAN"],
      [18, RmgrId.Heap2, 0x30, "PRUNE_VACUUM_CLEANUP"],
      [18, RmgrId.Heap2, 0xd0, "MULTI_INSERT+INIT"],
      [15, RmgrId.Transaction, 0x80, "COMMIT"],
      [15, RmgrId.Transaction, 0xe0, "INVALIDATION"],
      [15, RmgrId.Transaction, 0xf0, "UNKNOWN (f0)"],
      [16, RmgrId.Btree, 0xd0, "REUSE_PAGE"],
      [16, RmgrId.Btree, 0xf0, "UNKNOWN (f0)"],
      [17, RmgrId.Generic, 0x00, "Generic"],
      [17, RmgrId.Generic, 0xf0, "Generic"],
      [18, RmgrId.BRIN, 0xa0, "UPDATE+INIT"],
      [18, RmgrId.LogicalMessage, 0x00, "MESSAGE"],
      [15, 200, 0x30, "UNKNOWN (30)"],
    ];
    for (const [v, rmid, info, name] of cases) {
      assert.equal(recordTypeName(v, rmid, info), name, `${v} ${rmid} 0x${info.toString(16)}`);
    }
  });

  it("ignores the low four bits (XLR_INFO_MASK)", () => {
    fc.assert(
      fc.property(version, validRmid, byte, (v, rmid, info) => {
        assert.equal(recordTypeName(v, rmid, info), recordTypeName(v, rmid, info & 0xf0));
      }),
    );
  });

  it("ignores Transaction's XLOG_XACT_HAS_INFO bit unless the type is unknown", () => {
    fc.assert(
      fc.property(version, fc.integer({ min: 0, max: 0x6f }), (v, info) => {
        assert.equal(
          recordTypeName(v, RmgrId.Transaction, info | 0x80),
          recordTypeName(v, RmgrId.Transaction, info),
        );
      }),
    );
  });

  it("answers every valid input with a name or UNKNOWN (%x) of the high bits", () => {
    fc.assert(
      fc.property(version, validRmid, byte, (v, rmid, info) => {
        const name = recordTypeName(v, rmid, info);
        const known = recordTypes(v, rmid).map((t) => t.name);
        assert.ok(known.includes(name) || name === `UNKNOWN (${(info & 0xf0).toString(16)})`, name);
      }),
    );
  });

  it("rejects bad info values and ids, naming them", () => {
    assert.throws(() => recordTypeName(15, 10, 256), { name: "RangeError", message: /256/ });
    assert.throws(() => recordTypeName(15, 10, -1), { name: "RangeError", message: /-1/ });
    assert.throws(() => recordTypeName(15, 10, 0.5), { name: "RangeError", message: /0\.5/ });
    assert.throws(() => recordTypeName(15, 50, 0), { name: "RangeError", message: /50/ });
    assert.throws(() => recordTypeName(12 as SupportedVersion, 10, 0), {
      name: "RangeError",
      message: /12/,
    });
  });
});

describe("the wal face", () => {
  it("re-exports the rmgr module", async () => {
    const face = await import("../../src/wal/index.js");
    assert.equal(face.recordTypeName, recordTypeName);
    assert.equal(face.rmgrName, rmgrName);
    assert.equal(face.SUPPORTED_VERSIONS, SUPPORTED_VERSIONS);
  });
});

describe("the tables", () => {
  it("have one name per masked info value per version, with sane masks", () => {
    for (const v of SUPPORTED_VERSIONS) {
      for (const def of BUILTIN_RMGRS) {
        const types = recordTypes(v, def.id);
        const infos = types.map((t) => t.info);
        assert.equal(new Set(infos).size, infos.length, `${v} ${def.name}: duplicate info`);
        for (const t of types) {
          assert.equal(t.info & 0x0f, 0, `${def.name} ${t.name}: low bits`);
          if (def.mask === "xact-opmask") assert.equal(t.info & 0x80, 0);
          assert.equal(recordTypeName(v, def.id, t.info), t.name);
        }
      }
    }
  });

  it("record the version differences", () => {
    const names = (v: SupportedVersion, id: number) => recordTypes(v, id).map((t) => t.name);
    assert.deepEqual(names(15, RmgrId.Heap2), names(16, RmgrId.Heap2));
    assert.deepEqual(names(17, RmgrId.Heap2), names(18, RmgrId.Heap2));
    assert.ok(names(16, RmgrId.Heap2).includes("FREEZE_PAGE"));
    assert.ok(!names(17, RmgrId.Heap2).includes("FREEZE_PAGE"));
    assert.ok(!names(16, RmgrId.XLOG).includes("CHECKPOINT_REDO"));
    assert.ok(names(17, RmgrId.XLOG).includes("CHECKPOINT_REDO"));
    // Nothing else differs.
    for (const def of BUILTIN_RMGRS) {
      if (def.id === RmgrId.Heap2 || def.id === RmgrId.XLOG) continue;
      for (const v of SUPPORTED_VERSIONS) assert.deepEqual(names(v, def.id), names(15, def.id));
    }
    assert.deepEqual(recordTypes(16, 130), []);
    assert.deepEqual(recordTypes(16, RmgrId.Generic), [{ info: 0, name: "Generic" }]);
  });
});
