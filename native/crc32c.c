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
 *   crc32cPortable(buf, start, end, crc) crc32c without the CPU instruction (for tests).
 *   impl                                "sse4.2" or "table": what crc32c and recordCrc use.
 */
#include <node_api.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
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
