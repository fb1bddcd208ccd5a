/** Connection strings: what `pg` gets, and that no password is ever shown or echoed. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseSource, redactText } from "../../src/walreceiver/index.js";

describe("parseSource", () => {
  it("reads URLs: host, port, user, password, database, parameters", () => {
    const s = parseSource(
      "postgres://rep:pw%40x@db1:6543/wal?application_name=arch&sslmode=require",
    );
    assert.equal(s.address, "db1:6543");
    assert.equal(s.config.user, "rep");
    assert.equal(s.config.password, "pw@x");
    assert.equal(s.config.database, "wal");
    assert.equal(s.config.application_name, "arch");
    assert.deepEqual(s.config.ssl, { rejectUnauthorized: false });
    assert.equal(
      s.display,
      "postgres://rep:***@db1:6543/wal?application_name=arch&sslmode=require",
    );
  });

  it("defaults: 127.0.0.1:5432, user and database postgres, application_name tideline", () => {
    const s = parseSource("host=127.0.0.1");
    assert.equal(s.address, "127.0.0.1:5432");
    assert.equal(s.config.user, "postgres");
    assert.equal(s.config.database, "postgres");
    assert.equal(s.config.application_name, "tideline");
    assert.equal((s.config as { replication?: unknown }).replication, true);
  });

  it("masks a password given as a URL parameter", () => {
    const s = parseSource("postgres://rep@db1/postgres?password=hunter2&sslmode=disable");
    assert.equal(s.config.password, "hunter2");
    assert.ok(!s.display.includes("hunter2"), s.display);
    assert.match(s.display, /password=\*\*\*/);
  });

  it("reads key=value strings as libpq does: quotes, escapes, a quote inside a value", () => {
    const cases: [string, string][] = [
      ["host=db1 password=se'cret user=u", "se'cret"],
      ["host=db1 password='a b' user=u", "a b"],
      [String.raw`host=db1 password='it\'s' user=u`, "it's"],
      [String.raw`host=db1 password=a\ b user=u`, "a b"],
    ];
    for (const [text, password] of cases) {
      const s = parseSource(text);
      assert.equal(s.config.password, password, text);
      assert.equal(s.config.user, "u", text);
      assert.ok(!s.display.includes(password), s.display);
    }
  });

  it("refuses bad strings without echoing a password", () => {
    const bad: [string, RegExp][] = [
      ["", /Empty/],
      ["mysql://x", /Invalid connection string/],
      ["postgres://u:topsecret@[::1", /Invalid connection URL/],
      ["host=db1 password=topsecret =oops", /character \d+/],
      ["host=db1 port=99999", /99999/],
    ];
    for (const [text, pattern] of bad) {
      assert.throws(
        () => parseSource(text),
        (e: Error) => pattern.test(e.message) && !e.message.includes("topsecret"),
        text,
      );
    }
  });

  it("redactText masks passwords in free text", () => {
    assert.equal(redactText("postgres://u:pw@h/db"), "postgres://u:***@h/db");
    assert.equal(redactText("host=h password=pw user=u"), "host=h password=*** user=u");
  });
});
