/*
 * Tideline's native CRC-32C (Castagnoli): the checksum of PostgreSQL WAL records, computed for
 * a whole batch of records in one call.
 *
 * Why this exists: a WAL segment holds ~100k records of ~70 bytes. A call into native code per
 * record costs more than the checksum itself, and JavaScript table lookups reach ~1.5 bytes/ns;
 * the x86-64 SSE4.2 `crc32` instruction does ~8 bytes per 3 cycles. One call checks all the
 * records of a chunk that the decoder listed.
 *
 * Built by scripts/build-native.mjs with the system C compiler (no node-gyp, no headers beyond
 * Node-API's); optional: without it Tideline computes the same values in JavaScript.
 *
 * Exports (all take the bytes as a Uint8Array view; offsets are relative to that view):
 *   crc32c(buf, start, end, crc)        CRC-32C of buf[start, end), continuing from `crc` (a
 *                                        previous result, 0 to start): @node-rs/crc32's convention.
 *   recordCrc(buf, offset)              a WAL record's CRC as PostgreSQL computes xl_crc: over
 *                                        the bytes after the 24-byte header, then the header's
 *                                        first 20 bytes. The length is the record's xl_tot_len.
 *   recordCrcs(buf, offsets, n, out)    recordCrc for offsets[0..n) into out[0..n) (Int32Array).
 *   listRecordCrcs(buf, start, startLo, pageSize, magic, longHeader, contrecord,
 *                  offsets, out, result)
 *                                        walks buf from the record start `start` (whose LSN's
 *                                        low 32 bits are startLo) along xl_tot_len and page
 *                                        headers (for src/wal/decoder.ts's listRecords),
 *                                        lists the records lying whole in buf into
 *                                        offsets, their CRCs into out (recordCrc; for one
 *                                        continued on later pages, the CRC of its bytes
 *                                        after the page headers, as the decoder assembles
 *                                        them), and sets
 *                                        result[0] to the count and result[1] to where the
 *                                        walk stopped. Only a guess at where records are: the
 *                                        decoder trusts a CRC only for the offset it checks.
 *   readRecordCrcsAsync(fd, position, buf, length, pageSize, longHeader, contrecord,
 *                       offsets, out, result, callback)
 *                                        reads a chunk of a file and lists it as
 *                                        listRecordCrcs does, on libuv's thread pool (see
 *                                        js_read_record_crcs_async).
 *   writeAsync(fd, position, buf, startWriteback, callback)
 *                                        writes buf at `position` on libuv's thread pool and,
 *                                        if asked, starts writing that range to disk without
 *                                        waiting (sync_file_range, on Linux), so that a later
 *                                        fsync has less to do (see js_write_async).
 *   crc32cPortable(buf, start, end, crc) crc32c without the CPU instruction (for tests).
 *   impl                                "sse4.2" or "table": what crc32c and recordCrc use.
 */
/* pread(), and 64-bit file offsets everywhere. */
#define _POSIX_C_SOURCE 200809L
#define _FILE_OFFSET_BITS 64
#include <node_api.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

static uint32_t table[8][256];

static void init_table(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[0][n] = c;
  }
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = table[0][n];
    for (int k = 1; k < 8; k++) {
      c = table[0][c & 0xff] ^ (c >> 8);
      table[k][n] = c;
    }
  }
}

/* Raw CRC update (no pre/post inversion), slicing-by-8, little-endian loads via memcpy. */
static uint32_t crc_table(uint32_t c, const uint8_t *p, size_t n) {
  while (n >= 8) {
    uint32_t a, b;
    memcpy(&a, p, 4);
    memcpy(&b, p + 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    a = __builtin_bswap32(a);
    b = __builtin_bswap32(b);
#endif
    a ^= c;
    c = table[7][a & 0xff] ^ table[6][(a >> 8) & 0xff] ^ table[5][(a >> 16) & 0xff] ^
        table[4][a >> 24] ^ table[3][b & 0xff] ^ table[2][(b >> 8) & 0xff] ^
        table[1][(b >> 16) & 0xff] ^ table[0][b >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__)
/*
 * Long inputs run three independent crc32 chains over three adjacent blocks at once (the
 * instruction has a latency of 3 cycles but a throughput of 1), then join them: the CRC of
 * A||B is the CRC of A "shifted" past len(B) zero bytes, xor the CRC of B started from 0.
 * Shifting by a fixed length is linear over GF(2): a 32x32 bit matrix, applied through four
 * 256-entry tables built at load time for the two block lengths used.
 */
#define BLOCK_LONG 8192
#define BLOCK_SHORT 256

static uint32_t shift_long[4][256], shift_short[4][256];

/* The product of a 32x32 GF(2) matrix (columns as words) and a vector. */
static uint32_t gf2_apply(const uint32_t m[32], uint32_t v) {
  uint32_t r = 0;
  for (int i = 0; v != 0; i++, v >>= 1)
    if (v & 1) r ^= m[i];
  return r;
}

/* out = m * m (out must not alias m). */
static void gf2_square(uint32_t out[32], const uint32_t m[32]) {
  for (int i = 0; i < 32; i++) out[i] = gf2_apply(m, m[i]);
}

/* Tables that advance a raw CRC past `bytes` zero bytes (`bytes` a power of two). */
static void build_shift(uint32_t t[4][256], size_t bytes) {
  uint32_t a[32], b[32];
  /* One zero bit: the reflected CRC register shifts right, folding the polynomial in. */
  a[0] = 0x82F63B78u;
  for (int i = 1; i < 32; i++) a[i] = 1u << (i - 1);
  /* Square 3 times for one zero byte, then once more per doubling of the length. */
  size_t squarings = 3;
  for (size_t n = bytes; n > 1; n >>= 1) squarings++;
  uint32_t *cur = a, *next = b;
  for (size_t k = 0; k < squarings; k++) {
    gf2_square(next, cur);
    uint32_t *tmp = cur;
    cur = next;
    next = tmp;
  }
  for (uint32_t n = 0; n < 256; n++) {
    t[0][n] = gf2_apply(cur, n);
    t[1][n] = gf2_apply(cur, n << 8);
    t[2][n] = gf2_apply(cur, n << 16);
    t[3][n] = gf2_apply(cur, n << 24);
  }
}

static uint32_t shift_by(uint32_t t[4][256], uint32_t c) {
  return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
}

/* Three chains over the three adjacent `block`-byte blocks at p, joined: the raw CRC of
 * c0 followed by all 3 * block bytes. */
__attribute__((target("sse4.2"))) static inline uint64_t crc_3_blocks(uint64_t c0,
                                                                       const uint8_t *p,
                                                                       size_t block,
                                                                       uint32_t shift[4][256]) {
  uint64_t c1 = 0, c2 = 0;
  for (const uint8_t *end = p + block; p < end; p += 8) {
    uint64_t v0, v1, v2;
    memcpy(&v0, p, 8);
    memcpy(&v1, p + block, 8);
    memcpy(&v2, p + 2 * block, 8);
    c0 = _mm_crc32_u64(c0, v0);
    c1 = _mm_crc32_u64(c1, v1);
    c2 = _mm_crc32_u64(c2, v2);
  }
  c0 = shift_by(shift, (uint32_t)c0) ^ (uint32_t)c1;
  return shift_by(shift, (uint32_t)c0) ^ (uint32_t)c2;
}

__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t c, const uint8_t *p, size_t n) {
  uint64_t c0 = c;
  for (; n >= 3 * BLOCK_LONG; p += 3 * BLOCK_LONG, n -= 3 * BLOCK_LONG)
    c0 = crc_3_blocks(c0, p, BLOCK_LONG, shift_long);
  for (; n >= 3 * BLOCK_SHORT; p += 3 * BLOCK_SHORT, n -= 3 * BLOCK_SHORT)
    c0 = crc_3_blocks(c0, p, BLOCK_SHORT, shift_short);
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c0 = _mm_crc32_u64(c0, v);
    p += 8;
    n -= 8;
  }
  c = (uint32_t)c0;
  if (n >= 4) {
    uint32_t v;
    memcpy(&v, p, 4);
    c = _mm_crc32_u32(c, v);
    p += 4;
    n -= 4;
  }
  while (n--) c = _mm_crc32_u8(c, *p++);
  return c;
}
#endif

static uint32_t (*crc_raw)(uint32_t, const uint8_t *, size_t) = crc_table;
static const char *impl_name = "table";

static uint32_t record_crc(const uint8_t *rec, uint32_t tot_len) {
  uint32_t c = crc_raw(0xFFFFFFFFu, rec + 24, tot_len - 24);
  return ~crc_raw(c, rec, 20);
}

static uint32_t read_u32le(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ---- Node-API glue ---------------------------------------------------------------------- */

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, NULL, "tideline native: " #call " failed"); \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

/* The bytes of a Uint8Array argument (any TypedArray counts its bytes). */
static int get_bytes(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len) {
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  napi_typedarray_type type;
  size_t length;
  void *ptr;
  if (napi_get_typedarray_info(env, v, &type, &length, &ptr, NULL, NULL) != napi_ok) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  if (type != napi_uint8_array && type != napi_uint8_clamped_array && type != napi_int8_array) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  *data = (uint8_t *)ptr;
  *len = length;
  return 1;
}

static int get_int32_array(napi_env env, napi_value v, const char *what, int32_t **data, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  void *ptr;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, len, &ptr, NULL, NULL) != napi_ok ||
      (type != napi_int32_array && type != napi_uint32_array)) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  *data = (int32_t *)ptr;
  return 1;
}

/* A non-negative integer argument (a JS number that is a safe integer >= 0). */
static int get_index(napi_env env, napi_value v, const char *what, int64_t *out) {
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number ||
      napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || d > 9007199254740991.0 ||
      d != (double)(int64_t)d) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  *out = (int64_t)d;
  return 1;
}

/* Reads up to `max` arguments into argv; throws a TypeError with `usage` when fewer than
 * `min` were passed. Returns 0 when it threw. */
static int get_args(napi_env env, napi_callback_info info, size_t min, size_t max,
                    napi_value *argv, size_t *argc, const char *usage) {
  *argc = max;
  if (napi_get_cb_info(env, info, argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, NULL, "tideline native: napi_get_cb_info failed");
    return 0;
  }
  if (*argc < min) {
    napi_throw_type_error(env, NULL, usage);
    return 0;
  }
  return 1;
}

static napi_value crc_range(napi_env env, napi_callback_info info,
                            uint32_t (*fn)(uint32_t, const uint8_t *, size_t)) {
  size_t argc;
  napi_value argv[4];
  if (!get_args(env, info, 3, 4, argv, &argc, "crc32c(buf, start, end, crc?) takes at least 3 arguments"))
    return NULL;
  uint8_t *data;
  size_t len;
  int64_t start, end;
  uint32_t crc = 0;
  if (!get_bytes(env, argv[0], "crc32c: buf must be a Uint8Array", &data, &len)) return NULL;
  if (!get_index(env, argv[1], "crc32c: start must be a non-negative integer", &start)) return NULL;
  if (!get_index(env, argv[2], "crc32c: end must be a non-negative integer", &end)) return NULL;
  if (argc > 3) {
    napi_valuetype t;
    CHECK(napi_typeof(env, argv[3], &t));
    if (t != napi_undefined && napi_get_value_uint32(env, argv[3], &crc) != napi_ok) {
      napi_throw_type_error(env, NULL, "crc32c: crc must be a 32-bit unsigned integer");
      return NULL;
    }
  }
  if (start > end || (uint64_t)end > (uint64_t)len) {
    napi_throw_range_error(env, NULL, "crc32c: [start, end) must lie within buf");
    return NULL;
  }
  uint32_t r = ~fn(~crc, data + start, (size_t)(end - start));
  napi_value out;
  CHECK(napi_create_uint32(env, r, &out));
  return out;
}

static napi_value js_crc32c(napi_env env, napi_callback_info info) {
  return crc_range(env, info, crc_raw);
}

static napi_value js_crc32c_portable(napi_env env, napi_callback_info info) {
  return crc_range(env, info, crc_table);
}

/* Checks that a record at `off` lies in buf: 24 <= xl_tot_len and off + xl_tot_len <= len
 * (compared in 64 bits: size_t may be 32 bits wide). */
static int record_in_bounds(const uint8_t *data, size_t len, int64_t off, uint32_t *tot) {
  if (off < 0 || (uint64_t)off + 24 > (uint64_t)len) return 0;
  *tot = read_u32le(data + off);
  return *tot >= 24 && (uint64_t)off + *tot <= (uint64_t)len;
}

static napi_value js_record_crc(napi_env env, napi_callback_info info) {
  size_t argc;
  napi_value argv[2];
  if (!get_args(env, info, 2, 2, argv, &argc, "recordCrc(buf, offset) takes 2 arguments"))
    return NULL;
  uint8_t *data;
  size_t len;
  int64_t off;
  uint32_t tot;
  if (!get_bytes(env, argv[0], "recordCrc: buf must be a Uint8Array", &data, &len)) return NULL;
  if (!get_index(env, argv[1], "recordCrc: offset must be a non-negative integer", &off)) return NULL;
  if (!record_in_bounds(data, len, off, &tot)) {
    napi_throw_range_error(env, NULL, "recordCrc: the record (24 <= xl_tot_len) must lie within buf");
    return NULL;
  }
  napi_value out;
  CHECK(napi_create_uint32(env, record_crc(data + off, tot), &out));
  return out;
}

static napi_value js_record_crcs(napi_env env, napi_callback_info info) {
  size_t argc;
  napi_value argv[4];
  if (!get_args(env, info, 4, 4, argv, &argc, "recordCrcs(buf, offsets, count, out) takes 4 arguments"))
    return NULL;
  uint8_t *data;
  size_t len, n_offs, n_out;
  int32_t *offs, *out;
  int64_t count;
  if (!get_bytes(env, argv[0], "recordCrcs: buf must be a Uint8Array", &data, &len)) return NULL;
  if (!get_int32_array(env, argv[1], "recordCrcs: offsets must be an Int32Array", &offs, &n_offs))
    return NULL;
  if (!get_index(env, argv[2], "recordCrcs: count must be a non-negative integer", &count))
    return NULL;
  if (!get_int32_array(env, argv[3], "recordCrcs: out must be an Int32Array", &out, &n_out))
    return NULL;
  if ((uint64_t)count > (uint64_t)n_offs || (uint64_t)count > (uint64_t)n_out) {
    napi_throw_range_error(env, NULL, "recordCrcs: count exceeds offsets or out");
    return NULL;
  }
  for (int64_t i = 0; i < count; i++) {
    /* Read once: `offsets` may be shared with another thread (a SharedArrayBuffer). */
    int64_t off = (int64_t)((volatile int32_t *)offs)[i];
    uint32_t tot;
    if (!record_in_bounds(data, len, off, &tot)) {
      napi_throw_range_error(env, NULL,
                             "recordCrcs: a listed record (24 <= xl_tot_len) does not lie within buf");
      return NULL;
    }
    out[i] = (int32_t)record_crc(data + off, tot);
  }
  return NULL;
}

/* The arguments of listRecordCrcs, checked. */
struct list_args {
  const uint8_t *data;
  size_t len;
  int64_t start;
  uint32_t start_lo;
  int64_t page_size;
  uint32_t magic, long_header, contrecord;
  int32_t *offs, *out, *result;
  size_t cap;
};

/* Reads listRecordCrcs's 10 arguments from argv into `a`; throws and returns 0 when one is
 * wrong. */
static int get_list_args(napi_env env, napi_value *argv, struct list_args *a) {
  uint8_t *data;
  size_t n_out, n_result;
  int64_t start_lo, page_size, magic, long_header, contrecord;
  if (!get_bytes(env, argv[0], "listRecordCrcs: buf must be a Uint8Array", &data, &a->len) ||
      !get_index(env, argv[1], "listRecordCrcs: start must be a non-negative integer", &a->start) ||
      !get_index(env, argv[2], "listRecordCrcs: startLo must be a non-negative integer", &start_lo) ||
      !get_index(env, argv[3], "listRecordCrcs: pageSize must be a non-negative integer", &page_size) ||
      !get_index(env, argv[4], "listRecordCrcs: magic must be a non-negative integer", &magic) ||
      !get_index(env, argv[5], "listRecordCrcs: longHeader must be a non-negative integer", &long_header) ||
      !get_index(env, argv[6], "listRecordCrcs: contrecord must be a non-negative integer", &contrecord) ||
      !get_int32_array(env, argv[7], "listRecordCrcs: offsets must be an Int32Array", &a->offs, &a->cap) ||
      !get_int32_array(env, argv[8], "listRecordCrcs: out must be an Int32Array", &a->out, &n_out) ||
      !get_int32_array(env, argv[9], "listRecordCrcs: result must be an Int32Array", &a->result, &n_result))
    return 0;
  if (start_lo > 0xFFFFFFFF || page_size < 64 || page_size > (1 << 16) ||
      (page_size & (page_size - 1)) != 0 || magic > 0xFFFF || long_header > 0xFFFF ||
      contrecord > 0xFFFF || n_result < 2) {
    napi_throw_range_error(env, NULL,
                           "listRecordCrcs: startLo must fit 32 bits, pageSize be a power of two "
                           "in [64, 65536], magic and the flags fit 16 bits, result hold 2 values");
    return 0;
  }
  a->data = data;
  a->start_lo = (uint32_t)start_lo;
  a->page_size = page_size;
  a->magic = (uint32_t)magic;
  a->long_header = (uint32_t)long_header;
  a->contrecord = (uint32_t)contrecord;
  if (n_out < a->cap) a->cap = n_out;
  return 1;
}

/* The CRC of the record at `pos` (xl_tot_len `tot`) that continues over page boundaries, when
 * all of it lies in buf and each page it continues on starts with a header of the expected
 * magic, the continuation flag and the right remaining length (what the decoder requires).
 * The CRC covers the record's bytes as the decoder assembles them: the pieces after each page
 * header, whose size (24, or 40 with XLP_LONG_HEADER) comes from the same flag bit. Sets *end
 * to the offset just after its last byte. Returns 0 when it cannot tell. */
static int spanning_crc(const struct list_args *a, uint32_t base, int64_t pos, uint32_t tot,
                        uint32_t *crc_out, int64_t *end) {
  const uint8_t *data = a->data;
  const uint64_t len = a->len;
  const uint32_t mask = (uint32_t)a->page_size - 1;
  uint8_t head[24];
  uint32_t logical = 0; /* bytes of the record seen */
  uint32_t c = 0xFFFFFFFFu;
  while (logical < tot) {
    uint32_t page_off = (base + (uint32_t)pos) & mask;
    if (page_off == 0) {
      if ((uint64_t)pos + 24 > len) return 0;
      const uint8_t *p = data + pos;
      uint32_t flags = (uint32_t)(p[2] | (p[3] << 8));
      if ((uint32_t)(p[0] | (p[1] << 8)) != a->magic || !(flags & a->contrecord) ||
          read_u32le(p + 16) != tot - logical)
        return 0;
      page_off = (flags & a->long_header) ? 40 : 24;
      pos += page_off;
    }
    uint32_t n = (uint32_t)a->page_size - page_off;
    if (n > tot - logical) n = tot - logical;
    if ((uint64_t)pos + n > len) return 0;
    const uint8_t *q = data + pos;
    uint32_t k = 0;
    if (logical < 24) { /* the header: kept for last, as PostgreSQL sums it */
      k = 24 - logical < n ? 24 - logical : n;
      memcpy(head + logical, q, k);
    }
    c = crc_raw(c, q + k, n - k);
    logical += n;
    pos += n;
  }
  *crc_out = ~crc_raw(c, head, 20);
  *end = pos;
  return 1;
}

/* The walk (see the header comment). It stops at anything unexpected: a length below 24, a page
 * without the expected magic, the end of buf, `offsets` full. Records continued on later pages
 * are listed with the CRC of their assembled bytes when they lie in buf (see spanning_crc).
 * Touches no JavaScript value: it also runs on libuv's thread pool. */
static void list_walk(const struct list_args *a) {
  const uint8_t *data = a->data;
  const uint64_t len = a->len;
  const int64_t page_size = a->page_size;
  const uint32_t mask = (uint32_t)page_size - 1;
  const uint32_t base = a->start_lo - (uint32_t)a->start; /* low LSN bits of buf[0] */
  size_t n = 0;
  int64_t pos = a->start;
  /* Offsets are int32: records past 2 GiB into one buffer are left out. */
  while (n < a->cap && (uint64_t)pos + 24 <= len && pos <= 0x7FFFFFFF) {
    const uint8_t *p = data + pos;
    uint32_t page_off = (base + (uint32_t)pos) & mask;
    if (page_off == 0) {
      if ((uint32_t)(p[0] | (p[1] << 8)) != a->magic) break;
      uint32_t flags = (uint32_t)(p[2] | (p[3] << 8));
      int64_t size = (flags & a->long_header) ? 40 : 24;
      if (flags & a->contrecord) {
        int64_t rem = read_u32le(p + 16);
        int64_t first = size + rem + ((8 - (rem & 7)) & 7);
        pos += first < page_size ? first : page_size;
      } else {
        pos += size;
      }
      continue;
    }
    uint32_t tot = read_u32le(p);
    if (tot < 24) break;
    if ((int64_t)page_off + tot > page_size) {
      /* Continued on later pages: listed when all of it is in buf, else skipped (the walk
       * finds the next record after the continuation, from the next page's header). */
      uint32_t crc;
      int64_t end;
      if (spanning_crc(a, base, pos, tot, &crc, &end)) {
        a->offs[n] = (int32_t)pos;
        a->out[n] = (int32_t)crc;
        n++;
        pos = end + ((8 - ((base + (uint32_t)end) & 7)) & 7);
      } else {
        pos += page_size - page_off;
      }
      continue;
    }
    if ((uint64_t)pos + tot > len) break;
    a->offs[n] = (int32_t)pos;
    a->out[n] = (int32_t)record_crc(p, tot);
    n++;
    pos += ((int64_t)tot + 7) & ~(int64_t)7;
  }
  a->result[0] = (int32_t)n;
  a->result[1] = (int32_t)(pos > 0x7FFFFFFF ? 0x7FFFFFFF : pos);
}

static napi_value js_list_record_crcs(napi_env env, napi_callback_info info) {
  size_t argc;
  napi_value argv[10];
  struct list_args a;
  if (!get_args(env, info, 10, 10, argv, &argc,
                "listRecordCrcs(buf, start, startLo, pageSize, magic, longHeader, contrecord, "
                "offsets, out, result) takes 10 arguments") ||
      !get_list_args(env, argv, &a))
    return NULL;
  list_walk(&a);
  return NULL;
}

/* readRecordCrcsAsync(fd, position, buf, length, pageSize, longHeader, contrecord, offsets,
 * out, result, callback): on libuv's thread pool, reads up to `length` bytes of file `fd` at
 * `position` into buf[0, length) (pread, until EOF), then lists buf as listRecordCrcs does from
 * offset 0, a page start, with the magic of the page header found there. callback(error, n)
 * runs on the calling thread: n bytes read, or an Error (code "EIO" etc., errno) from pread.
 * One job for both, so that no turn of the calling thread's event loop lies between reading a
 * chunk and checksumming it. `fd` must stay open and buf and the arrays unchanged until the
 * callback has run. */
struct read_job {
  struct list_args a;
  int fd;
  int64_t position;
  size_t want;
  size_t got;
  int err;
  napi_async_work work;
  napi_ref refs[5]; /* buf, offsets, out, result, callback */
};

static void read_job_execute(napi_env env, void *data) {
  (void)env;
  struct read_job *job = (struct read_job *)data;
  uint8_t *buf = (uint8_t *)job->a.data;
  while (job->got < job->want) {
    ssize_t n = pread(job->fd, buf + job->got, job->want - job->got, (off_t)(job->position + (int64_t)job->got));
    if (n < 0) {
      if (errno == EINTR) continue;
      job->err = errno;
      return;
    }
    if (n == 0) break;
    job->got += (size_t)n;
  }
  job->a.result[0] = 0;
  job->a.result[1] = 0;
  if (job->got >= 24) {
    job->a.len = job->got;
    job->a.magic = (uint32_t)(buf[0] | (buf[1] << 8));
    list_walk(&job->a);
  }
}

/* The usual name of an errno value (Node.js's error codes), or NULL. */
static const char *errno_code(int e) {
  switch (e) {
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case ENXIO: return "ENXIO";
    case EOVERFLOW: return "EOVERFLOW";
    case ESPIPE: return "ESPIPE";
    case ENOMEM: return "ENOMEM";
    case EAGAIN: return "EAGAIN";
    case ESTALE: return "ESTALE";
    default: return NULL;
  }
}

static void read_job_free(napi_env env, struct read_job *job) {
  for (int i = 0; i < 5; i++)
    if (job->refs[i] != NULL) napi_delete_reference(env, job->refs[i]);
  if (job->work != NULL) napi_delete_async_work(env, job->work);
  free(job);
}

/* The Error of a failed job: "<CODE>: <reason>, <syscall>", with `code`, `errno` (negative,
 * as Node.js's) and `syscall`; or, when the work was cancelled (`status` not napi_ok), an
 * Error saying so on behalf of `fn`. */
static napi_value job_error(napi_env env, napi_status status, int err, const char *fn,
                            const char *syscall_name) {
  char message[160];
  const char *code = status != napi_ok ? NULL : errno_code(err);
  if (status != napi_ok) {
    snprintf(message, sizeof message, "%s: the work was cancelled", fn);
  } else {
    /* strerror_r (the XSI one, with _POSIX_C_SOURCE): strerror is not thread-safe, and
     * worker threads' event loops complete jobs too. */
    char reason[96];
    if (strerror_r(err, reason, sizeof reason) != 0) snprintf(reason, sizeof reason, "errno %d", err);
    snprintf(message, sizeof message, "%s%s%s, %s", code != NULL ? code : "",
             code != NULL ? ": " : "", reason, syscall_name);
  }
  napi_value msg, code_value = NULL, error, value;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  if (code != NULL) napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value);
  napi_create_error(env, code_value, msg, &error);
  if (status == napi_ok) {
    napi_create_int32(env, -err, &value);
    napi_set_named_property(env, error, "errno", value);
    napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &value);
    napi_set_named_property(env, error, "syscall", value);
  }
  return error;
}

/* Runs a finished job's callback (the function `cb` refers to) with (null, n), or with
 * (Error, undefined) when it failed (see job_error). An exception thrown by the callback is
 * left pending: Node.js reports it as uncaught. */
static void call_back(napi_env env, napi_ref cb, napi_status status, int err, double n,
                      const char *fn, const char *syscall_name) {
  napi_value fn_value, global, args[2];
  if (napi_get_reference_value(env, cb, &fn_value) != napi_ok || fn_value == NULL ||
      napi_get_global(env, &global) != napi_ok)
    return;
  if (status != napi_ok || err != 0) {
    args[0] = job_error(env, status, err, fn, syscall_name);
    napi_get_undefined(env, &args[1]);
  } else {
    napi_get_null(env, &args[0]);
    napi_create_double(env, n, &args[1]);
  }
  napi_call_function(env, global, fn_value, 2, args, NULL);
}

static void read_job_complete(napi_env env, napi_status status, void *data) {
  struct read_job *job = (struct read_job *)data;
  call_back(env, job->refs[4], status, job->err, (double)job->got, "readRecordCrcsAsync", "pread");
  read_job_free(env, job);
}

static napi_value js_read_record_crcs_async(napi_env env, napi_callback_info info) {
  size_t argc;
  napi_value argv[11];
  if (!get_args(env, info, 11, 11, argv, &argc,
                "readRecordCrcsAsync(fd, position, buf, length, pageSize, longHeader, contrecord, "
                "offsets, out, result, callback) takes 11 arguments"))
    return NULL;
  int64_t fd, position, length, page_size, long_header, contrecord;
  uint8_t *data;
  size_t len, cap, n_out, n_result;
  int32_t *offs, *out, *result;
  napi_valuetype t;
  if (!get_index(env, argv[0], "readRecordCrcsAsync: fd must be a non-negative integer", &fd) ||
      !get_index(env, argv[1], "readRecordCrcsAsync: position must be a non-negative integer", &position) ||
      !get_bytes(env, argv[2], "readRecordCrcsAsync: buf must be a Uint8Array", &data, &len) ||
      !get_index(env, argv[3], "readRecordCrcsAsync: length must be a non-negative integer", &length) ||
      !get_index(env, argv[4], "readRecordCrcsAsync: pageSize must be a non-negative integer", &page_size) ||
      !get_index(env, argv[5], "readRecordCrcsAsync: longHeader must be a non-negative integer", &long_header) ||
      !get_index(env, argv[6], "readRecordCrcsAsync: contrecord must be a non-negative integer", &contrecord) ||
      !get_int32_array(env, argv[7], "readRecordCrcsAsync: offsets must be an Int32Array", &offs, &cap) ||
      !get_int32_array(env, argv[8], "readRecordCrcsAsync: out must be an Int32Array", &out, &n_out) ||
      !get_int32_array(env, argv[9], "readRecordCrcsAsync: result must be an Int32Array", &result, &n_result))
    return NULL;
  if (napi_typeof(env, argv[10], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, NULL, "readRecordCrcsAsync: callback must be a function");
    return NULL;
  }
  if (fd > 0x7FFFFFFF || (uint64_t)length > (uint64_t)len || page_size < 64 ||
      page_size > (1 << 16) || (page_size & (page_size - 1)) != 0 || long_header > 0xFFFF ||
      contrecord > 0xFFFF || n_result < 2) {
    napi_throw_range_error(env, NULL,
                           "readRecordCrcsAsync: fd must fit 31 bits, length not exceed buf, pageSize "
                           "be a power of two in [64, 65536], the flags fit 16 bits, result hold 2 "
                           "values");
    return NULL;
  }
  struct read_job *job = (struct read_job *)calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "readRecordCrcsAsync: out of memory");
    return NULL;
  }
  job->fd = (int)fd;
  job->position = position;
  job->want = (size_t)length;
  job->a.data = data;
  job->a.len = 0;
  job->a.start = 0;
  job->a.start_lo = 0;
  job->a.page_size = page_size;
  job->a.long_header = (uint32_t)long_header;
  job->a.contrecord = (uint32_t)contrecord;
  job->a.offs = offs;
  job->a.out = out;
  job->a.result = result;
  job->a.cap = n_out < cap ? n_out : cap;
  static const int held[5] = {2, 7, 8, 9, 10};
  for (int i = 0; i < 5; i++) {
    if (napi_create_reference(env, argv[held[i]], 1, &job->refs[i]) != napi_ok) {
      read_job_free(env, job);
      napi_throw_error(env, NULL, "readRecordCrcsAsync: napi_create_reference failed");
      return NULL;
    }
  }
  napi_value name;
  if (napi_create_string_utf8(env, "tideline.readRecordCrcs", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, read_job_execute, read_job_complete, job,
                             &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    read_job_free(env, job);
    napi_throw_error(env, NULL, "readRecordCrcsAsync: could not queue the work");
    return NULL;
  }
  return NULL;
}

/* Starts writing the dirty pages of [offset, offset + length) of file `fd` to disk without
 * waiting for it (Linux's sync_file_range with SYNC_FILE_RANGE_WRITE), so that a later fsync
 * finds most of them written; does nothing elsewhere, or for an empty range (to
 * sync_file_range, a length of 0 means "to the end of the file"). Called on the thread pool:
 * it can block while the disk's queue is full. Durability still needs the fsync. */
#if defined(__linux__)
/* Declared here rather than with _GNU_SOURCE, which would also switch strerror_r to the GNU
 * one. glibc and musl export it with 64-bit offsets (_FILE_OFFSET_BITS is 64 here) and pass
 * them right on every architecture, which a variadic syscall() would not. */
extern int sync_file_range(int fd, off_t offset, off_t nbytes, unsigned int flags);
#endif
static void start_writeback(int fd, int64_t offset, size_t length) {
#if defined(__linux__)
  if (length > 0) (void)sync_file_range(fd, (off_t)offset, (off_t)length, 2u /* SYNC_FILE_RANGE_WRITE */);
#else
  (void)fd;
  (void)offset;
  (void)length;
#endif
}

/* writeAsync(fd, position, buf, startWriteback, callback): on libuv's thread pool, writes all
 * of buf at `position` of file `fd` (pwrite, until done), then, when startWriteback is true,
 * starts that range's writeback (start_writeback); callback(error, n) runs on the calling
 * thread. One job for both, off the calling thread. `fd` must stay open, and buf unchanged,
 * until the callback. */
struct write_job {
  int fd;
  int writeback;
  int64_t position;
  const uint8_t *data;
  size_t len;
  size_t done;
  int err;
  napi_async_work work;
  napi_ref refs[2]; /* buf, callback */
};

static void write_job_execute(napi_env env, void *data) {
  (void)env;
  struct write_job *job = (struct write_job *)data;
  while (job->done < job->len) {
    ssize_t n = pwrite(job->fd, job->data + job->done, job->len - job->done,
                       (off_t)(job->position + (int64_t)job->done));
    if (n < 0) {
      if (errno == EINTR) continue;
      job->err = errno;
      return;
    }
    if (n == 0) {
      job->err = EIO;
      return;
    }
    job->done += (size_t)n;
  }
  if (job->writeback) start_writeback(job->fd, job->position, job->len);
}

static void write_job_free(napi_env env, struct write_job *job) {
  for (int i = 0; i < 2; i++)
    if (job->refs[i] != NULL) napi_delete_reference(env, job->refs[i]);
  if (job->work != NULL) napi_delete_async_work(env, job->work);
  free(job);
}

static void write_job_complete(napi_env env, napi_status status, void *data) {
  struct write_job *job = (struct write_job *)data;
  call_back(env, job->refs[1], status, job->err, (double)job->done, "writeAsync", "pwrite");
  write_job_free(env, job);
}

static napi_value js_write_async(napi_env env, napi_callback_info info) {
  size_t argc, len;
  napi_value argv[5], name;
  int64_t fd, position;
  uint8_t *data;
  bool writeback;
  napi_valuetype t;
  if (!get_args(env, info, 5, 5, argv, &argc,
                "writeAsync(fd, position, buf, startWriteback, callback) takes 5 arguments") ||
      !get_index(env, argv[0], "writeAsync: fd must be a non-negative integer", &fd) ||
      !get_index(env, argv[1], "writeAsync: position must be a non-negative integer", &position) ||
      !get_bytes(env, argv[2], "writeAsync: buf must be a Uint8Array", &data, &len))
    return NULL;
  if (napi_typeof(env, argv[3], &t) != napi_ok || t != napi_boolean ||
      napi_get_value_bool(env, argv[3], &writeback) != napi_ok) {
    napi_throw_type_error(env, NULL, "writeAsync: startWriteback must be a boolean");
    return NULL;
  }
  if (napi_typeof(env, argv[4], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, NULL, "writeAsync: callback must be a function");
    return NULL;
  }
  if (fd > 0x7FFFFFFF) {
    napi_throw_range_error(env, NULL, "writeAsync: fd must fit 31 bits");
    return NULL;
  }
  struct write_job *job = (struct write_job *)calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "writeAsync: out of memory");
    return NULL;
  }
  job->fd = (int)fd;
  job->position = position;
  job->data = data;
  job->len = len;
  job->writeback = writeback;
  if (napi_create_reference(env, argv[2], 1, &job->refs[0]) != napi_ok ||
      napi_create_reference(env, argv[4], 1, &job->refs[1]) != napi_ok ||
      napi_create_string_utf8(env, "tideline.write", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, write_job_execute, write_job_complete, job,
                             &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    write_job_free(env, job);
    napi_throw_error(env, NULL, "writeAsync: could not queue the work");
    return NULL;
  }
  return NULL;
}

/* Tables and the implementation are chosen once per process: worker threads load the
 * module too, and must not rewrite what other threads are reading. */
static void init_once(void) {
  init_table();
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) {
    build_shift(shift_long, BLOCK_LONG);
    build_shift(shift_short, BLOCK_SHORT);
    crc_raw = crc_sse42;
    impl_name = "sse4.2";
  }
#endif
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

static napi_value init(napi_env env, napi_value exports) {
  pthread_once(&once, init_once);
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
      {"crc32c", js_crc32c},
      {"crc32cPortable", js_crc32c_portable},
      {"recordCrc", js_record_crc},
      {"recordCrcs", js_record_crcs},
      {"listRecordCrcs", js_list_record_crcs},
      {"readRecordCrcsAsync", js_read_record_crcs_async},
      {"writeAsync", js_write_async},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    CHECK(napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn));
    CHECK(napi_set_named_property(env, exports, fns[i].name, fn));
  }
  napi_value impl;
  CHECK(napi_create_string_utf8(env, impl_name, NAPI_AUTO_LENGTH, &impl));
  CHECK(napi_set_named_property(env, exports, "impl", impl));
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
