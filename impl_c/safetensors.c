// SPEC.md "Checkpoints": safetensors reading and atomic writing for the C tier; see safetensors.h for
// the rules. The layout of this file: the canonical parameters, a small strict JSON parser, the
// safetensors header, the checks of shared/checkpoint.py, the data, the public readers, the writer.
#define _POSIX_C_SOURCE 200809L  // pread, fsync, mkdir, O_CLOEXEC

#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEPTH 128                   // JSON nesting, serde_json's recursion limit
#define MAX_CONFIG_JSON (16u << 20)     // config.json larger than this is not a GPT2Config
#define CHUNK 65536                     // bytes per read or write of tensor data

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static void clear(char *err, size_t errlen) {  // a successful call leaves "" in err
    if (err && errlen) err[0] = 0;
}

static int mul_ok(uint64_t a, uint64_t b, uint64_t *out) {  // *out = a * b unless it overflows
    if (a != 0 && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}

// ---- the canonical parameters: gpt.c's table (SPEC.md "Parameters"), the only one in C ----

typedef struct {
    int rank;
    uint64_t dims[2];
    uint64_t numel;
    uint64_t offset;  // in floats, into the flat buffer
} Spec;

static uint64_t num_tensors(GPTConfig c) { return (uint64_t)gpt_num_tensors(c); }

// tensor i of a config that passed gpt_config_check (then i < 4 + 12 * 2^16 fits an int)
static void tensor_spec(GPTConfig c, uint64_t i, Spec *s) {
    size_t shape[2];
    s->rank = gpt_tensor_shape(c, (int)i, shape);
    s->dims[0] = shape[0], s->dims[1] = shape[1];
    s->numel = gpt_tensor_numel(c, (int)i);
    s->offset = gpt_tensor_offset(c, (int)i);
}

static void tensor_name(GPTConfig c, uint64_t i, char *buf, size_t cap) { gpt_tensor_name(c, (int)i, buf, cap); }

static int name_is(const char *s, size_t n, const char *lit) { return strlen(lit) == n && !memcmp(s, lit, n); }

// the canonical index of a name, or -1 ("h.01.ln_1.weight" is not "h.1.ln_1.weight": names are strings)
static int64_t canonical_index(GPTConfig c, const char *s, size_t n) {
    uint64_t L = (uint64_t)c.n_layer;
    if (name_is(s, n, "wte.weight")) return 0;
    if (name_is(s, n, "wpe.weight")) return 1;
    if (name_is(s, n, "ln_f.weight")) return (int64_t)(2 + 12 * L);
    if (name_is(s, n, "ln_f.bias")) return (int64_t)(3 + 12 * L);
    if (n < 4 || s[0] != 'h' || s[1] != '.') return -1;
    size_t i = 2;
    uint64_t layer = 0;
    if (s[i] == '0') {
        i++;
    } else {
        if (s[i] < '1' || s[i] > '9') return -1;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            layer = layer * 10 + (uint64_t)(s[i++] - '0');
            if (layer >= L) return -1;
        }
    }
    if (layer >= L || i >= n || s[i] != '.') return -1;
    i++;
    for (int k = 0; k < 12; k++) {  // block 0's names, "h.0." dropped
        char block0[64];
        gpt_tensor_name(c, 2 + k, block0, sizeof block0);
        if (name_is(s + i, n - i, block0 + 4)) return (int64_t)(2 + 12 * layer + (uint64_t)k);
    }
    return -1;
}

// shared/config.py ABLATIONS: the switches of SPEC.md "Ablations", in GPTConfig's order, 1 (true) in GPT-2
static const char *const ABLATIONS[3] = {"scale_attn_weights", "residual", "position_embedding"};

static void ablation_values(GPTConfig c, int out[3]) {
    out[0] = c.scale_attn_weights, out[1] = c.residual, out[2] = c.position_embedding;
}

// a config for messages: the five sizes, then each ablation that is not on (as GPTConfig's repr)
static void config_repr(GPTConfig c, char *buf, size_t cap) {
    int k = snprintf(buf, cap, "n_layer %d, n_head %d, n_embd %d, block_size %d, vocab_size %d", c.n_layer, c.n_head,
                     c.n_embd, c.block_size, c.vocab_size);
    int on[3];
    ablation_values(c, on);
    for (int i = 0; i < 3 && k >= 0 && (size_t)k < cap; i++)
        if (on[i] != 1) k += snprintf(buf + k, cap - (size_t)k, ", %s %d", ABLATIONS[i], on[i]);
}

// gpt.c's check (SPEC.md "Limits"), its message after the file's name. Within the limits, a model in
// F64 (2^43 bytes at most) fits in size_t, so no byte count below can overflow.
static int config_check(GPTConfig c, const char *name, char *err, size_t errlen) {
    char msg[256];
    if (gpt_config_check(c, msg, sizeof msg) == GPT_OK) return GPT_OK;
    return fail(err, errlen, GPT_ERR_CONFIG, "%s: %s", name, msg);
}

static uint64_t num_params(GPTConfig c) { return (uint64_t)gpt_num_params(c); }

// ---- JSON ----
// One parser, two dialects: serde_json's (the safetensors header, parsed by the reference
// implementation) and Python's json.loads (the config, config.json and the AdamW settings, which
// shared/checkpoint.py parses): the latter also takes NaN, Infinity, -Infinity and lone surrogates.

enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARRAY, J_OBJECT };
static const char *const PY_TYPE[] = {"NoneType", "bool", "bool", "number", "str", "list", "dict"};

typedef struct {
    const unsigned char *s;
    size_t n, i;
    int python;  // Python's json.loads rather than serde_json
    int depth;
    char msg[160];  // the first error
} JP;

typedef struct {
    int is_int;      // an integer literal (no fraction, no exponent)
    int neg, big;    // sign; magnitude above UINT64_MAX
    uint64_t mag;    // integer magnitude
    double d;        // the value as a double
    char text[40];   // the literal, for messages (cut at 39 characters)
} JNum;

static int jp_err(JP *p, const char *what) {
    if (!p->msg[0]) snprintf(p->msg, sizeof p->msg, "%s at byte %zu", what, p->i);
    return -1;
}

static void jp_ws(JP *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++;
}

static int jp_peek(JP *p) { return p->i < p->n ? p->s[p->i] : -1; }

static int jp_lit(JP *p, const char *lit) {
    size_t k = strlen(lit);
    if (p->n - p->i < k || memcmp(p->s + p->i, lit, k) != 0) return 0;
    p->i += k;
    return 1;
}

// length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates, <= U+10FFFF), or 0
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t k;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) k = 2;
    else if (c >= 0xE0 && c <= 0xEF) k = 3;
    else if (c >= 0xF0 && c <= 0xF4) k = 4;
    else return 0;
    if (n < k) return 0;
    for (size_t j = 1; j < k; j++)
        if ((s[j] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0;  // overlong
    if (c == 0xED && s[1] > 0x9F) return 0;  // surrogate
    if (c == 0xF0 && s[1] < 0x90) return 0;  // overlong
    if (c == 0xF4 && s[1] > 0x8F) return 0;  // above U+10FFFF
    return k;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int jp_hex4(JP *p, uint32_t *cp) {  // the XXXX of \uXXXX
    if (p->n - p->i < 4) return jp_err(p, "truncated \\u escape");
    uint32_t v = 0;
    for (size_t k = 0; k < 4; k++) {
        int h = hexval(p->s[p->i + k]);
        if (h < 0) return jp_err(p, "invalid \\u escape");
        v = v << 4 | (uint32_t)h;
    }
    p->i += 4;
    *cp = v;
    return 0;
}

static void put_byte(char *out, size_t cap, size_t *k, unsigned c) {
    if (out && *k < cap) out[*k] = (char)c;
    (*k)++;
}

static void put_utf8(char *out, size_t cap, size_t *k, uint32_t cp) {  // surrogates too (WTF-8)
    if (cp < 0x80) {
        put_byte(out, cap, k, cp);
    } else if (cp < 0x800) {
        put_byte(out, cap, k, 0xC0 | cp >> 6);
        put_byte(out, cap, k, 0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        put_byte(out, cap, k, 0xE0 | cp >> 12);
        put_byte(out, cap, k, 0x80 | (cp >> 6 & 0x3F));
        put_byte(out, cap, k, 0x80 | (cp & 0x3F));
    } else {
        put_byte(out, cap, k, 0xF0 | cp >> 18);
        put_byte(out, cap, k, 0x80 | (cp >> 12 & 0x3F));
        put_byte(out, cap, k, 0x80 | (cp >> 6 & 0x3F));
        put_byte(out, cap, k, 0x80 | (cp & 0x3F));
    }
}

// The string at p->i, decoded: at most cap bytes go to out (out may be NULL), *len gets the whole
// length. A decoded string is never longer than its JSON form.
static int jp_string(JP *p, char *out, size_t cap, size_t *len) {
    size_t k = 0;
    if (jp_peek(p) != '"') return jp_err(p, "expected a string");
    p->i++;
    for (;;) {
        if (p->i >= p->n) return jp_err(p, "unterminated string");
        unsigned c = p->s[p->i];
        if (c == '"') {
            p->i++;
            break;
        }
        if (c < 0x20) return jp_err(p, "control character in a string");
        if (c != '\\') {
            size_t m = utf8_seq(p->s + p->i, p->n - p->i);
            if (!m) return jp_err(p, "invalid UTF-8 in a string");
            for (size_t j = 0; j < m; j++) put_byte(out, cap, &k, p->s[p->i + j]);
            p->i += m;
            continue;
        }
        if (p->i + 1 >= p->n) return jp_err(p, "unterminated string");
        unsigned e = p->s[p->i + 1];
        uint32_t cp;
        p->i += 2;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (jp_hex4(p, &cp)) return -1;
            if (cp >= 0xD800 && cp <= 0xDBFF) {  // a high surrogate: a low one must follow
                size_t save = p->i;
                uint32_t lo = 0;
                if (p->n - p->i >= 2 && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u') {
                    p->i += 2;
                    if (jp_hex4(p, &lo)) return -1;
                }
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else {
                    if (!p->python) return jp_err(p, "lone surrogate in a \\u escape");
                    p->i = save;  // Python keeps it, and reads what follows on its own
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF && !p->python) {
                return jp_err(p, "lone surrogate in a \\u escape");
            }
            break;
        default:
            p->i -= 1;
            return jp_err(p, "invalid escape");
        }
        put_utf8(out, cap, &k, cp);
    }
    *len = k;
    return 0;
}

static int jp_number(JP *p, JNum *num) {
    memset(num, 0, sizeof *num);
    size_t start = p->i;
    if (p->python) {  // json.loads takes these three literals
        if (jp_lit(p, "NaN")) num->d = NAN;
        else if (jp_lit(p, "Infinity")) num->d = INFINITY;
        else if (jp_lit(p, "-Infinity")) num->d = -INFINITY, num->neg = 1;
        if (p->i != start) {
            snprintf(num->text, sizeof num->text, "%.*s", (int)(p->i - start), (const char *)p->s + start);
            return 0;
        }
    }
    num->is_int = 1;
    if (jp_peek(p) == '-') p->i++, num->neg = 1;
    int c = jp_peek(p);
    if (c == '0') {
        p->i++;
    } else if (c >= '1' && c <= '9') {
        while ((c = jp_peek(p)) >= '0' && c <= '9') {
            uint64_t d = (uint64_t)(c - '0');
            if (num->mag > (UINT64_MAX - d) / 10) num->big = 1;
            else num->mag = num->mag * 10 + d;
            p->i++;
        }
    } else {
        return jp_err(p, "invalid number");
    }
    if (jp_peek(p) == '.') {
        num->is_int = 0;
        p->i++;
        if ((c = jp_peek(p)) < '0' || c > '9') return jp_err(p, "invalid number");
        while ((c = jp_peek(p)) >= '0' && c <= '9') p->i++;
    }
    if (jp_peek(p) == 'e' || jp_peek(p) == 'E') {
        num->is_int = 0;
        p->i++;
        if (jp_peek(p) == '+' || jp_peek(p) == '-') p->i++;
        if ((c = jp_peek(p)) < '0' || c > '9') return jp_err(p, "invalid number");
        while ((c = jp_peek(p)) >= '0' && c <= '9') p->i++;
    }
    size_t len = p->i - start;
    snprintf(num->text, sizeof num->text, "%.*s", (int)(len < 39 ? len : 39), (const char *)p->s + start);
    // strtod needs a terminated copy, with the locale's decimal point (a host program may have set one)
    char small[64], *buf = len < sizeof small ? small : malloc(len + 1);
    if (!buf) return jp_err(p, "out of memory");
    memcpy(buf, p->s + start, len);
    buf[len] = 0;
    const char *dp = localeconv()->decimal_point;
    if (dp && dp[0] && dp[0] != '.' && !dp[1])
        for (size_t k = 0; k < len; k++)
            if (buf[k] == '.') buf[k] = dp[0];
    num->d = strtod(buf, NULL);
    if (buf != small) free(buf);
    if (!p->python && !num->is_int && isinf(num->d)) return jp_err(p, "number out of range");
    return 0;
}

// Object and array iteration: after *_begin, each *_next returns 1 when an element follows (for an
// object, p is at its key), 0 at the end (consumed), -1 on an error.
static int jp_begin(JP *p, int open) {
    jp_ws(p);
    if (jp_peek(p) != open) return jp_err(p, open == '{' ? "expected an object" : "expected an array");
    if (++p->depth > MAX_DEPTH) return jp_err(p, "nested too deeply");
    p->i++;
    return 0;
}

static int jp_next(JP *p, int close, int *count) {
    jp_ws(p);
    if (jp_peek(p) == close) {
        p->i++;
        p->depth--;
        return 0;
    }
    if (*count > 0) {
        if (jp_peek(p) != ',') return jp_err(p, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
        p->i++;
        jp_ws(p);
    }
    if (close == '}' && jp_peek(p) != '"') return jp_err(p, "expected a key string");
    (*count)++;
    return 1;
}

static int jp_colon(JP *p) {
    jp_ws(p);
    if (jp_peek(p) != ':') return jp_err(p, "expected ':'");
    p->i++;
    jp_ws(p);
    return 0;
}

typedef struct {  // a captured scalar
    int type;
    JNum num;
    char str[48];  // strings: the first bytes
    size_t str_len;
} JVal;

// any value; scalars are described in *v (nullable), containers are checked and skipped
static int jp_value(JP *p, JVal *v) {
    JVal scratch;
    if (!v) v = &scratch;
    jp_ws(p);
    int c = jp_peek(p), r, count = 0;
    if (c == '{') {
        v->type = J_OBJECT;
        if (jp_begin(p, '{')) return -1;
        while ((r = jp_next(p, '}', &count)) == 1) {
            size_t len;
            if (jp_string(p, NULL, 0, &len) || jp_colon(p) || jp_value(p, NULL)) return -1;
        }
        return r;
    }
    if (c == '[') {
        v->type = J_ARRAY;
        if (jp_begin(p, '[')) return -1;
        while ((r = jp_next(p, ']', &count)) == 1)
            if (jp_value(p, NULL)) return -1;
        return r;
    }
    if (c == '"') {
        v->type = J_STR;
        if (jp_string(p, v->str, sizeof v->str, &v->str_len)) return -1;
        return 0;
    }
    if (jp_lit(p, "null")) return v->type = J_NULL, 0;
    if (jp_lit(p, "true")) return v->type = J_TRUE, 0;
    if (jp_lit(p, "false")) return v->type = J_FALSE, 0;
    if (c == '-' || (c >= '0' && c <= '9') || (p->python && (c == 'N' || c == 'I'))) {
        v->type = J_NUM;
        return jp_number(p, &v->num);
    }
    return jp_err(p, c < 0 ? "unexpected end" : "expected a value");
}

static int jp_end(JP *p) {
    jp_ws(p);
    return p->i == p->n ? 0 : jp_err(p, "trailing characters");
}

// A JSON text parsed the way Python's json.loads does: *top receives its type, and if it is an object,
// fields[k] receives the value of key names[k] (the last one, as in Python; type -1 when absent).
// *n_unknown counts the other keys, the first of which goes to unknown (cap bytes).
static int parse_fields(const char *text, size_t n, const char *const *names, JVal *fields, int nf, int *top,
                        int *n_unknown, char *unknown, size_t cap, char *msg, size_t msgcap) {
    JP p = {(const unsigned char *)text, n, 0, 1, 0, {0}};
    int r, count = 0;
    for (int k = 0; k < nf; k++) fields[k].type = -1;
    if (n_unknown) *n_unknown = 0;
    jp_ws(&p);
    if (jp_peek(&p) != '{') {
        JVal v;
        v.type = J_NULL;
        r = jp_value(&p, &v) || jp_end(&p);
        *top = v.type;
    } else {
        *top = J_OBJECT;
        jp_begin(&p, '{');
        while ((r = jp_next(&p, '}', &count)) == 1) {
            char key[48];
            size_t len;
            if (jp_string(&p, key, sizeof key, &len) || jp_colon(&p)) break;
            int k = 0;
            while (k < nf && !(len < sizeof key && name_is(key, len, names[k]))) k++;
            if (jp_value(&p, k < nf ? &fields[k] : NULL)) break;
            if (k == nf && n_unknown && (*n_unknown)++ == 0)
                snprintf(unknown, cap, "%.*s", (int)(len < sizeof key ? len : sizeof key), key);
        }
        r = r < 0 || p.msg[0] || jp_end(&p);
    }
    if (r || p.msg[0]) {
        snprintf(msg, msgcap, "%s", p.msg[0] ? p.msg : "invalid JSON");
        return -1;
    }
    return 0;
}

// Python's repr of a captured scalar, for messages
static void py_repr(const JVal *v, char *buf, size_t cap) {
    switch (v->type) {
    case J_NULL: snprintf(buf, cap, "None"); break;
    case J_TRUE: snprintf(buf, cap, "True"); break;
    case J_FALSE: snprintf(buf, cap, "False"); break;
    case J_NUM: snprintf(buf, cap, "%s", v->num.text); break;
    case J_STR:
        snprintf(buf, cap, "'%.*s%s'", (int)(v->str_len < sizeof v->str ? v->str_len : sizeof v->str), v->str,
                 v->str_len > sizeof v->str ? "..." : "");
        break;
    case J_ARRAY: snprintf(buf, cap, "[...]"); break;
    default: snprintf(buf, cap, "{...}"); break;
    }
}

// Python's == between a JSON scalar and a number (True == 1, 1.0 == 1, NaN equals nothing)
static int py_eq_num(const JVal *v, double x) {
    if (v->type == J_TRUE) return x == 1.0;
    if (v->type == J_FALSE) return x == 0.0;
    if (v->type != J_NUM) return 0;
    if (v->num.is_int) return !v->num.big && (double)v->num.mag == (v->num.neg ? -x : x) && v->num.mag < (1ull << 53);
    return v->num.d == x;
}

// ---- config (shared/config.py GPTConfig.from_dict) ----

// the five sizes, n_positions, then the three ablations (ABLATIONS' order)
enum { N_CONFIG_KEYS = 9 };
static const char *const CONFIG_KEYS[N_CONFIG_KEYS] = {
    "n_layer", "n_head", "n_embd", "block_size", "vocab_size", "n_positions",
    "scale_attn_weights", "residual", "position_embedding",
};

// the upper limits of the five sizes, in CONFIG_KEYS' order, as gpt_config_check states them
static const char *const MAX_TEXT[5] = {"65536", "n_embd", "1048576", "1048576", "1073741824"};
_Static_assert(GPT_MAX_N_LAYER == 65536 && GPT_MAX_N_EMBD == 1048576 && GPT_MAX_BLOCK_SIZE == 1048576 &&
                   GPT_MAX_VOCAB_SIZE == 1073741824,
               "MAX_TEXT states gpt.h's limits");

// fields: the values of CONFIG_KEYS; n_positions stands in for a missing block_size, an ablation
// missing is true. The checks in GPTConfig's order: missing sizes, then the ablations' types, then the sizes.
static int config_from_fields(const JVal *f, GPTConfig *c, const char *name, char *err, size_t errlen) {
    int values[5], on[3];
    char missing[80] = "";
    for (int k = 0; k < 5; k++) {
        const JVal *v = k == 3 && f[3].type < 0 ? &f[5] : &f[k];
        if (v->type < 0) snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s", missing[0] ? ", " : "", CONFIG_KEYS[k]);
    }
    if (missing[0]) return fail(err, errlen, GPT_ERR_CONFIG, "%s: config is missing %s", name, missing);
    for (int k = 0; k < 3; k++) {  // JSON true or false, nothing else (1 is an int, not a bool, in Python too)
        const JVal *v = &f[6 + k];
        on[k] = v->type != J_FALSE;
        if (v->type < 0 || v->type == J_TRUE || v->type == J_FALSE) continue;
        char repr[64];
        py_repr(v, repr, sizeof repr);
        return fail(err, errlen, GPT_ERR_CONFIG, "%s: config.%s must be true or false, got %s %s", name, ABLATIONS[k],
                    v->type == J_NUM ? (v->num.is_int ? "int" : "float") : PY_TYPE[v->type], repr);
    }
    for (int k = 0; k < 5; k++) {
        const JVal *v = k == 3 && f[3].type < 0 ? &f[5] : &f[k];
        char repr[64];
        py_repr(v, repr, sizeof repr);
        if (v->type != J_NUM || !v->num.is_int)
            return fail(err, errlen, GPT_ERR_CONFIG, "%s: config.%s must be an int, got %s %s", name, CONFIG_KEYS[k],
                        v->type == J_NUM ? "float" : PY_TYPE[v->type], repr);
        // beyond an int: out of range whatever the field; within, gpt_config_check says what is allowed
        if (v->num.big || v->num.mag > INT_MAX)
            return fail(err, errlen, GPT_ERR_CONFIG, "%s: config.%s must be in 1 .. %s, got %s", name, CONFIG_KEYS[k],
                        MAX_TEXT[k], repr);
        values[k] = v->num.neg ? -(int)v->num.mag : (int)v->num.mag;
    }
    *c = (GPTConfig){values[0], values[1], values[2], values[3], values[4], on[0], on[1], on[2]};
    return config_check(*c, name, err, errlen);
}

// the "config" metadata string of our single file
static int config_from_json(const char *text, size_t n, GPTConfig *c, const char *name, char *err, size_t errlen) {
    JVal f[N_CONFIG_KEYS];
    int top;
    char msg[160];
    if (parse_fields(text, n, CONFIG_KEYS, f, N_CONFIG_KEYS, &top, NULL, NULL, 0, msg, sizeof msg))
        return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: the config in __metadata__ is not valid JSON (%s)", name, msg);
    if (top != J_OBJECT)
        return fail(err, errlen, GPT_ERR_CONFIG, "%s: config must be a JSON object, got %s", name,
                    top == J_NUM ? "number" : PY_TYPE[top]);
    return config_from_fields(f, c, name, err, errlen);
}

// config.json of a Hugging Face directory: the config (Hugging Face's scale_attn_weights is ours, and
// GPTConfig.from_dict reads residual and position_embedding there too), then shared/checkpoint.py
// HF_REQUIRED
static int config_from_hf_json(const char *text, size_t n, GPTConfig *c, const char *name, char *err, size_t errlen) {
    enum { N_KEYS = N_CONFIG_KEYS + 5 };
    static const char *const keys[N_KEYS] = {
        "n_layer", "n_head", "n_embd", "block_size", "vocab_size", "n_positions",  // CONFIG_KEYS, in its order
        "scale_attn_weights", "residual", "position_embedding",
        "activation_function", "layer_norm_epsilon", "scale_attn_by_inverse_layer_idx", "tie_word_embeddings",
        "n_inner",
    };
    JVal f[N_KEYS];
    int top;
    char msg[160];
    if (parse_fields(text, n, keys, f, N_KEYS, &top, NULL, NULL, 0, msg, sizeof msg))
        return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: not valid JSON (%s)", name, msg);
    if (top != J_OBJECT)
        return fail(err, errlen, GPT_ERR_CONFIG, "%s: config must be a JSON object, got %s", name,
                    top == J_NUM ? "number" : PY_TYPE[top]);
    int rc = config_from_fields(f, c, name, err, errlen);
    if (rc) return rc;
    const char *need = NULL;
    const JVal *v = NULL, *h = f + N_CONFIG_KEYS;  // HF_REQUIRED, in keys' order
    if (h[0].type >= 0 && !(h[0].type == J_STR && name_is(h[0].str, h[0].str_len, "gelu_new")))
        need = "'gelu_new'", v = &h[0];
    else if (h[1].type >= 0 && !py_eq_num(&h[1], 1e-5)) need = "1e-05", v = &h[1];
    else if (h[2].type >= 0 && !py_eq_num(&h[2], 0.0)) need = "False", v = &h[2];
    else if (h[3].type >= 0 && !py_eq_num(&h[3], 1.0)) need = "True", v = &h[3];
    else if (h[4].type >= 0 && h[4].type != J_NULL && !py_eq_num(&h[4], 4.0 * c->n_embd))
        need = "None (or 4 * n_embd)", v = &h[4];
    if (need) {
        char repr[64];
        py_repr(v, repr, sizeof repr);
        return fail(err, errlen, GPT_ERR_CONFIG, "%s: %s is %s; the spec's GPT-2 needs %s", name, keys[v - f], repr, need);
    }
    return GPT_OK;
}

// ---- AdamW settings (shared/schedule.py AdamWConfig) ----

static int adamw_parse(const char *text, size_t n, double out[5], char *msg, size_t msgcap) {
    static const char *const keys[5] = {"beta1", "beta2", "eps", "weight_decay", "grad_clip"};
    static const double defaults[5] = {0.9, 0.95, 1e-8, 0.1, 1.0};
    JVal f[5];
    int top, n_unknown;
    char unknown[48], jmsg[160];
    if (parse_fields(text, n, keys, f, 5, &top, &n_unknown, unknown, sizeof unknown, jmsg, sizeof jmsg)) {
        snprintf(msg, msgcap, "not valid JSON: %s", jmsg);
        return -1;
    }
    if (top != J_OBJECT) {
        snprintf(msg, msgcap, "not a JSON object");
        return -1;
    }
    if (n_unknown) {
        snprintf(msg, msgcap, "unexpected key '%s'", unknown);
        return -1;
    }
    for (int k = 0; k < 5; k++) {
        out[k] = defaults[k];
        if (f[k].type < 0) continue;
        if (k == 4 && f[k].type == J_NULL) {
            out[k] = -1.0;
        } else if (f[k].type != J_NUM || !isfinite(f[k].num.d)) {
            char repr[64];
            py_repr(&f[k], repr, sizeof repr);
            snprintf(msg, msgcap, "%s is %s, not a finite number%s", keys[k], repr, k == 4 ? " or null" : "");
            return -1;
        } else {
            out[k] = f[k].num.d;
        }
    }
    // AdamWConfig's ranges (SPEC.md "Limits"): the first one broken, in keys' order
    const char *const range[5] = {"in [0, 1)", "in [0, 1)", "> 0", ">= 0", "null or > 0"};
    const int ok[5] = {out[0] >= 0 && out[0] < 1, out[1] >= 0 && out[1] < 1, out[2] > 0, out[3] >= 0,
                       f[4].type == J_NULL || out[4] > 0};
    for (int k = 0; k < 5; k++)
        if (!ok[k]) {
            char repr[64];
            py_repr(&f[k], repr, sizeof repr);
            snprintf(msg, msgcap, "%s is %s; it must be %s", keys[k], repr, range[k]);
            return -1;
        }
    return 0;
}

int st_parse_adamw(const char *json, double *beta1, double *beta2, double *eps, double *weight_decay,
                   double *grad_clip, char *err, size_t errlen) {
    clear(err, errlen);
    double v[5];
    char msg[200];
    if (!json) return fail(err, errlen, GPT_ERR_INPUT, "st_parse_adamw: json is NULL");
    if (adamw_parse(json, strlen(json), v, msg, sizeof msg))
        return fail(err, errlen, ST_ERR_CHECKPOINT, "unreadable AdamW settings (%s)", msg);
    if (beta1) *beta1 = v[0];
    if (beta2) *beta2 = v[1];
    if (eps) *eps = v[2];
    if (weight_decay) *weight_decay = v[3];
    if (grad_clip) *grad_clip = v[4];
    return GPT_OK;
}

// ---- the safetensors header ----

static const struct {
    const char *name;
    int size;
} DTYPES[] = {
    {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1}, {"F8_E4M3FNUZ", 1},
    {"F8_E5M2FNUZ", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2}, {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},
    {"C64", 8}, {"F64", 8}, {"I64", 8}, {"U64", 8},
};
enum { N_DTYPES = sizeof DTYPES / sizeof DTYPES[0] };

static int is_float_dtype(int d) {
    return !strcmp(DTYPES[d].name, "F32") || !strcmp(DTYPES[d].name, "F16") || !strcmp(DTYPES[d].name, "F64");
}

enum { R_UNEXPECTED, R_PARAM, R_M, R_V, R_IGNORED, R_LM_HEAD };

typedef struct {
    const char *name;  // decoded, in the arena (not NUL-terminated)
    size_t name_len;
    int dtype;
    int rank;
    uint64_t dims[4];  // the first four
    uint64_t numel;
    int overflow;  // numel or its bytes do not fit in 64 bits
    uint64_t begin, end;
    int role;
    int64_t index;  // canonical index for R_PARAM, R_M, R_V
    const char *key;  // the name the checks report: without "transformer." or "optim.m."
    size_t key_len;
} TensorRec;

typedef struct {
    const char *key, *val;
    size_t key_len, val_len;
} MetaRec;

typedef struct {
    char *text;   // the header JSON
    char *arena;  // decoded strings
    size_t used;
    TensorRec *t;
    size_t nt, cap_t;
    MetaRec *meta;
    size_t nmeta, cap_meta;
    size_t *order;  // tensors sorted by offset
    uint64_t data_start, data_len;
} Header;

static void header_free(Header *h) {
    free(h->text);
    free(h->arena);
    free(h->t);
    free(h->meta);
    free(h->order);
    memset(h, 0, sizeof *h);
}

static int grow(void **p, size_t *cap, size_t n, size_t size) {  // room for n + 1 elements
    if (n < *cap) return 0;
    size_t c = *cap ? *cap * 2 : 64;
    if (c > SIZE_MAX / size) return -1;
    void *q = realloc(*p, c * size);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int jp_string_arena(JP *p, Header *h, const char **s, size_t *len) {
    char *dst = h->arena + h->used;
    if (jp_string(p, dst, p->n - h->used, len)) return -1;
    *s = dst;
    h->used += *len;
    return 0;
}

static int parse_usize(JP *p, uint64_t *out) {
    JNum num;
    jp_ws(p);
    int c = jp_peek(p);
    if (c != '-' && (c < '0' || c > '9')) return jp_err(p, "expected a non-negative integer");
    if (jp_number(p, &num)) return -1;
    if (!num.is_int || (num.neg && num.mag) || num.big) return jp_err(p, "expected a non-negative integer");
    *out = num.mag;
    return 0;
}

static int parse_tensor_info(JP *p, TensorRec *t) {
    int r, count = 0, have_dtype = 0, have_shape = 0, have_offsets = 0;
    if (jp_begin(p, '{')) return -1;
    while ((r = jp_next(p, '}', &count)) == 1) {
        char key[16];
        size_t len;
        if (jp_string(p, key, sizeof key, &len) || jp_colon(p)) return -1;
        if (name_is(key, len, "dtype")) {
            char d[16];
            size_t dl;
            if (have_dtype++) return jp_err(p, "duplicate field dtype");
            if (jp_string(p, d, sizeof d, &dl)) return -1;
            t->dtype = -1;
            for (int k = 0; k < N_DTYPES; k++)
                if (dl < sizeof d && name_is(d, dl, DTYPES[k].name)) t->dtype = k;
            if (t->dtype < 0) return jp_err(p, "unknown or unsupported dtype");
        } else if (name_is(key, len, "shape")) {
            int n = 0;
            if (have_shape++) return jp_err(p, "duplicate field shape");
            if (jp_begin(p, '[')) return -1;
            t->numel = 1;
            while ((r = jp_next(p, ']', &n)) == 1) {
                uint64_t dim;
                if (parse_usize(p, &dim)) return -1;
                if (t->rank < 4) t->dims[t->rank] = dim;
                if (t->rank == INT_MAX) return jp_err(p, "too many dimensions");
                t->rank++;
                // like the reference: an overflow is an error even if a later dimension is 0
                if (!t->overflow && !mul_ok(t->numel, dim, &t->numel)) t->overflow = 1;
            }
            if (r < 0) return -1;
        } else if (name_is(key, len, "data_offsets")) {
            int n = 0;
            if (have_offsets++) return jp_err(p, "duplicate field data_offsets");
            if (jp_begin(p, '[')) return -1;
            uint64_t off[2];
            while ((r = jp_next(p, ']', &n)) == 1) {
                if (n > 2) return jp_err(p, "data_offsets must have 2 elements");
                if (parse_usize(p, &off[n - 1])) return -1;
            }
            if (r < 0) return -1;
            if (n != 2) return jp_err(p, "data_offsets must have 2 elements");
            t->begin = off[0], t->end = off[1];
        } else if (jp_value(p, NULL)) {  // another field: ignored, as the reference does
            return -1;
        }
    }
    if (r < 0) return -1;
    if (!have_dtype) return jp_err(p, "missing field dtype");
    if (!have_shape) return jp_err(p, "missing field shape");
    if (!have_offsets) return jp_err(p, "missing field data_offsets");
    return 0;
}

static int parse_metadata(JP *p, Header *h) {
    int r, count = 0;
    if (jp_lit(p, "null")) return 0;  // Python: `header.get("__metadata__") or {}`
    if (jp_begin(p, '{')) return -1;
    while ((r = jp_next(p, '}', &count)) == 1) {
        MetaRec m;
        if (jp_string_arena(p, h, &m.key, &m.key_len) || jp_colon(p)) return -1;
        if (jp_peek(p) != '"') return jp_err(p, "__metadata__ values must be strings");
        if (jp_string_arena(p, h, &m.val, &m.val_len)) return -1;
        if (grow((void **)&h->meta, &h->cap_meta, h->nmeta, sizeof *h->meta)) return jp_err(p, "out of memory");
        h->meta[h->nmeta++] = m;
    }
    return r < 0 ? -1 : 0;
}

static int cmp_bytes(const char *a, size_t na, const char *b, size_t nb) {
    int c = memcmp(a, b, na < nb ? na : nb);
    return c ? c : (na > nb) - (na < nb);
}

// qsort has no context argument, so the sorts below sort copies of what they compare
typedef struct {
    const char *s;
    size_t n;
    uint64_t a, b;
    size_t idx;
} SortKey;

static int cmp_by_name(const void *x, const void *y) {
    const SortKey *a = x, *b = y;
    int c = cmp_bytes(a->s, a->n, b->s, b->n);
    return c ? c : (a->idx > b->idx) - (a->idx < b->idx);
}

static int cmp_by_offset(const void *x, const void *y) {
    const SortKey *a = x, *b = y;
    if (a->a != b->a) return a->a < b->a ? -1 : 1;
    if (a->b != b->b) return a->b < b->b ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

static void fmt_name(char *buf, size_t cap, const char *s, size_t n) {  // a name for a message
    snprintf(buf, cap, "%.*s%s", (int)(n < 200 ? n : 200), s, n > 200 ? "..." : "");
}

// the JSON object of the header: __metadata__ into h->meta, every other key a tensor into h->t
static int header_parse_json(Header *h, const unsigned char *head, uint64_t n, const char *name, char *err,
                             size_t errlen) {
    JP p = {head + 8, (size_t)n, 0, 0, 0, {0}};
    int r, count = 0, have_meta = 0;
    h->arena = malloc(n ? n : 1);
    if (!h->arena) return fail(err, errlen, GPT_ERR_MEMORY, "%s: out of memory for the header", name);
    jp_ws(&p);
    if (jp_peek(&p) != '{') {
        if (p.i == p.n) return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: corrupt safetensors header (empty)", name);
        JVal v;  // valid JSON of another type, or not JSON at all
        if (jp_value(&p, &v) || jp_end(&p))
            return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: corrupt safetensors header (%s)", name, p.msg);
        return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: corrupt safetensors header (not a JSON object)", name);
    }
    jp_begin(&p, '{');
    while ((r = jp_next(&p, '}', &count)) == 1) {
        const char *key;
        size_t key_len;
        if (jp_string_arena(&p, h, &key, &key_len) || jp_colon(&p)) break;
        if (name_is(key, key_len, "__metadata__")) {
            if (have_meta++) {
                jp_err(&p, "duplicate __metadata__");
                break;
            }
            if (parse_metadata(&p, h)) break;
            continue;
        }
        if (grow((void **)&h->t, &h->cap_t, h->nt, sizeof *h->t)) return fail(err, errlen, GPT_ERR_MEMORY, "%s: out of memory", name);
        TensorRec *t = &h->t[h->nt];
        memset(t, 0, sizeof *t);
        t->name = key, t->name_len = key_len;
        if (parse_tensor_info(&p, t)) break;
        h->nt++;
    }
    if (!p.msg[0]) jp_end(&p);
    if (p.msg[0]) {
        if (strstr(p.msg, "out of memory")) return fail(err, errlen, GPT_ERR_MEMORY, "%s: %s", name, p.msg);
        return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: corrupt safetensors header (%s)", name, p.msg);
    }
    return GPT_OK;
}

// names and metadata keys appear once each; keys has room for max(nt, nmeta) entries
static int header_check_unique(const Header *h, SortKey *keys, const char *name, char *err, size_t errlen) {
    for (int pass = 0; pass < 2; pass++) {
        size_t m = pass ? h->nmeta : h->nt;
        for (size_t i = 0; i < m; i++)
            keys[i] = pass ? (SortKey){h->meta[i].key, h->meta[i].key_len, 0, 0, i}
                           : (SortKey){h->t[i].name, h->t[i].name_len, 0, 0, i};
        if (m) qsort(keys, m, sizeof *keys, cmp_by_name);
        for (size_t i = 1; i < m; i++)
            if (!cmp_bytes(keys[i].s, keys[i].n, keys[i - 1].s, keys[i - 1].n)) {
                char shown[256];
                fmt_name(shown, sizeof shown, keys[i].s, keys[i].n);
                return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: %s %s appears twice in the header", name,
                            pass ? "metadata key" : "tensor", shown);
            }
    }
    return GPT_OK;
}

// each tensor's bytes match its dtype and shape; sorted by offset (into h->order), the tensors tile the data
static int header_check_layout(Header *h, SortKey *keys, const char *name, char *err, size_t errlen) {
    char shown[256];
    for (size_t i = 0; i < h->nt; i++) {
        TensorRec *t = &h->t[i];
        uint64_t nbytes;
        fmt_name(shown, sizeof shown, t->name, t->name_len);
        if (t->overflow || !mul_ok(t->numel, (uint64_t)DTYPES[t->dtype].size, &nbytes))
            return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: tensor %s: its shape's size overflows", name, shown);
        if (t->end < t->begin || t->end - t->begin != nbytes)
            return fail(err, errlen, ST_ERR_CHECKPOINT,
                        "%s: tensor %s: data_offsets [%llu, %llu] do not hold %llu bytes (%s, %llu elements)", name,
                        shown, (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)nbytes,
                        DTYPES[t->dtype].name, (unsigned long long)t->numel);
        keys[i] = (SortKey){t->name, t->name_len, t->begin, t->end, i};
    }
    if (h->nt) qsort(keys, h->nt, sizeof *keys, cmp_by_offset);
    uint64_t at = 0;
    for (size_t i = 0; i < h->nt; i++) {
        const TensorRec *t = &h->t[keys[i].idx];
        h->order[i] = keys[i].idx;
        if (t->begin != at) {
            fmt_name(shown, sizeof shown, t->name, t->name_len);
            return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: tensor %s starts at byte %llu of the data, expected %llu (%s)", name,
                        shown, (unsigned long long)t->begin, (unsigned long long)at,
                        t->begin > at ? "a gap" : "overlapping another tensor");
        }
        at = t->end;
    }
    if (at != h->data_len)
        return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: the tensors cover %llu bytes of data but the file holds %llu%s", name,
                    (unsigned long long)at, (unsigned long long)h->data_len,
                    at > h->data_len ? " (truncated)" : " (trailing bytes)");
    return GPT_OK;
}

// the header of a file of `size` bytes whose first 8 + n bytes are in `head`: the reference rules
static int header_parse(Header *h, const unsigned char *head, uint64_t n, uint64_t size, const char *name,
                        char *err, size_t errlen) {
    h->data_start = 8 + n;
    h->data_len = size - 8 - n;
    int rc = header_parse_json(h, head, n, name, err, errlen);
    if (rc) return rc;
    size_t nk = h->nt > h->nmeta ? h->nt : h->nmeta;
    SortKey *keys = malloc((nk ? nk : 1) * sizeof *keys);
    h->order = malloc((h->nt ? h->nt : 1) * sizeof *h->order);
    if (!keys || !h->order) rc = fail(err, errlen, GPT_ERR_MEMORY, "%s: out of memory", name);
    if (!rc) rc = header_check_unique(h, keys, name, err, errlen);
    if (!rc) rc = header_check_layout(h, keys, name, err, errlen);
    free(keys);
    return rc;
}

// ---- sources: a file or a buffer ----

typedef struct {
    int fd;  // -1: mem
    const unsigned char *mem;
    uint64_t size;
    const char *name;
} Source;

static int src_read(const Source *s, uint64_t off, void *buf, size_t n, char *err, size_t errlen) {
    if (off > s->size || n > s->size - off)
        return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: truncated (read past the end)", s->name);
    if (s->fd < 0) {
        if (n) memcpy(buf, s->mem + off, n);
        return GPT_OK;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(s->fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return fail(err, errlen, ST_ERR_IO, "%s: read failed: %s", s->name, strerror(errno));
        if (r == 0) return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: truncated (the file shrank while being read)", s->name);
        done += (size_t)r;
    }
    return GPT_OK;
}

static int header_read(Header *h, const Source *src, char *err, size_t errlen) {
    unsigned char len8[8];
    if (src->size < 8)
        return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: truncated (%llu bytes), not a safetensors file", src->name,
                    (unsigned long long)src->size);
    int rc = src_read(src, 0, len8, 8, err, errlen);
    if (rc) return rc;
    uint64_t n = 0;
    for (int k = 7; k >= 0; k--) n = n << 8 | len8[k];
    if (n > src->size - 8)
        return fail(err, errlen, ST_ERR_CHECKPOINT,
                    "%s: header claims %llu bytes but the file has %llu after the length; truncated or not safetensors",
                    src->name, (unsigned long long)n, (unsigned long long)(src->size - 8));
    if (n > ST_MAX_HEADER)
        return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: header of %llu bytes is over the %llu-byte limit", src->name,
                    (unsigned long long)n, ST_MAX_HEADER);
    h->text = malloc((size_t)n + 8);
    if (!h->text) return fail(err, errlen, GPT_ERR_MEMORY, "%s: out of memory for the header", src->name);
    memcpy(h->text, len8, 8);
    if ((rc = src_read(src, 8, h->text + 8, (size_t)n, err, errlen))) return rc;
    return header_parse(h, (const unsigned char *)h->text, n, src->size, src->name, err, errlen);
}

// ---- the checks of shared/checkpoint.py ----

typedef struct {
    Source src;
    Header h;
    GPTConfig cfg;
    int hf, training;
    int64_t step;
    int64_t wte, lm_head;  // record indices, -1 if absent
} Ckpt;

static void ckpt_free(Ckpt *c) {
    header_free(&c->h);
    if (c->src.fd >= 0) close(c->src.fd);
    c->src.fd = -1;
}

static const MetaRec *meta_find(const Header *h, const char *key) {
    for (size_t i = 0; i < h->nmeta; i++)
        if (name_is(h->meta[i].key, h->meta[i].key_len, key)) return &h->meta[i];
    return NULL;
}

static int has_prefix(const char *s, size_t n, const char *prefix) {
    size_t k = strlen(prefix);
    return n >= k && !memcmp(s, prefix, k);
}

static int has_suffix(const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

static void fmt_shape(char *buf, size_t cap, int rank, const uint64_t *dims) {  // Python's tuple repr
    size_t k = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < rank && i < 4 && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
    if (k < cap) snprintf(buf + k, cap - k, "%s)", rank > 4 ? ", ..." : rank == 1 ? "," : "");
}

// Python's int(s) for the step: surrounding whitespace, a sign, digits with single underscores
static int parse_step(const char *s, size_t n, int64_t *out) {
    size_t i = 0;
    int neg = 0;
    int64_t v = 0;
    while (n && strchr(" \t\n\r\f\v", s[n - 1]) && s[n - 1]) n--;
    while (i < n && strchr(" \t\n\r\f\v", s[i]) && s[i]) i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    if (i >= n || s[i] < '0' || s[i] > '9') return -1;
    for (; i < n; i++) {
        if (s[i] == '_' && i + 1 < n && s[i - 1] != '_' && s[i + 1] >= '0' && s[i + 1] <= '9') continue;
        if (s[i] < '0' || s[i] > '9') return -1;
        if (v <= GPT_MAX_STEP) v = v * 10 + (s[i] - '0');  // past 2^53 it only needs to stay there
    }
    *out = neg ? -v : v;
    return 0;
}

// missing, unexpected and duplicate tensors of one role, as check_state_dict reports them
static int check_role(Ckpt *c, int role, const char *label, char *err, size_t errlen) {
    const Header *h = &c->h;
    const char *name = c->src.name;
    uint64_t ntens = num_tensors(c->cfg);
    SortKey *seen = malloc((h->nt ? h->nt : 1) * sizeof *seen);
    if (!seen) return fail(err, errlen, GPT_ERR_MEMORY, "%s: out of memory", name);
    size_t ns = 0;
    for (size_t i = 0; i < h->nt; i++)
        if (h->t[i].role == role && h->t[i].index >= 0)
            seen[ns++] = (SortKey){h->t[i].key, h->t[i].key_len, (uint64_t)h->t[i].index, 0, i};
    if (ns) qsort(seen, ns, sizeof *seen, cmp_by_offset);  // by canonical index
    for (size_t i = 1; i < ns; i++)
        if (seen[i].a == seen[i - 1].a) {
            char shown[256];
            fmt_name(shown, sizeof shown, seen[i].s, seen[i].n);
            free(seen);
            return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: tensor %s appears twice (with and without 'transformer.')",
                        name, shown);
        }
    // the first five missing names: a walk of at most ns + 5 canonical indices
    char missing[512] = "", unexpected[512] = "";
    uint64_t n_missing = ntens - ns, shown_missing = 0, n_unexpected = 0;
    for (uint64_t i = 0, j = 0; i < ntens && shown_missing < 5 && shown_missing < n_missing; i++) {
        if (j < ns && seen[j].a == i) {
            j++;
            continue;
        }
        char buf[64];
        tensor_name(c->cfg, i, buf, sizeof buf);
        snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s", shown_missing ? ", " : "", buf);
        shown_missing++;
    }
    if (n_missing > 5)
        snprintf(missing + strlen(missing), sizeof missing - strlen(missing), " and %llu more", (unsigned long long)(n_missing - 5));
    int unexpected_role = role == R_PARAM ? R_UNEXPECTED : role;
    for (size_t i = 0; i < h->nt; i++) {
        const TensorRec *t = &h->t[i];
        if (t->role != unexpected_role || (role != R_PARAM && t->index >= 0)) continue;
        if (n_unexpected < 5) {
            char shown[256];
            fmt_name(shown, sizeof shown, t->key, t->key_len);
            snprintf(unexpected + strlen(unexpected), sizeof unexpected - strlen(unexpected), "%s%s",
                     n_unexpected ? ", " : "", shown);
        }
        n_unexpected++;
    }
    if (n_unexpected > 5)
        snprintf(unexpected + strlen(unexpected), sizeof unexpected - strlen(unexpected), " and %llu more",
                 (unsigned long long)(n_unexpected - 5));
    int rc = GPT_OK;
    if (n_missing || n_unexpected)
        rc = fail(err, errlen, ST_ERR_CHECKPOINT, "%s: %sstate dict does not match the config: %s%s%s%s%s", name, label,
                  n_missing ? "missing " : "", missing, n_missing && n_unexpected ? "; " : "",
                  n_unexpected ? "unexpected " : "", unexpected);
    // then, in canonical order, each tensor's shape and dtype
    for (size_t k = 0; k < ns && rc == GPT_OK; k++) {
        const TensorRec *t = &h->t[seen[k].idx];
        Spec s;
        tensor_spec(c->cfg, (uint64_t)t->index, &s);
        char shown[256], got[128], want[128];
        fmt_name(shown, sizeof shown, t->key, t->key_len);
        int same = t->rank == s.rank && t->dims[0] == s.dims[0] && (s.rank == 1 || t->dims[1] == s.dims[1]);
        if (!same) {
            fmt_shape(got, sizeof got, t->rank, t->dims);
            fmt_shape(want, sizeof want, s.rank, s.dims);
            // a parameter of the wrong shape: the config does not match (ConfigError); a moment: CheckpointError
            rc = fail(err, errlen, role == R_PARAM ? GPT_ERR_CONFIG : ST_ERR_CHECKPOINT,
                      "%s: %s%s has shape %s but the config needs %s (does the config match the weights?)", name, label,
                      shown, got, want);
        } else if (!is_float_dtype(t->dtype)) {
            rc = fail(err, errlen, ST_ERR_CHECKPOINT, "%s: %s%s has dtype %s, expected a float type (F32; F16 and F64 are converted)",
                      name, label, shown, DTYPES[t->dtype].name);
        }
    }
    free(seen);
    return rc;
}

// names -> roles (shared/checkpoint.py _canonical, _optimizer_state), then every check on the header
static int ckpt_classify(Ckpt *c, char *err, size_t errlen) {
    Header *h = &c->h;
    const char *name = c->src.name;
    int rc;
    c->wte = c->lm_head = -1;
    c->training = 0;
    c->step = 0;
    for (size_t i = 0; i < h->nt; i++) {
        TensorRec *t = &h->t[i];
        t->key = t->name, t->key_len = t->name_len, t->index = -1;
        if (!c->hf && (has_prefix(t->name, t->name_len, "optim.m.") || has_prefix(t->name, t->name_len, "optim.v."))) {
            t->role = t->name[6] == 'm' ? R_M : R_V;
            t->key += 8, t->key_len -= 8;
            t->index = canonical_index(c->cfg, t->key, t->key_len);
            c->training = 1;
            continue;
        }
        if (has_prefix(t->key, t->key_len, "transformer.")) t->key += 12, t->key_len -= 12;
        if (has_suffix(t->key, t->key_len, ".attn.bias") || has_suffix(t->key, t->key_len, ".attn.masked_bias")) {
            t->role = R_IGNORED;
        } else if (name_is(t->key, t->key_len, "lm_head.weight")) {
            if (c->lm_head >= 0)
                return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: tensor lm_head.weight appears twice (with and without 'transformer.')", name);
            t->role = R_LM_HEAD;
            c->lm_head = (int64_t)i;
        } else {
            t->index = canonical_index(c->cfg, t->key, t->key_len);
            t->role = t->index >= 0 ? R_PARAM : R_UNEXPECTED;
            if (t->index == 0) c->wte = (int64_t)i;
        }
    }
    if (!c->hf && meta_find(h, "step")) c->training = 1;
    if (c->training) {
        const MetaRec *m = meta_find(h, "step");
        int64_t step;
        if (!m || parse_step(m->val, m->val_len, &step))
            return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: a training checkpoint needs an integer 'step' in __metadata__", name);
        if (step < 0) return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: step %lld is negative", name, (long long)step);
        if (step > GPT_MAX_STEP)
            return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: step %.*s is outside 0 .. 2^53 (SPEC.md \"Limits\")", name,
                        (int)(m->val_len < 40 ? m->val_len : 40), m->val);
        c->step = step;
        if ((rc = check_role(c, R_M, "optimizer first moments: ", err, errlen))) return rc;
        if ((rc = check_role(c, R_V, "optimizer second moments: ", err, errlen))) return rc;
        if ((m = meta_find(h, "adamw"))) {
            double v[5];
            char msg[200];
            if (adamw_parse(m->val, m->val_len, v, msg, sizeof msg))
                return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: unreadable AdamW settings in __metadata__ (%s)", name, msg);
        }
    }
    if (c->lm_head >= 0 && c->wte >= 0) {
        const TensorRec *a = &h->t[c->lm_head], *b = &h->t[c->wte];
        int same = a->rank == b->rank && a->numel == b->numel;
        for (int k = 0; k < a->rank && k < 4 && same; k++) same = a->dims[k] == b->dims[k];
        if (!same || !is_float_dtype(a->dtype))
            return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: lm_head.weight differs from wte.weight; the spec's GPT-2 ties them", name);
    }
    return check_role(c, R_PARAM, "", err, errlen);
}

// SPEC.md "Limits": before anything is built from the config, the file must be big enough for it: every
// tensor listed, and 2 bytes per parameter (F16, the smallest dtype read). A 20 KB file claiming a
// config of a trillion parameters stops here, in one line.
static int check_file_fits_config(const Ckpt *c, char *err, size_t errlen) {
    uint64_t tensors = num_tensors(c->cfg), bytes = 2 * num_params(c->cfg);
    char cfg[200];
    config_repr(c->cfg, cfg, sizeof cfg);
    if (c->h.nt < tensors)
        return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: the config (%s) needs %llu tensors; the file has %zu", c->src.name,
                    cfg, (unsigned long long)tensors, c->h.nt);
    if (c->h.data_len < bytes)
        return fail(err, errlen, ST_ERR_CHECKPOINT,
                    "%s: the config (%s) needs %llu bytes of tensor data (2 per parameter); the file has %llu",
                    c->src.name, cfg, (unsigned long long)bytes, (unsigned long long)c->h.data_len);
    return GPT_OK;
}

// a single file: the config comes from __metadata__
static int ckpt_parse_single(Ckpt *c, char *err, size_t errlen) {
    int rc = header_read(&c->h, &c->src, err, errlen);
    if (rc) return rc;
    const MetaRec *m = meta_find(&c->h, "config");
    if (!m)
        return fail(err, errlen, ST_ERR_CHECKPOINT,
                    "%s: no config in the safetensors __metadata__; pass a Hugging Face directory (config.json + "
                    "model.safetensors) or a file saved by this project", c->src.name);
    if ((rc = config_from_json(m->val, m->val_len, &c->cfg, c->src.name, err, errlen))) return rc;
    if ((rc = check_file_fits_config(c, err, errlen))) return rc;
    return ckpt_classify(c, err, errlen);
}

// a Hugging Face directory: config.json's text, then model.safetensors
static int ckpt_parse_hf(Ckpt *c, const char *config_json, size_t config_len, const char *config_name, char *err, size_t errlen) {
    int rc = config_from_hf_json(config_json, config_len, &c->cfg, config_name, err, errlen);
    if (rc) return rc;
    c->hf = 1;
    if ((rc = header_read(&c->h, &c->src, err, errlen))) return rc;
    c->h.nmeta = 0;  // a Hugging Face directory has no metadata of ours (shared/checkpoint.py ignores it)
    if ((rc = check_file_fits_config(c, err, errlen))) return rc;
    return ckpt_classify(c, err, errlen);
}

// ---- tensor data ----

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const unsigned char *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float f16_to_f32(uint16_t h) {  // exact: every half is a float
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = h >> 10 & 0x1F, man = h & 0x3FF;
    if (exp == 0x1F) return bits_f32(sign | 0x7F800000u | man << 13);  // inf, NaN
    if (exp) return bits_f32(sign | (exp + 112) << 23 | man << 13);
    if (!man) return bits_f32(sign);
    exp = 113;  // subnormal: man * 2^-24, normalized
    while (!(man & 0x400)) man <<= 1, exp--;
    return bits_f32(sign | exp << 23 | (man & 0x3FF) << 13);
}

static double elem_f64(int dtype, const unsigned char *p) {  // one float element, exactly, as a double
    const char *d = DTYPES[dtype].name;
    if (d[1] == '3') return bits_f32(le32(p));
    if (d[1] == '1') return f16_to_f32(le16(p));
    uint64_t u = le64(p);
    double x;
    memcpy(&x, &u, 8);
    return x;
}

// reads tensor t into dst (NULL: checks only), converting to float32; every value must be finite, and
// for a second moment (nonneg) >= 0: a negative v would make the next step's sqrt(v) NaN
static int read_tensor(const Ckpt *c, const TensorRec *t, float *dst, int nonneg, const char *label, char *err,
                       size_t errlen) {
    size_t size = (size_t)DTYPES[t->dtype].size, per = CHUNK / size;
    int f32 = size == 4, rc = GPT_OK;
    unsigned char *buf = malloc(CHUNK);
    if (!buf) return fail(err, errlen, GPT_ERR_MEMORY, "%s: out of memory", c->src.name);
    for (uint64_t done = 0; done < t->numel && rc == GPT_OK;) {
        size_t n = t->numel - done < per ? (size_t)(t->numel - done) : per;
        if ((rc = src_read(&c->src, c->h.data_start + t->begin + done * size, buf, n * size, err, errlen))) break;
        for (size_t i = 0; i < n; i++) {
            float f;
            int finite, in_range = 1;
            if (f32) {  // the common case, without a detour through double
                uint32_t u = le32(buf + 4 * i);
                finite = (u & 0x7F800000u) != 0x7F800000u;
                f = bits_f32(u);
            } else {
                double x = elem_f64(t->dtype, buf + i * size);
                finite = isfinite(x);
                // numpy's astype(float32) rounds to nearest: from FLT_MAX + half an ulp up, it is inf
                in_range = !finite || fabs(x) < 0x1.ffffffp+127;
                f = finite && in_range ? (float)x : 0.0f;
            }
            if (!finite || !in_range || (nonneg && f < 0.0f)) {
                char shown[256];
                fmt_name(shown, sizeof shown, t->key, t->key_len);
                rc = fail(err, errlen, ST_ERR_CHECKPOINT, "%s: %s%s holds %s", c->src.name, label, shown,
                          !finite ? "NaN or infinite values" : !in_range ? "a value outside float32's range"
                                                              : "a negative value (a second moment is >= 0)");
                break;
            }
            if (dst) dst[done + i] = f;
        }
        done += n;
    }
    free(buf);
    return rc;
}

static int compare_lm_head(const Ckpt *c, char *err, size_t errlen) {  // numpy's array_equal
    const TensorRec *a = &c->h.t[c->lm_head], *b = &c->h.t[c->wte];
    size_t sa = (size_t)DTYPES[a->dtype].size, sb = (size_t)DTYPES[b->dtype].size, per = CHUNK / 8;
    unsigned char *bufa = malloc(CHUNK), *bufb = malloc(CHUNK);
    int rc = bufa && bufb ? GPT_OK : fail(err, errlen, GPT_ERR_MEMORY, "%s: out of memory", c->src.name);
    for (uint64_t done = 0; done < a->numel && rc == GPT_OK;) {
        size_t n = a->numel - done < per ? (size_t)(a->numel - done) : per;
        rc = src_read(&c->src, c->h.data_start + a->begin + done * sa, bufa, n * sa, err, errlen);
        if (!rc) rc = src_read(&c->src, c->h.data_start + b->begin + done * sb, bufb, n * sb, err, errlen);
        for (size_t i = 0; i < n && rc == GPT_OK; i++)
            if (elem_f64(a->dtype, bufa + i * sa) != elem_f64(b->dtype, bufb + i * sb))
                rc = fail(err, errlen, ST_ERR_CHECKPOINT, "%s: lm_head.weight differs from wte.weight; the spec's GPT-2 ties them",
                          c->src.name);
        done += n;
    }
    free(bufa);
    free(bufb);
    return rc;
}

// the JSON object of __metadata__ into out (cap bytes, NULL to measure); returns its length
static size_t json_put_string(char *out, size_t cap, size_t k, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    put_byte(out, cap, &k, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = ch == '"' ? "\\\"" : ch == '\\' ? "\\\\" : ch == '\n' ? "\\n" : ch == '\r' ? "\\r"
                        : ch == '\t' ? "\\t" : ch == '\b' ? "\\b" : ch == '\f' ? "\\f" : NULL;
        if (esc) {
            put_byte(out, cap, &k, (unsigned char)esc[0]);
            put_byte(out, cap, &k, (unsigned char)esc[1]);
        } else if (ch < 0x20) {
            const char u[] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            for (int j = 0; j < 6; j++) put_byte(out, cap, &k, (unsigned char)u[j]);
        } else {
            put_byte(out, cap, &k, ch);
        }
    }
    put_byte(out, cap, &k, '"');
    return k;
}

static size_t metadata_json(const Header *h, char *out, size_t cap) {
    size_t k = 0;
    put_byte(out, cap, &k, '{');
    for (size_t i = 0; i < h->nmeta; i++) {
        if (i) put_byte(out, cap, &k, ',');
        k = json_put_string(out, cap, k, h->meta[i].key, h->meta[i].key_len);
        put_byte(out, cap, &k, ':');
        k = json_put_string(out, cap, k, h->meta[i].val, h->meta[i].val_len);
    }
    put_byte(out, cap, &k, '}');
    return k;
}

static int ckpt_read(const Ckpt *c, GPTConfig cfg, float *params, float *m, float *v, int64_t *step, char *meta_out,
                     size_t meta_cap, char *err, size_t errlen) {
    const char *name = c->src.name;
    if (!params) return fail(err, errlen, GPT_ERR_INPUT, "%s: params is NULL", name);
    if (memcmp(&cfg, &c->cfg, sizeof cfg) != 0) {  // every field, the ablations included
        char file_cfg[200], given_cfg[200];
        config_repr(c->cfg, file_cfg, sizeof file_cfg);
        config_repr(cfg, given_cfg, sizeof given_cfg);
        return fail(err, errlen, GPT_ERR_CONFIG, "%s: the file's config (%s) differs from the one given (%s)", name,
                    file_cfg, given_cfg);
    }
    if (meta_out) {
        size_t need = metadata_json(&c->h, NULL, 0) + 1;
        if (meta_cap < need)
            return fail(err, errlen, ST_ERR_BUFFER, "%s: the metadata needs a buffer of %zu bytes, got %zu", name, need, meta_cap);
    }
    for (size_t k = 0; k < c->h.nt; k++) {  // in file order: sequential reads
        const TensorRec *t = &c->h.t[c->h.order[k]];
        Spec s;
        int rc = GPT_OK;
        if (t->role != R_PARAM && t->role != R_M && t->role != R_V) continue;
        tensor_spec(c->cfg, (uint64_t)t->index, &s);
        if (t->role == R_PARAM) rc = read_tensor(c, t, params + s.offset, 0, "", err, errlen);
        else if (t->role == R_M) rc = read_tensor(c, t, m ? m + s.offset : NULL, 0, "optimizer first moments: ", err, errlen);
        else rc = read_tensor(c, t, v ? v + s.offset : NULL, 1, "optimizer second moments: ", err, errlen);
        if (rc) return rc;
    }
    if (c->lm_head >= 0 && c->wte >= 0) {
        int rc = compare_lm_head(c, err, errlen);
        if (rc) return rc;
    }
    size_t n = (size_t)num_params(c->cfg);
    if (!c->training) {  // no optimizer state: AdamW starts from zero
        if (m) memset(m, 0, n * sizeof *m);
        if (v) memset(v, 0, n * sizeof *v);
    }
    if (step) *step = c->step;
    if (meta_out) meta_out[metadata_json(&c->h, meta_out, meta_cap)] = 0;
    return GPT_OK;
}

// ---- the public readers ----

static int read_small_file(const char *path, char **text, size_t *len, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block us
    if (fd < 0) return fail(err, errlen, ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_CONFIG_JSON) {
        close(fd);
        return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: not a regular file of at most %u bytes", path, MAX_CONFIG_JSON);
    }
    Source s = {fd, NULL, (uint64_t)st.st_size, path};
    *len = (size_t)st.st_size;
    *text = malloc(*len + 1);
    int rc = *text ? src_read(&s, 0, *text, *len, err, errlen) : fail(err, errlen, GPT_ERR_MEMORY, "%s: out of memory", path);
    close(fd);
    if (rc) {
        free(*text);
        *text = NULL;
    }
    return rc;
}

static int open_source(Source *s, const char *path, char *err, size_t errlen) {
    s->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block us
    if (s->fd < 0) {
        if (errno == ENOENT) return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: no such checkpoint file", path);
        return fail(err, errlen, ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(s->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(s->fd);
        s->fd = -1;
        return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: not a regular file", path);
    }
    s->size = (uint64_t)st.st_size;
    s->name = path;
    return GPT_OK;
}

// a path: our single file, or a Hugging Face directory. *names holds the strings the messages use.
static int ckpt_open(Ckpt *c, const char *path, char **names, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->src.fd = -1;
    *names = NULL;
    if (!path) return fail(err, errlen, GPT_ERR_INPUT, "checkpoint path is NULL");
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: no such checkpoint file", path);
        return fail(err, errlen, ST_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) {
        int rc = open_source(&c->src, path, err, errlen);
        return rc ? rc : ckpt_parse_single(c, err, errlen);
    }
    size_t n = strlen(path);
    char *buf = malloc(2 * n + 64);
    if (!buf) return fail(err, errlen, GPT_ERR_MEMORY, "out of memory");
    char *cfg_path = buf, *weights_path = buf + n + 32;
    const char *sep = n && path[n - 1] == '/' ? "" : "/";
    snprintf(cfg_path, n + 32, "%s%sconfig.json", path, sep);
    snprintf(weights_path, n + 32, "%s%smodel.safetensors", path, sep);
    *names = buf;
    for (int k = 0; k < 2; k++) {
        const char *p = k ? weights_path : cfg_path;
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode))
            return fail(err, errlen, ST_ERR_CHECKPOINT,
                        "%s: a Hugging Face style directory needs config.json and model.safetensors; %s is missing", path,
                        k ? "model.safetensors" : "config.json");
    }
    char *text = NULL;
    size_t len = 0;
    int rc = read_small_file(cfg_path, &text, &len, err, errlen);
    if (rc) return rc;
    if (!(rc = open_source(&c->src, weights_path, err, errlen))) rc = ckpt_parse_hf(c, text, len, cfg_path, err, errlen);
    free(text);
    return rc;
}

int st_read_config(const char *path, GPTConfig *cfg, int *has_optimizer, char *err, size_t errlen) {
    clear(err, errlen);
    Ckpt c;
    char *names;
    if (!cfg) return fail(err, errlen, GPT_ERR_INPUT, "st_read_config: cfg is NULL");
    int rc = ckpt_open(&c, path, &names, err, errlen);
    if (!rc) {
        *cfg = c.cfg;
        if (has_optimizer) *has_optimizer = c.training;
    }
    ckpt_free(&c);
    free(names);
    return rc;
}

int st_read_checkpoint(const char *path, GPTConfig cfg, float *params, float *m, float *v, int64_t *step,
                       char *metadata_json_out, size_t metadata_cap, char *err, size_t errlen) {
    clear(err, errlen);
    Ckpt c;
    char *names;
    int rc = ckpt_open(&c, path, &names, err, errlen);
    if (!rc) rc = ckpt_read(&c, cfg, params, m, v, step, metadata_json_out, metadata_cap, err, errlen);
    ckpt_free(&c);
    free(names);
    return rc;
}

int st_get_metadata(const char *path, const char *key, char *out, size_t cap, char *err, size_t errlen) {
    clear(err, errlen);
    Ckpt c;
    char *names;
    int rc = ckpt_open(&c, path, &names, err, errlen);
    if (!rc) {
        const MetaRec *m = key ? meta_find(&c.h, key) : NULL;
        size_t need = key ? (m ? m->val_len + 1 : 0) : metadata_json(&c.h, NULL, 0) + 1;
        if (key && !m) rc = fail(err, errlen, ST_ERR_NOT_FOUND, "%s: no '%s' in the metadata", path, key);
        else if (!out || cap < need)
            rc = fail(err, errlen, ST_ERR_BUFFER, "%s: the metadata value needs a buffer of %zu bytes, got %zu", path, need, out ? cap : 0);
        else if (m) memcpy(out, m->val, m->val_len), out[m->val_len] = 0;
        else out[metadata_json(&c.h, out, cap)] = 0;
    }
    ckpt_free(&c);
    free(names);
    return rc;
}

static Source mem_source(const void *data, size_t len, const char *name) {
    Source s = {-1, data, data ? (uint64_t)len : 0, name ? name : "<buffer>"};
    return s;
}

int st_read_config_buffer(const void *data, size_t len, const char *name, GPTConfig *cfg, int *has_optimizer,
                          char *err, size_t errlen) {
    clear(err, errlen);
    Ckpt c;
    memset(&c, 0, sizeof c);
    c.src = mem_source(data, len, name);
    if (!cfg) return fail(err, errlen, GPT_ERR_INPUT, "st_read_config_buffer: cfg is NULL");
    int rc = ckpt_parse_single(&c, err, errlen);
    if (!rc) {
        *cfg = c.cfg;
        if (has_optimizer) *has_optimizer = c.training;
    }
    ckpt_free(&c);
    return rc;
}

int st_read_checkpoint_buffer(const void *data, size_t len, const char *name, GPTConfig cfg, float *params,
                              float *m, float *v, int64_t *step, char *metadata_json_out, size_t metadata_cap,
                              char *err, size_t errlen) {
    clear(err, errlen);
    Ckpt c;
    memset(&c, 0, sizeof c);
    c.src = mem_source(data, len, name);
    int rc = ckpt_parse_single(&c, err, errlen);
    if (!rc) rc = ckpt_read(&c, cfg, params, m, v, step, metadata_json_out, metadata_cap, err, errlen);
    ckpt_free(&c);
    return rc;
}

int st_read_hf_buffers(const char *config_json, size_t config_len, const void *weights, size_t weights_len,
                       const char *name, GPTConfig *cfg, float *params, char *err, size_t errlen) {
    clear(err, errlen);
    Ckpt c;
    memset(&c, 0, sizeof c);
    c.src = mem_source(weights, weights_len, name);
    if (!cfg || !config_json) return fail(err, errlen, GPT_ERR_INPUT, "st_read_hf_buffers: cfg or config_json is NULL");
    int rc = ckpt_parse_hf(&c, config_json, config_len, c.src.name, err, errlen);
    if (!rc && !params) *cfg = c.cfg;
    if (!rc && params) rc = ckpt_read(&c, *cfg, params, NULL, NULL, NULL, NULL, 0, err, errlen);
    ckpt_free(&c);
    return rc;
}

// ---- the writer ----

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} Buf;

static int buf_reserve(Buf *b, size_t n) {  // room for n more bytes and a NUL
    if (b->oom || n > SIZE_MAX / 2 - b->len) return b->oom = 1, -1;
    if (b->len + n + 1 <= b->cap) return 0;
    size_t c = b->cap ? b->cap : 4096;
    while (c < b->len + n + 1) c *= 2;
    char *q = realloc(b->p, c);
    if (!q) return b->oom = 1, -1;
    b->p = q, b->cap = c;
    return 0;
}

static void buf_put(Buf *b, const char *s, size_t n) {
    if (buf_reserve(b, n)) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void buf_str(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_json_string(Buf *b, const char *s) {  // serde_json's escaping
    size_t n = strlen(s), need = json_put_string(NULL, 0, 0, s, n);
    if (buf_reserve(b, need)) return;
    json_put_string(b->p + b->len, need, 0, s, n);
    b->len += need;
    b->p[b->len] = 0;
}

typedef struct {
    const char *key, *val;
} MetaEntry;

typedef struct {
    char name[80];      // canonical, or optim.m. / optim.v. + canonical
    const float *data;  // its first element in params, m or v
    Spec spec;
} TensorEntry;

static int cmp_meta_entry(const void *x, const void *y) {
    const MetaEntry *a = x, *b = y;
    return cmp_bytes(a->key, strlen(a->key), b->key, strlen(b->key));
}

static int cmp_tensor_entry(const void *x, const void *y) {
    const TensorEntry *a = x, *b = y;
    return cmp_bytes(a->name, strlen(a->name), b->name, strlen(b->name));
}

static int valid_utf8(const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(u + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

static int write_all(int fd, const void *data, size_t n) {
    const char *p = data;
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r, n -= (size_t)r;
    }
    return 0;
}

static int mkdirs(char *dir) {  // mkdir -p; dir is modified and restored
    struct stat st;
    if (!dir[0] || stat(dir, &st) == 0) return 0;
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        int r = mkdirs(dir);
        *slash = '/';
        if (r) return r;
    }
    return mkdir(dir, 0777) == 0 || errno == EEXIST ? 0 : -1;
}

static uint64_t random_u64(void) {
    uint64_t r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &r, sizeof r) != (ssize_t)sizeof r) r = 0;
        close(fd);
    }
    struct timespec ts;  // without /dev/urandom: time, pid and a stack address (O_EXCL settles collisions)
    clock_gettime(CLOCK_REALTIME, &ts);
    return r ^ ((uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&ts;
}

// every value finite, and for second moments (nonneg) >= 0: what the readers require
static int check_values(GPTConfig cfg, const float *a, int nonneg, const char *label, const char *path, char *err,
                        size_t errlen) {
    uint64_t nt = num_tensors(cfg);
    for (uint64_t i = 0; i < nt; i++) {
        Spec s;
        tensor_spec(cfg, i, &s);
        for (uint64_t j = 0; j < s.numel; j++) {
            float x = a[s.offset + j];
            if (isfinite(x) && !(nonneg && x < 0.0f)) continue;
            char buf[64];
            tensor_name(cfg, i, buf, sizeof buf);
            return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: %s%s holds %s", path, label, buf,
                        isfinite(x) ? "a negative value (a second moment is >= 0)" : "NaN or infinite values");
        }
    }
    return GPT_OK;
}

// the writer's arguments, all of them, before anything is written: never write what a reader refuses
static int write_check_args(const char *path, GPTConfig cfg, const float *params, const float *m, const float *v,
                            int64_t step, const char *const *extra_keys, const char *const *extra_values, int n_extra,
                            char *err, size_t errlen) {
    int rc = config_check(cfg, path, err, errlen);
    if (rc) return rc;
    if (!params) return fail(err, errlen, GPT_ERR_INPUT, "%s: params is NULL", path);
    if (!m != !v) return fail(err, errlen, GPT_ERR_INPUT, "%s: give both AdamW moments m and v, or neither", path);
    if (m && (step < 0 || step > GPT_MAX_STEP))
        return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: step %lld is outside 0 .. 2^53 (SPEC.md \"Limits\")", path,
                    (long long)step);
    if (n_extra < 0 || (n_extra > 0 && (!extra_keys || !extra_values)))
        return fail(err, errlen, GPT_ERR_INPUT, "%s: bad extra metadata arguments", path);
    for (int i = 0; i < n_extra; i++) {
        const char *k = extra_keys[i], *val = extra_values[i];
        if (!k || !val) return fail(err, errlen, GPT_ERR_INPUT, "%s: metadata key or value %d is NULL", path, i);
        if (!valid_utf8(k) || !valid_utf8(val))
            return fail(err, errlen, GPT_ERR_INPUT, "%s: metadata %.100s is not valid UTF-8", path, k);
        if (!strcmp(k, "format") || !strcmp(k, "config") || !strcmp(k, "step") || (!m && !strcmp(k, "adamw")))
            return fail(err, errlen, ST_ERR_CHECKPOINT, "%s: metadata keys %s are the checkpoint's own; choose other names", path, k);
        if (!strcmp(k, "adamw")) {  // the readers check it: never write what they would refuse
            double a[5];
            char msg[200];
            if (adamw_parse(val, strlen(val), a, msg, sizeof msg))
                return fail(err, errlen, GPT_ERR_INPUT, "%s: unreadable AdamW settings (%s)", path, msg);
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(extra_keys[j], k)) return fail(err, errlen, GPT_ERR_INPUT, "%s: metadata key %.100s given twice", path, k);
    }
    if ((rc = check_values(cfg, params, 0, "", path, err, errlen))) return rc;
    if (m && (rc = check_values(cfg, m, 0, "optimizer first moments: ", path, err, errlen))) return rc;
    if (m && (rc = check_values(cfg, v, 1, "optimizer second moments: ", path, err, errlen))) return rc;
    return GPT_OK;
}

// GPTConfig.to_json(): sorted keys, json.dumps' separators, an ablation only when it is off (so GPT-2's
// config is the five sizes alone)
static void config_to_json(GPTConfig cfg, char *out, size_t cap) {
    size_t len = (size_t)snprintf(out, cap, "{\"block_size\": %d, \"n_embd\": %d, \"n_head\": %d, \"n_layer\": %d",
                                  cfg.block_size, cfg.n_embd, cfg.n_head, cfg.n_layer);
    const char *sorted[3] = {"position_embedding", "residual", "scale_attn_weights"};
    int off[3] = {!cfg.position_embedding, !cfg.residual, !cfg.scale_attn_weights};
    for (int i = 0; i < 3; i++)
        if (off[i]) len += (size_t)snprintf(out + len, cap - len, ", \"%s\": false", sorted[i]);
    snprintf(out + len, cap - len, ", \"vocab_size\": %d}", cfg.vocab_size);
}

// the header, length prefix and padding included, into *hdr: the metadata, then the tensors (tens, sorted
// by name, as safetensors' serializer orders them), their data in that order
static int build_header(Buf *hdr, MetaEntry *meta, size_t nm, const TensorEntry *tens, uint64_t ntens, const char *path,
                        char *err, size_t errlen) {
    qsort(meta, nm, sizeof *meta, cmp_meta_entry);
    buf_put(hdr, "\0\0\0\0\0\0\0\0", 8);  // the header's length, filled in below
    buf_str(hdr, "{\"__metadata__\":{");
    for (size_t i = 0; i < nm; i++) {
        if (i) buf_str(hdr, ",");
        buf_json_string(hdr, meta[i].key);
        buf_str(hdr, ":");
        buf_json_string(hdr, meta[i].val);
    }
    buf_str(hdr, "}");
    uint64_t at = 0;
    for (uint64_t i = 0; i < ntens; i++) {
        const Spec *s = &tens[i].spec;
        char info[160], dims[64];
        if (s->rank == 1) snprintf(dims, sizeof dims, "%llu", (unsigned long long)s->dims[0]);
        else snprintf(dims, sizeof dims, "%llu,%llu", (unsigned long long)s->dims[0], (unsigned long long)s->dims[1]);
        snprintf(info, sizeof info, ":{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[%llu,%llu]}", dims,
                 (unsigned long long)at, (unsigned long long)(at + 4 * s->numel));
        buf_str(hdr, ",");
        buf_json_string(hdr, tens[i].name);
        buf_str(hdr, info);
        at += 4 * s->numel;
    }
    buf_str(hdr, "}");
    while ((hdr->len - 8) % 8) buf_str(hdr, " ");  // the serializer pads the header to a multiple of 8
    if (hdr->oom) return fail(err, errlen, GPT_ERR_MEMORY, "%s: out of memory for the header", path);
    uint64_t n = hdr->len - 8;
    if (n > ST_MAX_HEADER)
        return fail(err, errlen, GPT_ERR_INPUT, "%s: the header would be %llu bytes, over the %llu-byte limit readers accept",
                    path, (unsigned long long)n, ST_MAX_HEADER);
    for (int k = 0; k < 8; k++) hdr->p[k] = (char)(n >> (8 * k) & 0xFF);
    return GPT_OK;
}

// the header, then each tensor's floats, little-endian whatever the host; 0 or -1 (errno says why)
static int write_contents(int fd, const Buf *hdr, const TensorEntry *tens, uint64_t ntens, unsigned char *chunk) {
    if (write_all(fd, hdr->p, hdr->len)) return -1;
    for (uint64_t i = 0; i < ntens; i++) {
        const float *src = tens[i].data;
        uint64_t numel = tens[i].spec.numel;
        for (uint64_t done = 0; done < numel;) {
            size_t cnt = numel - done < CHUNK / 4 ? (size_t)(numel - done) : CHUNK / 4;
            for (size_t j = 0; j < cnt; j++) {
                uint32_t u;
                memcpy(&u, &src[done + j], 4);
                chunk[4 * j] = (unsigned char)u, chunk[4 * j + 1] = (unsigned char)(u >> 8);
                chunk[4 * j + 2] = (unsigned char)(u >> 16), chunk[4 * j + 3] = (unsigned char)(u >> 24);
            }
            if (write_all(fd, chunk, 4 * cnt)) return -1;
            done += cnt;
        }
    }
    return 0;
}

// atomic: a new file in the destination's folder (created if missing), written, synced, renamed over
// path; on any failure the temporary is removed and path is untouched
static int write_atomic(const char *path, const Buf *hdr, const TensorEntry *tens, uint64_t ntens, char *err,
                        size_t errlen) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32), *dir = malloc(plen + 2);
    unsigned char *chunk = malloc(CHUNK);
    int fd = -1, rc = GPT_OK, made = 0;  // made: tmp exists and must go if we fail
    if (!tmp || !dir || !chunk) {
        rc = fail(err, errlen, GPT_ERR_MEMORY, "%s: out of memory", path);
        goto done;
    }
    memcpy(dir, path, plen + 1);
    char *slash = strrchr(dir, '/');
    if (slash) {
        slash[slash == dir ? 1 : 0] = 0;
        if (mkdirs(dir)) {
            rc = fail(err, errlen, ST_ERR_IO, "%s: cannot create the folder %s: %s", path, dir, strerror(errno));
            goto done;
        }
    } else {
        snprintf(dir, plen + 2, ".");
    }
    for (int attempt = 0; fd < 0 && attempt < 100; attempt++) {
        snprintf(tmp, plen + 32, "%s.%016llx.tmp", path, (unsigned long long)random_u64());
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);  // 0666 less the umask, as Python's
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        rc = fail(err, errlen, ST_ERR_IO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        goto done;
    }
    made = 1;
    if (write_contents(fd, hdr, tens, ntens, chunk) != 0 || fsync(fd) != 0) {
        rc = fail(err, errlen, ST_ERR_IO, "%s: writing %s failed: %s", path, tmp, strerror(errno));
        goto done;
    }
    int closed = close(fd);
    fd = -1;
    if (closed != 0 || rename(tmp, path) != 0) {
        rc = fail(err, errlen, ST_ERR_IO, "%s: %s failed: %s", path, closed ? "close" : "rename", strerror(errno));
        goto done;
    }
    made = 0;  // renamed: nothing to remove
    int dfd = open(dir, O_RDONLY | O_CLOEXEC);  // make the rename itself durable (best effort)
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
done:
    if (fd >= 0) close(fd);
    if (made) unlink(tmp);
    free(tmp);
    free(dir);
    free(chunk);
    return rc;
}

int st_write_checkpoint(const char *path, GPTConfig cfg, const float *params, const float *m, const float *v,
                        int64_t step, const char *const *extra_keys, const char *const *extra_values, int n_extra,
                        char *err, size_t errlen) {
    clear(err, errlen);
    if (!path || !path[0]) return fail(err, errlen, GPT_ERR_INPUT, "st_write_checkpoint: no path");
    int rc = write_check_args(path, cfg, params, m, v, step, extra_keys, extra_values, n_extra, err, errlen);
    if (rc) return rc;

    // metadata: ours, then the caller's; tensors: parameters, then optim.m.*, optim.v.*
    uint64_t nt = num_tensors(cfg), ntens = m ? 3 * nt : nt;
    size_t nm = 0;
    MetaEntry *meta = calloc(3 + (size_t)n_extra, sizeof *meta);
    TensorEntry *tens = calloc((size_t)ntens, sizeof *tens);
    Buf hdr = {0};
    char config_json[320], step_str[24];
    if (!meta || !tens) {
        rc = fail(err, errlen, GPT_ERR_MEMORY, "%s: out of memory", path);
        goto done;
    }
    config_to_json(cfg, config_json, sizeof config_json);
    snprintf(step_str, sizeof step_str, "%lld", (long long)step);
    meta[nm++] = (MetaEntry){"format", ST_FORMAT};
    meta[nm++] = (MetaEntry){"config", config_json};
    if (m) meta[nm++] = (MetaEntry){"step", step_str};
    for (int i = 0; i < n_extra; i++) meta[nm++] = (MetaEntry){extra_keys[i], extra_values[i]};
    for (uint64_t i = 0; i < ntens; i++) {
        const float *base = i < nt ? params : i < 2 * nt ? m : v;
        char buf[64];
        tensor_name(cfg, i % nt, buf, sizeof buf);
        snprintf(tens[i].name, sizeof tens[i].name, "%s%s", i < nt ? "" : i < 2 * nt ? "optim.m." : "optim.v.", buf);
        tensor_spec(cfg, i % nt, &tens[i].spec);
        tens[i].data = base + tens[i].spec.offset;
    }
    qsort(tens, (size_t)ntens, sizeof *tens, cmp_tensor_entry);
    rc = build_header(&hdr, meta, nm, tens, ntens, path, err, errlen);
    if (!rc) rc = write_atomic(path, &hdr, tens, ntens, err, errlen);
done:
    free(tens);
    free(meta);
    free(hdr.p);
    return rc;
}
