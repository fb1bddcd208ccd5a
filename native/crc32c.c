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
__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t c, const uint8_t *p, size_t n) {
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c64 = _mm_crc32_u64(c64, v);
    p += 8;
    n -= 8;
  }
  c = (uint32_t)c64;
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

static int get_index(napi_env env, napi_value v, const char *what, int64_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number ||
      napi_get_value_int64(env, v, out) != napi_ok || *out < 0) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  return 1;
}

static napi_value crc_range(napi_env env, napi_callback_info info,
                            uint32_t (*fn)(uint32_t, const uint8_t *, size_t)) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "crc32c(buf, start, end, crc?) takes at least 3 arguments");
    return NULL;
  }
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
  if (start > end || (size_t)end > len) {
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

/* Checks that a record at `off` lies in buf: 24 <= xl_tot_len and off + xl_tot_len <= len. */
static int record_in_bounds(const uint8_t *data, size_t len, int64_t off, uint32_t *tot) {
  if (off < 0 || (size_t)off + 24 > len) return 0;
  *tot = read_u32le(data + off);
  return *tot >= 24 && (size_t)off + *tot <= len;
}

static napi_value js_record_crc(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *data;
  size_t len;
  int64_t off;
  uint32_t tot;
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "recordCrc(buf, offset) takes 2 arguments");
    return NULL;
  }
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
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "recordCrcs(buf, offsets, count, out) takes 4 arguments");
    return NULL;
  }
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
  if ((size_t)count > n_offs || (size_t)count > n_out) {
    napi_throw_range_error(env, NULL, "recordCrcs: count exceeds offsets or out");
    return NULL;
  }
  for (int64_t i = 0; i < count; i++) {
    uint32_t tot;
    if (!record_in_bounds(data, len, offs[i], &tot)) {
      napi_throw_range_error(env, NULL,
                             "recordCrcs: a listed record (24 <= xl_tot_len) does not lie within buf");
      return NULL;
    }
    out[i] = (int32_t)record_crc(data + offs[i], tot);
  }
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  init_table();
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) {
    crc_raw = crc_sse42;
    impl_name = "sse4.2";
  }
#endif
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
