// Tests of safetensors.c (SPEC.md "Checkpoints", "Bad input"): round trips, then every defect a hostile
// file can have, each of which must come back as the right error code with a message, never a crash.
// Prints one line per check; exits non-zero if any failed.
//   test_safetensors                 run the tests (in a fresh folder under $TMPDIR or /tmp)
//   test_safetensors --seeds DIR     write a seed corpus for fuzz_safetensors into DIR
//   test_safetensors --json-seeds DIR   ... and for fuzz_json
//   test_safetensors --dict FILE     write a libFuzzer dictionary of the format's words
#define _POSIX_C_SOURCE 200809L  // mkdtemp, nftw-free cleanup with opendir

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

static int n_checks, n_failed;

static void check(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    n_checks++;
    n_failed += !ok;
}

// the ablations (the last three fields) are 1, on, as in GPT-2, unless a test says otherwise
static const GPTConfig TINY = {2, 2, 16, 16, 29, 1, 1, 1};  // the "tiny" preset
static const GPTConfig SMALL = {1, 1, 4, 3, 5, 1, 1, 1};    // small enough for byte-by-byte truncation

// ---- the canonical parameters, written out again here so the test does not trust the code it tests ----

static const char *const BLOCK[12] = {
    "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
    "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight",    "mlp.c_fc.bias",    "mlp.c_proj.weight",  "mlp.c_proj.bias",
};

typedef struct {
    char name[64];
    int rank;
    uint64_t dims[2];
    size_t numel, offset;
} Canon;

enum { MAX_CANON = 4 + 12 * 8 };  // the tests' configs have at most 8 layers

static int canon(GPTConfig c, Canon *out) {  // returns the number of tensors
    if (c.n_layer > 8) abort();
    size_t C = (size_t)c.n_embd, n = 0, off = 0;
    size_t shapes[12][2] = {{C, 0}, {C, 0}, {C, 3 * C}, {3 * C, 0}, {C, C}, {C, 0},
                            {C, 0}, {C, 0}, {C, 4 * C}, {4 * C, 0}, {4 * C, C}, {C, 0}};
#define ADD(nm, d0, d1)                                                                            \
    do {                                                                                           \
        Canon *t = &out[n++];                                                                      \
        snprintf(t->name, sizeof t->name, "%s", nm);                                               \
        t->rank = (d1) ? 2 : 1, t->dims[0] = (d0), t->dims[1] = (d1);                              \
        t->numel = (size_t)(d0) * ((d1) ? (size_t)(d1) : 1), t->offset = off, off += t->numel;     \
    } while (0)
    ADD("wte.weight", (size_t)c.vocab_size, C);
    ADD("wpe.weight", (size_t)c.block_size, C);
    for (int i = 0; i < c.n_layer; i++)
        for (int k = 0; k < 12; k++) {
            char nm[64];
            snprintf(nm, sizeof nm, "h.%d.%s", i, BLOCK[k]);
            ADD(nm, shapes[k][0], shapes[k][1]);
        }
    ADD("ln_f.weight", C, 0);
    ADD("ln_f.bias", C, 0);
#undef ADD
    return (int)n;
}

static size_t nparams(GPTConfig c) {
    Canon t[MAX_CANON];
    int n = canon(c, t);
    return t[n - 1].offset + t[n - 1].numel;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {  // xorshift64*
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}
static float rndf(void) { return ((float)rnd() / 4294967296.0f - 0.5f) * 4.0f; }

static float *random_params(GPTConfig c) {
    size_t n = nparams(c);
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = rndf();
    return p;
}

// second moments are >= 0 (SPEC.md "Limits"): the readers refuse a negative one
static float *random_moments(GPTConfig c) {
    float *v = random_params(c);
    for (size_t i = 0; i < nparams(c); i++) v[i] = fabsf(v[i]);
    return v;
}

// ---- building files by hand: any header, any bytes ----

typedef struct {
    char name[96];
    const char *dtype;
    int rank;
    uint64_t dims[4];
    unsigned char *data;  // owned
    size_t nbytes;
    int fixed;  // use begin/end as given instead of laying the data out in order
    uint64_t begin, end;
} T;

typedef struct {
    T t[256];
    int n;
    char meta[4096];  // the __metadata__ JSON value, "" for none
} File;

static void file_free(File *f) {
    for (int i = 0; i < f->n; i++) free(f->t[i].data);
    f->n = 0;
}

static T *add_tensor(File *f, const char *name, const char *dtype, int rank, const uint64_t *dims, const void *data,
                     size_t nbytes) {
    T *t = &f->t[f->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->rank = rank;
    for (int k = 0; k < rank && k < 4; k++) t->dims[k] = dims[k];
    t->data = malloc(nbytes ? nbytes : 1);
    if (data) memcpy(t->data, data, nbytes);
    else memset(t->data, 0, nbytes);
    t->nbytes = nbytes;
    return t;
}

static void remove_tensor(File *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) {
            free(f->t[i].data);
            memmove(&f->t[i], &f->t[i + 1], (size_t)(f->n - i - 1) * sizeof f->t[0]);
            f->n--;
            return;
        }
}

static T *find_tensor(File *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

// the canonical tensors (prefix before each name) of a flat buffer, as F32
static void add_canonical(File *f, GPTConfig c, const char *prefix, const float *flat) {
    Canon t[MAX_CANON];
    int n = canon(c, t);
    for (int i = 0; i < n; i++) {
        char name[96];
        snprintf(name, sizeof name, "%.24s%.64s", prefix, t[i].name);
        add_tensor(f, name, "F32", t[i].rank, t[i].dims, flat + t[i].offset, 4 * t[i].numel);
    }
}

static void config_meta(char *out, size_t cap, GPTConfig c, const char *more) {
    snprintf(out, cap,
             "{\"format\":\"gpt-tiers/1\",\"config\":\"{\\\"block_size\\\": %d, \\\"n_embd\\\": %d, \\\"n_head\\\": %d, "
             "\\\"n_layer\\\": %d, \\\"vocab_size\\\": %d}\"%s%s}",
             c.block_size, c.n_embd, c.n_head, c.n_layer, c.vocab_size, more ? "," : "", more ? more : "");
}

// the bytes of a file; header_override replaces the generated JSON header when given
static unsigned char *build_raw(File *f, const char *header_override, size_t *len) {
    char *hdr = malloc(1 << 20);
    size_t k = 0;
    uint64_t at = 0, data_len = 0;
    if (header_override) {
        k = (size_t)snprintf(hdr, 1 << 20, "%s", header_override);
    } else {
        k += (size_t)sprintf(hdr + k, "{");
        if (f->meta[0]) k += (size_t)sprintf(hdr + k, "\"__metadata__\":%s", f->meta);
        for (int i = 0; i < f->n; i++) {
            T *t = &f->t[i];
            uint64_t b = t->fixed ? t->begin : at, e = t->fixed ? t->end : at + t->nbytes;
            k += (size_t)sprintf(hdr + k, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", k > 1 ? "," : "", t->name, t->dtype);
            for (int d = 0; d < t->rank; d++) k += (size_t)sprintf(hdr + k, "%s%llu", d ? "," : "", (unsigned long long)t->dims[d]);
            k += (size_t)sprintf(hdr + k, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)b, (unsigned long long)e);
            at += t->nbytes;
        }
        k += (size_t)sprintf(hdr + k, "}");
    }
    for (int i = 0; i < f->n; i++) data_len += f->t[i].nbytes;
    *len = 8 + k + data_len;
    unsigned char *out = malloc(*len);
    for (int b = 0; b < 8; b++) out[b] = (unsigned char)((uint64_t)k >> (8 * b));
    memcpy(out + 8, hdr, k);
    size_t pos = 8 + k;
    for (int i = 0; i < f->n; i++) {
        memcpy(out + pos, f->t[i].data, f->t[i].nbytes);
        pos += f->t[i].nbytes;
    }
    free(hdr);
    return out;
}

static unsigned char *build(File *f, size_t *len) { return build_raw(f, NULL, len); }

static int write_file(const char *path, const void *data, size_t len) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    size_t w = fwrite(data, 1, len, fp);
    return fclose(fp) == 0 && w == len ? 0 : -1;
}

// reads a buffer as a whole checkpoint: config, then data; returns the first error code
static int read_all(const void *data, size_t len, char *err, size_t errlen) {
    GPTConfig c;
    int has_opt = 0;
    int64_t step = 0;
    int rc = st_read_config_buffer(data, len, "buf", &c, &has_opt, err, errlen);
    if (rc) return rc;
    size_t n = nparams(c);
    float *p = malloc(n * 4), *m = malloc(n * 4), *v = malloc(n * 4);
    char meta[8192];
    rc = st_read_checkpoint_buffer(data, len, "buf", c, p, m, v, &step, meta, sizeof meta, err, errlen);
    free(p), free(m), free(v);
    return rc;
}

static int expect_code(File *f, int want, const char *what) {
    size_t len;
    unsigned char *b = build(f, &len);
    char err[512] = "";
    int rc = read_all(b, len, err, sizeof err);
    check(rc == want && (want == 0 || (err[0] && strstr(err, "buf"))), "%s -> %d (want %d): %s", what, rc, want, err);
    free(b);
    return rc;
}

static const char *tmpdir;

static char *path_in(const char *name) {
    static char buf[8][1024];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 1024, "%s/%s", tmpdir, name);
    return p;
}

static void rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[2048];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_rf(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    if (d) closedir(d);
    return n;
}

// ---- round trips ----

static void test_round_trip(void) {
    GPTConfig c = TINY;
    size_t n = nparams(c);
    float *p = random_params(c), *m = random_params(c), *v = random_moments(c);
    float *p2 = malloc(n * 4), *m2 = malloc(n * 4), *v2 = malloc(n * 4);
    char err[512] = "", meta[8192], value[4096];
    const char *path = path_in("weights.safetensors");
    int rc = st_write_checkpoint(path, c, p, NULL, NULL, 0, NULL, NULL, 0, err, sizeof err);
    check(rc == 0, "write weights-only checkpoint: %s", err);
    GPTConfig got;
    int has_opt = -1;
    int64_t step = -1;
    rc = st_read_config(path, &got, &has_opt, err, sizeof err);
    check(rc == 0 && !memcmp(&got, &c, sizeof c) && has_opt == 0, "read_config: config and has_optimizer 0 (%s)", err);
    memset(m2, 0xFF, n * 4);
    rc = st_read_checkpoint(path, c, p2, m2, v2, &step, meta, sizeof meta, err, sizeof err);
    int zero = 1;
    for (size_t i = 0; i < n; i++) zero &= m2[i] == 0 && v2[i] == 0;
    check(rc == 0 && !memcmp(p, p2, n * 4), "weights read back bit for bit (%zu floats)", n);
    check(zero && step == 0, "weights-only file: moments zeroed, step 0");
    check(strstr(meta, "\"format\":\"gpt-tiers/1\"") && strstr(meta, "\"config\":"), "metadata JSON: %s", meta);
    rc = st_get_metadata(path, "config", value, sizeof value, err, sizeof err);
    check(rc == 0 && !strcmp(value, "{\"block_size\": 16, \"n_embd\": 16, \"n_head\": 2, \"n_layer\": 2, \"vocab_size\": 29}"),
          "config metadata is GPTConfig.to_json(): %s", value);
    rc = st_get_metadata(path, "tokenizer", value, sizeof value, err, sizeof err);
    check(rc == ST_ERR_NOT_FOUND, "absent metadata key -> ST_ERR_NOT_FOUND: %s", err);
    rc = st_get_metadata(path, "format", value, 5, err, sizeof err);
    check(rc == ST_ERR_BUFFER, "metadata into a 5-byte buffer -> ST_ERR_BUFFER: %s", err);
    rc = st_read_checkpoint(path, c, p2, NULL, NULL, NULL, meta, 10, err, sizeof err);
    check(rc == ST_ERR_BUFFER, "metadata JSON into a 10-byte buffer -> ST_ERR_BUFFER: %s", err);
    rc = st_read_checkpoint(path, c, NULL, NULL, NULL, NULL, NULL, 0, err, sizeof err);
    check(rc == GPT_ERR_INPUT, "params NULL -> GPT_ERR_INPUT: %s", err);
    GPTConfig other = c;
    other.vocab_size = 30;
    rc = st_read_checkpoint(path, other, p2, NULL, NULL, NULL, NULL, 0, err, sizeof err);
    check(rc == GPT_ERR_CONFIG, "read with another config -> GPT_ERR_CONFIG: %s", err);
    rc = st_read_checkpoint(path, c, p2, NULL, NULL, NULL, NULL, 0, NULL, 0);
    check(rc == 0, "err may be NULL");

    // a training checkpoint with metadata that needs escaping
    const char *tok = "[\"\\n\", \" \", \"!\", \"\\\"\", \"\\u00e9\", \"\\u65e5\"]";  // JSON of the characters
    const char *keys[] = {"tokenizer", "train_settings", "adamw", "note"};
    const char *vals[] = {tok, "{\"seed\": 1337, \"batch_size\": 12}",
                          "{\"beta1\": 0.9, \"beta2\": 0.95, \"eps\": 1e-08, \"weight_decay\": 0.1, \"grad_clip\": null}",
                          "tab\there \"quoted\" back\\slash \x01 control, caf\xc3\xa9, \xf0\x9f\x98\x80"};
    path = path_in("sub/dir/train.safetensors");
    rc = st_write_checkpoint(path, c, p, m, v, 1234, keys, vals, 4, err, sizeof err);
    check(rc == 0, "write a training checkpoint into folders that do not exist yet: %s", err);
    rc = st_read_config(path, &got, &has_opt, err, sizeof err);
    check(rc == 0 && has_opt == 1, "training checkpoint: has_optimizer 1");
    rc = st_read_checkpoint(path, c, p2, m2, v2, &step, meta, sizeof meta, err, sizeof err);
    check(rc == 0 && !memcmp(p, p2, n * 4) && !memcmp(m, m2, n * 4) && !memcmp(v, v2, n * 4) && step == 1234,
          "params, m, v and step read back exactly (%s)", err);
    for (int i = 0; i < 4; i++) {
        rc = st_get_metadata(path, keys[i], value, sizeof value, err, sizeof err);
        check(rc == 0 && !strcmp(value, vals[i]), "metadata %s round trip", keys[i]);
    }
    rc = st_get_metadata(path, NULL, value, sizeof value, err, sizeof err);
    check(rc == 0 && !strcmp(value, meta), "st_get_metadata(NULL) is the whole metadata JSON");
    double b1, b2, eps, wd, clip;
    rc = st_get_metadata(path, "adamw", value, sizeof value, err, sizeof err);
    rc = rc ? rc : st_parse_adamw(value, &b1, &b2, &eps, &wd, &clip, err, sizeof err);
    check(rc == 0 && b1 == 0.9 && b2 == 0.95 && eps == 1e-8 && wd == 0.1 && clip < 0, "adamw parsed, grad_clip null -> negative");
    rc = st_parse_adamw("{\"beta1\": 0.8}", &b1, &b2, &eps, &wd, &clip, err, sizeof err);
    check(rc == 0 && b1 == 0.8 && b2 == 0.95 && clip == 1.0, "adamw: absent keys keep AdamWConfig's defaults");
    const char *bad_adamw[] = {"", "[]", "{\"beta3\": 1}", "{\"beta1\": \"x\"}", "{\"beta1\": NaN}", "{\"eps\": true}", "{\"beta1\": 1,}"};
    for (int i = 0; i < 7; i++) {
        rc = st_parse_adamw(bad_adamw[i], &b1, &b2, &eps, &wd, &clip, err, sizeof err);
        check(rc == ST_ERR_CHECKPOINT, "adamw '%s' -> ST_ERR_CHECKPOINT: %s", bad_adamw[i], err);
    }

    // overwrite: the new bytes, one file, no temporary left behind
    float *p3 = random_params(c);
    rc = st_write_checkpoint(path, c, p3, NULL, NULL, 0, NULL, NULL, 0, err, sizeof err);
    rc = rc ? rc : st_read_checkpoint(path, c, p2, m2, v2, &step, NULL, 0, err, sizeof err);
    check(rc == 0 && !memcmp(p3, p2, n * 4) && step == 0, "overwrite replaces the file");
    check(count_entries(path_in("sub/dir")) == 1, "overwrite leaves exactly one file in the folder");
    free(p), free(m), free(v), free(p2), free(m2), free(v2), free(p3);
}

static void test_writer_rejects(void) {
    GPTConfig c = SMALL;
    size_t n = nparams(c);
    float *p = random_params(c), *m = random_params(c), *v = random_moments(c);
    char err[512] = "";
    const char *dir = path_in("rejects");
    mkdir(dir, 0777);
    char path[1200];
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    struct {
        const char *key, *val;
        int training, want;
    } cases[] = {
        {"format", "x", 0, ST_ERR_CHECKPOINT},
        {"config", "x", 0, ST_ERR_CHECKPOINT},
        {"step", "1", 1, ST_ERR_CHECKPOINT},
        {"adamw", "{}", 0, ST_ERR_CHECKPOINT},  // only a training checkpoint has AdamW settings
        {"adamw", "{\"beta1\": \"high\"}", 1, GPT_ERR_INPUT},
        {"adamw", "{\"momentum\": 0.9}", 1, GPT_ERR_INPUT},
        {"bad", "\xff\xfe", 0, GPT_ERR_INPUT},
        {"bad", "\xc0\x80", 0, GPT_ERR_INPUT},  // overlong NUL
        {"\xed\xa0\x80", "surrogate", 0, GPT_ERR_INPUT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *k[] = {cases[i].key}, *val[] = {cases[i].val};
        int rc = st_write_checkpoint(path, c, p, cases[i].training ? m : NULL, cases[i].training ? v : NULL, 3, k, val, 1,
                                     err, sizeof err);
        check(rc == cases[i].want, "write with metadata %s -> %d (want %d): %s", cases[i].key, rc, cases[i].want, err);
    }
    const char *k2[] = {"a", "a"}, *v2[] = {"1", "2"};
    int rc = st_write_checkpoint(path, c, p, NULL, NULL, 0, k2, v2, 2, err, sizeof err);
    check(rc == GPT_ERR_INPUT, "a metadata key twice -> GPT_ERR_INPUT: %s", err);
    const char *k3[] = {NULL};
    rc = st_write_checkpoint(path, c, p, NULL, NULL, 0, k3, v2, 1, err, sizeof err);
    check(rc == GPT_ERR_INPUT, "a NULL metadata key -> GPT_ERR_INPUT: %s", err);
    rc = st_write_checkpoint(path, c, p, m, NULL, 0, NULL, NULL, 0, err, sizeof err);
    check(rc == GPT_ERR_INPUT, "m without v -> GPT_ERR_INPUT: %s", err);
    // SPEC.md "Limits": the writer refuses (CheckpointError) what the readers would reject
    rc = st_write_checkpoint(path, c, p, m, v, -1, NULL, NULL, 0, err, sizeof err);
    check(rc == ST_ERR_CHECKPOINT && strstr(err, "step -1"), "negative step -> ST_ERR_CHECKPOINT: %s", err);
    rc = st_write_checkpoint(path, c, p, m, v, (1LL << 53) + 1, NULL, NULL, 0, err, sizeof err);
    check(rc == ST_ERR_CHECKPOINT && strstr(err, "0 .. 2^53"), "step 2^53 + 1 -> ST_ERR_CHECKPOINT: %s", err);
    v[n - 1] = -1e-9f;
    rc = st_write_checkpoint(path, c, p, m, v, 1, NULL, NULL, 0, err, sizeof err);
    check(rc == ST_ERR_CHECKPOINT && strstr(err, "ln_f.bias holds a negative value"),
          "a negative second moment -> ST_ERR_CHECKPOINT: %s", err);
    v[n - 1] = -0.0f;  // not negative: -0.0 >= 0
    rc = st_write_checkpoint(path, c, p, m, v, 1, NULL, NULL, 0, err, sizeof err);
    check(rc == 0, "a second moment of -0.0 is written: %s", err);
    unlink(path);
    m[3] = NAN;
    rc = st_write_checkpoint(path, c, p, m, v, 1, NULL, NULL, 0, err, sizeof err);
    check(rc == ST_ERR_CHECKPOINT && strstr(err, "first moments: wte.weight holds NaN"), "a NaN first moment -> ST_ERR_CHECKPOINT: %s", err);
    m[3] = 0;
    const char *k4[] = {"adamw"};
    const char *bad_settings[] = {"{\"beta1\": 1.0}", "{\"beta2\": -0.5}", "{\"eps\": 0}", "{\"weight_decay\": -1}",
                                  "{\"grad_clip\": 0}", "{\"eps\": true}", "{\"grad_clip\": false}"};
    for (int i = 0; i < 7; i++) {
        const char *v4[] = {bad_settings[i]};
        rc = st_write_checkpoint(path, c, p, m, v, 1, k4, v4, 1, err, sizeof err);
        check(rc == GPT_ERR_INPUT, "write adamw %s -> GPT_ERR_INPUT: %s", bad_settings[i], err);
    }
    rc = st_write_checkpoint(path, c, NULL, NULL, NULL, 0, NULL, NULL, 0, err, sizeof err);
    check(rc == GPT_ERR_INPUT, "params NULL -> GPT_ERR_INPUT: %s", err);
    GPTConfig bad = c;
    bad.n_head = 3;
    rc = st_write_checkpoint(path, bad, p, NULL, NULL, 0, NULL, NULL, 0, err, sizeof err);
    check(rc == GPT_ERR_CONFIG, "n_embd not divisible by n_head -> GPT_ERR_CONFIG: %s", err);
    bad = c;
    bad.n_layer = 0;
    rc = st_write_checkpoint(path, bad, p, NULL, NULL, 0, NULL, NULL, 0, err, sizeof err);
    check(rc == GPT_ERR_CONFIG, "n_layer 0 -> GPT_ERR_CONFIG: %s", err);
    bad = (GPTConfig){2147483647, 1, 2147483647, 1, 1, 1, 1, 1};
    rc = st_write_checkpoint(path, bad, p, NULL, NULL, 0, NULL, NULL, 0, err, sizeof err);
    check(rc == GPT_ERR_CONFIG, "a config too large to address -> GPT_ERR_CONFIG: %s", err);
    p[n / 2] = NAN;  // the writer refusing NaN weights
    rc = st_write_checkpoint(path, c, p, NULL, NULL, 0, NULL, NULL, 0, err, sizeof err);
    check(rc == ST_ERR_CHECKPOINT && strstr(err, "NaN"), "a NaN weight -> ST_ERR_CHECKPOINT: %s", err);
    p[n / 2] = 0;
    v[0] = INFINITY;
    rc = st_write_checkpoint(path, c, p, m, v, 1, NULL, NULL, 0, err, sizeof err);
    check(rc == ST_ERR_CHECKPOINT && strstr(err, "second moments"), "an infinite moment -> ST_ERR_CHECKPOINT: %s", err);
    check(count_entries(dir) == 0, "failed writes leave no file and no temporary behind");
    // a folder that cannot be created: its parent is a file
    char blocked[1200];
    snprintf(blocked, sizeof blocked, "%s/file", dir);
    write_file(blocked, "x", 1);
    snprintf(path, sizeof path, "%s/file/x.safetensors", dir);
    rc = st_write_checkpoint(path, c, p, NULL, NULL, 0, NULL, NULL, 0, err, sizeof err);
    check(rc == ST_ERR_IO, "destination under a file -> ST_ERR_IO: %s", err);
    check(count_entries(dir) == 1, "... and nothing left behind");
    free(p), free(m), free(v);
}

// ---- hostile files ----

static unsigned char *valid_small(int training, size_t *len) {
    GPTConfig c = SMALL;
    File f = {0};
    float *p = random_params(c), *m = random_params(c), *v = random_moments(c);
    config_meta(f.meta, sizeof f.meta, c, training ? "\"step\":\"5\"" : NULL);
    add_canonical(&f, c, "", p);
    if (training) add_canonical(&f, c, "optim.m.", m), add_canonical(&f, c, "optim.v.", v);
    unsigned char *b = build(&f, len);
    file_free(&f);
    free(p), free(m), free(v);
    return b;
}

static void test_truncation(void) {
    size_t len;
    unsigned char *b = valid_small(1, &len);
    char err[512];
    check(read_all(b, len, err, sizeof err) == 0, "the untruncated file (%zu bytes) reads", len);
    int bad = 0, tried = 0;
    for (size_t cut = 0; cut < len; cut++) {
        if (cut > 700 && cut < len - 300 && cut % 37) continue;  // every length near both ends, a sample between
        unsigned char *t = malloc(cut ? cut : 1);
        memcpy(t, b, cut);
        int rc = read_all(t, cut, err, sizeof err);
        if (rc != ST_ERR_CHECKPOINT) {
            if (bad < 5) printf("     cut at %zu -> %d: %s\n", cut, rc, err);
            bad++;
        }
        tried++;
        free(t);
    }
    for (int i = 0; i < 300; i++) {
        size_t cut = rnd() % len;
        unsigned char *t = malloc(cut ? cut : 1);
        memcpy(t, b, cut);
        if (read_all(t, cut, err, sizeof err) != ST_ERR_CHECKPOINT) bad++;
        tried++;
        free(t);
    }
    check(bad == 0, "truncated at %d lengths (every one from 0 to 700, the last 300, random ones): all ST_ERR_CHECKPOINT", tried);
    // a byte more is as wrong as a byte less
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, b, len);
    longer[len] = 0;
    check(read_all(longer, len + 1, err, sizeof err) == ST_ERR_CHECKPOINT, "one trailing byte -> ST_ERR_CHECKPOINT: %s", err);
    free(longer);
    free(b);
}

static void test_header_length(void) {
    size_t len;
    unsigned char *b = valid_small(0, &len);
    char err[512];
    uint64_t n = 0;
    for (int k = 7; k >= 0; k--) n = n << 8 | b[k];
    uint64_t lengths[] = {len - 8 + 1, len, (uint64_t)1 << 32, (uint64_t)1 << 63, UINT64_MAX, UINT64_MAX - 7, 0, n - 1, n + 1};
    const char *what[] = {"one past the end", "the file size", "2^32", "2^63", "2^64-1", "2^64-8", "0", "one short", "one long"};
    for (int i = 0; i < 9; i++) {
        unsigned char *t = malloc(len);
        memcpy(t, b, len);
        for (int k = 0; k < 8; k++) t[k] = (unsigned char)(lengths[i] >> (8 * k));
        int rc = read_all(t, len, err, sizeof err);
        check(rc == ST_ERR_CHECKPOINT, "header length %s -> %d: %s", what[i], rc, err);
        free(t);
    }
    free(b);
    // over the 100 MB limit, inside a (sparse) file that is long enough
    const char *path = path_in("huge_header.safetensors");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    unsigned char len8[8];
    uint64_t big = ST_MAX_HEADER + 1;
    for (int k = 0; k < 8; k++) len8[k] = (unsigned char)(big >> (8 * k));
    int ok = fd >= 0 && write(fd, len8, 8) == 8 && write(fd, "{", 1) == 1 && ftruncate(fd, (off_t)(big + 16)) == 0;
    if (fd >= 0) close(fd);
    GPTConfig c;
    int rc = st_read_config(path, &c, NULL, err, sizeof err);
    check(ok && rc == ST_ERR_CHECKPOINT && strstr(err, "limit"), "a 100 MB + 1 header -> ST_ERR_CHECKPOINT: %s", err);
    unlink(path);
}

static void test_invalid_json(void) {
    // each a whole header; tensor "a" (4 bytes of data) where one is needed
    const char *cases[] = {
        "",
        " ",
        "{",
        "}",
        "[]",
        "null",
        "\"a\"",
        "123",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\" 1}",
        "{,}",
        "{\"__metadata__\":{},}",
        "{'a':1}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}\x00",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[+1],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[18446744073709551616],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"0\":4}}}",
        "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F4\",\"shape\":[8],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}",
        "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"a\":[\"F32\",[1],[0,4]]}",
        "{\"a\":null}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":1},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":null},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":[],\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":\"x\",\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{},\"__metadata__\":{},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":\"\\x\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":\"\\u12G4\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":\"\\u12\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":\"\\ud800\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":\"\\udc00\\ud800\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":\"\\ud800\\u0041\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":\"tab\there\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":\"new\nline\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":\"\xff\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":\"\xc0\x80\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":\"\xed\xa0\x80\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":\"\xe2\x82\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":\"\xf4\x90\x80\x80\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"__metadata__\":{\"k\":\"unterminated},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":NaN}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1e999}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":-}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1.}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":.5}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1e}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":tru}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":True}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":[1 2]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":{\"y\"}}}",
        "\xef\xbb\xbf{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    File f = {0};
    add_tensor(&f, "a", "F32", 1, (uint64_t[]){1}, NULL, 4);
    for (int i = 0; i < n; i++) {
        size_t len;
        unsigned char *b = build_raw(&f, cases[i], &len);
        char err[512] = "";
        int rc = read_all(b, len, err, sizeof err);
        check(rc == ST_ERR_CHECKPOINT && err[0], "invalid header #%d -> %d: %s", i, rc, err);
        free(b);
    }
    // nesting: 100 levels inside an ignored field are fine (the config is missing), 200 are too deep
    for (int depth = 100; depth <= 200; depth += 100) {
        char hdr[1024];
        int k = sprintf(hdr, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":");
        for (int d = 0; d < depth; d++) hdr[k++] = '[';
        for (int d = 0; d < depth; d++) hdr[k++] = ']';
        sprintf(hdr + k, "}}");
        size_t len;
        unsigned char *b = build_raw(&f, hdr, &len);
        char err[512] = "";
        int rc = read_all(b, len, err, sizeof err);
        check(rc == ST_ERR_CHECKPOINT && (depth == 200 ? strstr(err, "deep") != NULL : strstr(err, "no config") != NULL),
              "%d nested arrays in an ignored field: %s", depth, err);
        free(b);
    }
    file_free(&f);
}

static void test_tensor_defects(void) {
    GPTConfig c = SMALL;
    float *p = random_params(c), *m = random_params(c), *v = random_moments(c);
    File f = {0};
#define FRESH(training)                                                                                \
    do {                                                                                               \
        file_free(&f);                                                                                 \
        config_meta(f.meta, sizeof f.meta, c, (training) ? "\"step\":\"5\"" : NULL);                  \
        add_canonical(&f, c, "", p);                                                                   \
        if (training) add_canonical(&f, c, "optim.m.", m), add_canonical(&f, c, "optim.v.", v);        \
    } while (0)
    FRESH(0);
    expect_code(&f, 0, "the valid file");
    FRESH(0);  // the order of tensors in the header and in the data does not matter
    for (int i = 0; i < f.n / 2; i++) {
        T tmp = f.t[i];
        f.t[i] = f.t[f.n - 1 - i], f.t[f.n - 1 - i] = tmp;
    }
    expect_code(&f, 0, "tensors in reverse order");

    // dtypes
    FRESH(0);
    T *t = find_tensor(&f, "h.0.ln_1.bias");
    t->dtype = "I32";
    expect_code(&f, ST_ERR_CHECKPOINT, "a parameter in I32");
    t->dtype = "BF16", t->nbytes = 8;
    expect_code(&f, ST_ERR_CHECKPOINT, "a parameter in BF16");
    t->dtype = "U8", t->nbytes = 4;
    expect_code(&f, ST_ERR_CHECKPOINT, "a parameter in U8");
    t->nbytes = 16;

    // F64 and F16 are converted
    FRESH(0);
    t = find_tensor(&f, "wte.weight");
    size_t nw = t->nbytes / 4;
    double *d = malloc(nw * 8);
    for (size_t i = 0; i < nw; i++) d[i] = (double)((float *)t->data)[i] * (1 + 1e-12);  // rounds back to the float
    free(t->data);
    t->data = (unsigned char *)d, t->nbytes = nw * 8, t->dtype = "F64";
    uint16_t half[32];
    float want_half[32];
    for (int i = 0; i < 32; i++) {  // random finite halves, subnormals and zeros included
        uint16_t h;
        do h = (uint16_t)rnd();
        while ((h & 0x7C00) == 0x7C00);
        if (i == 0) h = 0x0001;  // the smallest subnormal
        if (i == 1) h = 0x8000;  // -0
        if (i == 2) h = 0x7BFF;  // the largest half
        half[i] = h;
        int e = h >> 10 & 31, man = h & 1023;
        double val = e ? ldexp(1.0 + man / 1024.0, e - 15) : ldexp(man, -24);
        want_half[i] = (float)((h & 0x8000) ? -val : val);
    }
    t = find_tensor(&f, "h.0.attn.c_attn.bias");  // 3C = 12 elements
    free(t->data);
    t->data = malloc(24);
    memcpy(t->data, half, 24);
    t->nbytes = 24, t->dtype = "F16";
    {
        size_t len;
        unsigned char *b = build(&f, &len);
        size_t n = nparams(c);
        float *got = malloc(n * 4);
        char err[512] = "";
        int rc = st_read_checkpoint_buffer(b, len, "buf", c, got, NULL, NULL, NULL, NULL, 0, err, sizeof err);
        Canon cs[MAX_CANON];
        canon(c, cs);
        int same = rc == 0 && !memcmp(got, p, 4 * cs[0].numel);
        check(same, "an F64 wte.weight reads back as the float32 values (%s)", err);
        int same16 = rc == 0;
        for (int i = 0; i < 12 && same16; i++) same16 = !memcmp(&got[cs[5].offset + (size_t)i], &want_half[i], 4);
        check(same16, "F16 values convert exactly, subnormals and -0 included");
        free(got);
        free(b);
    }
    d = (double *)find_tensor(&f, "wte.weight")->data;
    d[3] = 3.5e38;  // finite in float64, infinite in float32
    expect_code(&f, ST_ERR_CHECKPOINT, "an F64 value beyond float32's range");
    d[3] = 3.4028235e38;  // rounds to FLT_MAX: fine
    expect_code(&f, 0, "an F64 value that rounds to FLT_MAX");
    d[3] = NAN;
    expect_code(&f, ST_ERR_CHECKPOINT, "an F64 NaN");

    // non-finite values
    FRESH(1);
    ((float *)find_tensor(&f, "h.0.mlp.c_fc.bias")->data)[2] = NAN;
    {
        size_t len;
        unsigned char *b = build(&f, &len);
        GPTConfig got;
        char err[512] = "";
        int rc = st_read_config_buffer(b, len, "buf", &got, NULL, err, sizeof err);
        check(rc == 0, "a NaN passes st_read_config (the header is fine)");
        free(b);
    }
    expect_code(&f, ST_ERR_CHECKPOINT, "a NaN weight");
    FRESH(1);
    ((float *)find_tensor(&f, "optim.v.ln_f.bias")->data)[0] = -INFINITY;
    expect_code(&f, ST_ERR_CHECKPOINT, "-inf in a second moment");

    // shapes
    FRESH(0);
    find_tensor(&f, "wpe.weight")->dims[0] = 12, find_tensor(&f, "wpe.weight")->dims[1] = 1;
    expect_code(&f, GPT_ERR_CONFIG, "wpe.weight (12, 1) instead of (3, 4)");
    FRESH(0);
    t = find_tensor(&f, "ln_f.bias");
    t->rank = 2, t->dims[1] = 1;
    expect_code(&f, GPT_ERR_CONFIG, "ln_f.bias (4, 1) instead of (4,)");
    t->rank = 0;
    t->nbytes = 4;
    expect_code(&f, GPT_ERR_CONFIG, "ln_f.bias a scalar");
    FRESH(0);
    t = find_tensor(&f, "wte.weight");
    t->dims[0] = 4;  // the bytes no longer match the shape
    expect_code(&f, ST_ERR_CHECKPOINT, "shape and byte count disagree");

    // offsets
    const char *what[] = {"end past the data", "overlapping the next", "a gap", "end before begin", "begin past the data"};
    for (int k = 0; k < 5; k++) {
        FRESH(0);
        uint64_t at = 0;
        for (int i = 0; i < f.n; i++) {
            f.t[i].fixed = 1, f.t[i].begin = at, f.t[i].end = at + f.t[i].nbytes;
            at += f.t[i].nbytes;
        }
        T *a = &f.t[3], *last = &f.t[f.n - 1];
        if (k == 0) last->end += 4;
        if (k == 1) a->begin -= 4, a->end -= 4;
        if (k == 2) a->begin += 4, a->end += 4;
        if (k == 3) a->end = a->begin - 4;
        if (k == 4) last->begin = last->end = at + 64;
        expect_code(&f, ST_ERR_CHECKPOINT, what[k]);
    }
    FRESH(0);  // zero-size tensors may share an offset, as in the reference; an ignored buffer here
    add_tensor(&f, "h.0.attn.bias", "F32", 2, (uint64_t[]){0, 5}, NULL, 0);
    add_tensor(&f, "h.0.attn.masked_bias", "BOOL", 1, (uint64_t[]){0}, NULL, 0);
    expect_code(&f, 0, "zero-size mask buffers");
    FRESH(0);
    add_tensor(&f, "x", "F32", 3, (uint64_t[]){1ull << 32, 1ull << 32, 0}, NULL, 0);
    expect_code(&f, ST_ERR_CHECKPOINT, "a shape whose size overflows before a 0");

    // names
    FRESH(0);
    remove_tensor(&f, "h.0.ln_2.bias");
    expect_code(&f, ST_ERR_CHECKPOINT, "h.0.ln_2.bias missing");
    FRESH(0);
    add_tensor(&f, "h.1.ln_1.weight", "F32", 1, (uint64_t[]){4}, NULL, 16);
    expect_code(&f, ST_ERR_CHECKPOINT, "an unexpected h.1.ln_1.weight (one layer)");
    FRESH(0);
    snprintf(find_tensor(&f, "h.0.ln_1.weight")->name, 96, "h.00.ln_1.weight");
    expect_code(&f, ST_ERR_CHECKPOINT, "h.00.ln_1.weight is not h.0.ln_1.weight");
    FRESH(0);
    add_tensor(&f, "transformer.h.0.ln_1.weight", "F32", 1, (uint64_t[]){4}, NULL, 16);
    expect_code(&f, ST_ERR_CHECKPOINT, "a tensor with and without 'transformer.'");
    FRESH(0);
    for (int i = 0; i < f.n; i++) {
        char tmp[96];
        snprintf(tmp, sizeof tmp, "transformer.%s", f.t[i].name);
        memcpy(f.t[i].name, tmp, sizeof tmp);
    }
    add_tensor(&f, "h.0.attn.bias", "F32", 4, (uint64_t[]){1, 1, 3, 3}, NULL, 36);
    expect_code(&f, 0, "our file with 'transformer.' names and a mask buffer");
    FRESH(0);
    add_tensor(&f, "lm_head.weight", "F32", 2, (uint64_t[]){5, 4}, find_tensor(&f, "wte.weight")->data, 80);
    expect_code(&f, 0, "lm_head.weight equal to wte.weight");
    ((float *)find_tensor(&f, "lm_head.weight")->data)[7] += 1.0f;
    expect_code(&f, ST_ERR_CHECKPOINT, "lm_head.weight different from wte.weight");
    FRESH(0);
    add_tensor(&f, "lm_head.weight", "F32", 2, (uint64_t[]){4, 5}, find_tensor(&f, "wte.weight")->data, 80);
    expect_code(&f, ST_ERR_CHECKPOINT, "lm_head.weight transposed");

    // the config in __metadata__
    struct {
        const char *meta;
        int want;
    } metas[] = {
        {"{}", ST_ERR_CHECKPOINT},
        {"null", ST_ERR_CHECKPOINT},
        {"{\"config\":\"{\"}", ST_ERR_CHECKPOINT},
        {"{\"config\":\"\"}", ST_ERR_CHECKPOINT},
        {"{\"config\":\"[1]\"}", GPT_ERR_CONFIG},
        {"{\"config\":\"{\\\"n_layer\\\": 1}\"}", GPT_ERR_CONFIG},
        {"{\"config\":\"{\\\"n_layer\\\": 1, \\\"n_head\\\": 1, \\\"n_embd\\\": 4.0, \\\"block_size\\\": 3, \\\"vocab_size\\\": 5}\"}", GPT_ERR_CONFIG},
        {"{\"config\":\"{\\\"n_layer\\\": true, \\\"n_head\\\": 1, \\\"n_embd\\\": 4, \\\"block_size\\\": 3, \\\"vocab_size\\\": 5}\"}", GPT_ERR_CONFIG},
        {"{\"config\":\"{\\\"n_layer\\\": 1, \\\"n_head\\\": 1, \\\"n_embd\\\": 4, \\\"block_size\\\": 0, \\\"vocab_size\\\": 5}\"}", GPT_ERR_CONFIG},
        {"{\"config\":\"{\\\"n_layer\\\": 1, \\\"n_head\\\": 3, \\\"n_embd\\\": 4, \\\"block_size\\\": 3, \\\"vocab_size\\\": 5}\"}", GPT_ERR_CONFIG},
        {"{\"config\":\"{\\\"n_layer\\\": 1, \\\"n_head\\\": 1, \\\"n_embd\\\": 4, \\\"block_size\\\": 3, \\\"vocab_size\\\": 99999999999999999999999}\"}", GPT_ERR_CONFIG},
        {"{\"config\":\"{\\\"n_layer\\\": 1, \\\"n_head\\\": 1, \\\"n_embd\\\": 4, \\\"block_size\\\": 3, \\\"vocab_size\\\": \\\"5\\\"}\"}", GPT_ERR_CONFIG},
        {"{\"config\":\"{\\\"n_layer\\\": 1, \\\"n_head\\\": 1, \\\"n_embd\\\": 4, \\\"block_size\\\": 3, \\\"vocab_size\\\": 6}\"}", GPT_ERR_CONFIG},
        {"{\"config\":\"{\\\"n_layer\\\": 1, \\\"n_head\\\": 1, \\\"n_embd\\\": 4, \\\"block_size\\\": 3, \\\"vocab_size\\\": 5, \\\"other\\\": [1, {}]}\"}", 0},
        {"{\"config\":\"{\\\"n_layer\\\": 1, \\\"n_head\\\": 1, \\\"n_embd\\\": 4, \\\"n_positions\\\": 3, \\\"vocab_size\\\": 5}\"}", 0},
        {"{\"config\":\"{\\\"n_layer\\\": 1, \\\"n_head\\\": 1, \\\"n_embd\\\": 4, \\\"block_size\\\": 3, \\\"n_positions\\\": 7, \\\"vocab_size\\\": 5}\"}", 0},
        {"{\"config\":\"{\\\"n_layer\\\": 9, \\\"n_layer\\\": 1, \\\"n_head\\\": 1, \\\"n_embd\\\": 4, \\\"block_size\\\": 3, \\\"vocab_size\\\": 5}\"}", 0},
        {"{\"format\":\"something else\",\"config\":\"{\\\"n_layer\\\": 1, \\\"n_head\\\": 1, \\\"n_embd\\\": 4, \\\"block_size\\\": 3, \\\"vocab_size\\\": 5}\"}", 0},
    };
    for (size_t i = 0; i < sizeof metas / sizeof metas[0]; i++) {
        FRESH(0);
        snprintf(f.meta, sizeof f.meta, "%s", metas[i].meta);
        char what2[200];
        snprintf(what2, sizeof what2, "__metadata__ %.150s", metas[i].meta);
        expect_code(&f, metas[i].want, what2);
    }

    // training checkpoints
    // 64-bit steps up to 2^53 (SPEC.md "Limits"); a 32-bit counter wrapped at 2^31
    const char *steps[] = {"\"5\"", "\" 1_000 \"", "\"+7\"", "\"007\"", "\"-0\"", "\"2147483648\"", "\"4294967299\"",
                           "\"9007199254740992\""};
    for (int i = 0; i < 8; i++) {
        FRESH(1);
        char more[64];
        snprintf(more, sizeof more, "\"step\":%s", steps[i]);
        config_meta(f.meta, sizeof f.meta, c, more);
        char w[64];
        snprintf(w, sizeof w, "step %s", steps[i]);
        expect_code(&f, 0, w);
    }
    const char *bad_steps[] = {"\"\"", "\"x\"", "\"-1\"", "\"1.0\"", "\"1__0\"", "\"_1\"", "\"1_\"", "\"9007199254740993\"", "\"99999999999999999999999\"", "\"0x10\""};
    for (int i = 0; i < 10; i++) {
        FRESH(1);
        char more[64];
        snprintf(more, sizeof more, "\"step\":%s", bad_steps[i]);
        config_meta(f.meta, sizeof f.meta, c, more);
        char w[64];
        snprintf(w, sizeof w, "step %s", bad_steps[i]);
        expect_code(&f, ST_ERR_CHECKPOINT, w);
    }
    FRESH(1);
    config_meta(f.meta, sizeof f.meta, c, NULL);
    expect_code(&f, ST_ERR_CHECKPOINT, "moments without a step");
    FRESH(0);
    config_meta(f.meta, sizeof f.meta, c, "\"step\":\"3\"");
    expect_code(&f, ST_ERR_CHECKPOINT, "a step without moments");
    FRESH(1);
    remove_tensor(&f, "optim.v.h.0.mlp.c_fc.weight");
    expect_code(&f, ST_ERR_CHECKPOINT, "a second moment missing");
    FRESH(1);
    remove_tensor(&f, "optim.m.wte.weight");
    remove_tensor(&f, "optim.v.wte.weight");
    expect_code(&f, ST_ERR_CHECKPOINT, "both moments of one tensor missing");
    FRESH(1);
    add_tensor(&f, "optim.m.h.0.attn.bias", "F32", 1, (uint64_t[]){1}, NULL, 4);
    expect_code(&f, ST_ERR_CHECKPOINT, "an unexpected moment (of a mask buffer)");
    FRESH(1);
    t = find_tensor(&f, "optim.m.wpe.weight");
    t->dims[0] = 4, t->dims[1] = 3;
    expect_code(&f, ST_ERR_CHECKPOINT, "a moment of the wrong shape is ST_ERR_CHECKPOINT, as in Python");
    FRESH(1);
    config_meta(f.meta, sizeof f.meta, c,
                "\"step\":\"5\",\"adamw\":\"{\\\"beta1\\\": 0.9, \\\"beta2\\\": 0.95, \\\"eps\\\": 1e-08, \\\"weight_decay\\\": 0.1, \\\"grad_clip\\\": 1.0}\"");
    expect_code(&f, 0, "a training checkpoint with adamw");
    const char *bad_adamw[] = {"\"adamw\":\"\"", "\"adamw\":\"[]\"", "\"adamw\":\"{\\\"lr\\\": 1}\"", "\"adamw\":\"{\\\"eps\\\": \\\"small\\\"}\"",
                               // AdamWConfig's ranges (SPEC.md "Limits"), and a bool is not a number
                               "\"adamw\":\"{\\\"eps\\\": true}\"", "\"adamw\":\"{\\\"beta1\\\": 1.0}\"", "\"adamw\":\"{\\\"beta2\\\": -0.1}\"",
                               "\"adamw\":\"{\\\"eps\\\": 0.0}\"", "\"adamw\":\"{\\\"weight_decay\\\": -0.1}\"", "\"adamw\":\"{\\\"grad_clip\\\": -1}\"",
                               "\"adamw\":\"{\\\"grad_clip\\\": 0}\""};
    for (int i = 0; i < 11; i++) {
        FRESH(1);
        char more[200];
        snprintf(more, sizeof more, "\"step\":\"5\",%s", bad_adamw[i]);
        config_meta(f.meta, sizeof f.meta, c, more);
        expect_code(&f, ST_ERR_CHECKPOINT, bad_adamw[i]);
    }
#undef FRESH
    file_free(&f);
    free(p), free(m), free(v);
}

// ---- Hugging Face directories ----

static const char *HF_CONFIG =
    "{\"activation_function\": \"gelu_new\", \"architectures\": [\"GPT2LMHeadModel\"], \"attn_pdrop\": 0.1, "
    "\"layer_norm_epsilon\": 1e-05, \"model_type\": \"gpt2\", \"n_ctx\": 16, \"n_embd\": 16, \"n_head\": 2, "
    "\"n_inner\": null, \"n_layer\": 2, \"n_positions\": 16, \"scale_attn_weights\": true, "
    "\"scale_attn_by_inverse_layer_idx\": false, \"tie_word_embeddings\": true, \"vocab_size\": 29, "
    "\"task_specific_params\": {\"text-generation\": {\"do_sample\": true, \"max_length\": 50}}}";

static int hf_dir(const char *dir, const char *config, File *weights) {
    char p[1200];
    mkdir(dir, 0777);
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (config) write_file(p, config, strlen(config));
    else unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (!weights) return unlink(p), 0;
    size_t len;
    unsigned char *b = build(weights, &len);
    int rc = write_file(p, b, len);
    free(b);
    return rc;
}

static int read_dir(const char *dir, GPTConfig *got, float *params, char *err, size_t errlen) {
    int has_opt = -1;
    int rc = st_read_config(dir, got, &has_opt, err, errlen);
    if (rc) return rc;
    char meta[64];
    int64_t step = -1;
    rc = st_read_checkpoint(dir, *got, params, NULL, NULL, &step, meta, sizeof meta, err, errlen);
    if (!rc && (has_opt != 0 || step != 0 || strcmp(meta, "{}"))) return -100;
    return rc;
}

// the config.json of HF_CONFIG with one key's value replaced (or the key removed when value is NULL)
static char *hf_config_with(const char *key, const char *value) {
    static char out[4096];
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *at = strstr(HF_CONFIG, pat);
    if (!at) {
        snprintf(out, sizeof out, "{\"%s\": %s, %s", key, value, HF_CONFIG + 1);
        return out;
    }
    const char *end = at + strlen(pat);
    int depth = 0;
    while (*end && !(depth == 0 && (*end == ',' || *end == '}'))) {
        depth += *end == '{' || *end == '[';
        depth -= *end == '}' || *end == ']';
        end++;
    }
    if (value) snprintf(out, sizeof out, "%.*s%s%s", (int)(at - HF_CONFIG), HF_CONFIG, pat, value), strcat(out, end);
    else snprintf(out, sizeof out, "%.*s%s", (int)(at - HF_CONFIG), HF_CONFIG, end + (*end == ',' ? 2 : 0));
    return out;
}

static void test_hf(void) {
    GPTConfig c = TINY;
    size_t n = nparams(c);
    float *p = random_params(c), *got = malloc(n * 4);
    const char *dir = path_in("hf");
    char err[512] = "";
    GPTConfig cfg;
    File f = {0};

    add_canonical(&f, c, "transformer.", p);
    for (int i = 0; i < c.n_layer; i++) {  // the mask buffers of older transformers versions
        char name[64];
        snprintf(name, sizeof name, "transformer.h.%d.attn.bias", i);
        add_tensor(&f, name, "F32", 4, (uint64_t[]){1, 1, 16, 16}, NULL, 4 * 256);
        snprintf(name, sizeof name, "transformer.h.%d.attn.masked_bias", i);
        add_tensor(&f, name, "F32", 0, NULL, NULL, 4);
    }
    add_tensor(&f, "lm_head.weight", "F32", 2, (uint64_t[]){29, 16}, p, 4 * 29 * 16);
    hf_dir(dir, HF_CONFIG, &f);
    int rc = read_dir(dir, &cfg, got, err, sizeof err);
    check(rc == 0 && !memcmp(&cfg, &c, sizeof c) && !memcmp(got, p, n * 4),
          "HF directory: transformer. prefix, mask buffers, tied lm_head, no metadata (%s)", err);
    char value[64];
    rc = st_get_metadata(dir, "format", value, sizeof value, err, sizeof err);
    check(rc == ST_ERR_NOT_FOUND, "HF directory has no metadata: %s", err);
    char slash[1200];
    snprintf(slash, sizeof slash, "%s/", dir);
    rc = read_dir(slash, &cfg, got, err, sizeof err);
    check(rc == 0, "the directory's path with a trailing slash (%s)", err);

    T *lm = find_tensor(&f, "lm_head.weight");
    ((float *)lm->data)[5] = -((float *)lm->data)[5];
    hf_dir(dir, HF_CONFIG, &f);
    rc = st_read_config(dir, &cfg, NULL, err, sizeof err);
    check(rc == 0, "lm_head different: the header alone passes");
    rc = read_dir(dir, &cfg, got, err, sizeof err);
    check(rc == ST_ERR_CHECKPOINT && strstr(err, "lm_head"), "lm_head.weight != wte.weight -> ST_ERR_CHECKPOINT: %s", err);
    memcpy(lm->data, p, lm->nbytes);
    float *w = (float *)find_tensor(&f, "transformer.wte.weight")->data;
    w[0] = 0.0f, ((float *)lm->data)[0] = -0.0f;
    hf_dir(dir, HF_CONFIG, &f);
    rc = read_dir(dir, &cfg, got, err, sizeof err);
    check(rc == 0, "lm_head -0.0 where wte has +0.0 is equal, as numpy's array_equal says (%s)", err);
    w[0] = p[0];
    memcpy(lm->data, p, lm->nbytes);

    // without the prefix, without lm_head, mixed
    file_free(&f);
    add_canonical(&f, c, "", p);
    hf_dir(dir, HF_CONFIG, &f);
    rc = read_dir(dir, &cfg, got, err, sizeof err);
    check(rc == 0 && !memcmp(got, p, n * 4), "HF directory without prefix or lm_head (%s)", err);
    snprintf(f.t[3].name, 96, "transformer.%s", "h.0.ln_1.bias");
    hf_dir(dir, HF_CONFIG, &f);
    rc = read_dir(dir, &cfg, got, err, sizeof err);
    check(rc == 0, "names mixed with and without the prefix (%s)", err);
    add_tensor(&f, "optim.m.wte.weight", "F32", 2, (uint64_t[]){29, 16}, p, 4 * 29 * 16);
    hf_dir(dir, HF_CONFIG, &f);
    rc = read_dir(dir, &cfg, got, err, sizeof err);
    check(rc == ST_ERR_CHECKPOINT, "a moment in an HF directory is an unexpected tensor: %s", err);
    remove_tensor(&f, "optim.m.wte.weight");
    hf_dir(dir, HF_CONFIG, &f);

    struct {
        const char *key, *value;
        int want;
    } cfgs[] = {
        {"activation_function", "\"gelu\"", GPT_ERR_CONFIG},
        {"activation_function", "null", GPT_ERR_CONFIG},
        {"activation_function", NULL, 0},
        {"layer_norm_epsilon", "1e-6", GPT_ERR_CONFIG},
        {"layer_norm_epsilon", "0.00001", 0},
        {"layer_norm_epsilon", "1E-5", 0},
        {"layer_norm_epsilon", "NaN", GPT_ERR_CONFIG},  // Python's json takes NaN; it is not 1e-5
        {"layer_norm_epsilon", "\"1e-5\"", GPT_ERR_CONFIG},
        {"scale_attn_weights", "false", 0},  // the ablation (SPEC.md "Ablations")
        {"scale_attn_weights", "1", GPT_ERR_CONFIG},  // GPTConfig takes a bool, and 1 is an int in JSON
        {"scale_attn_weights", "null", GPT_ERR_CONFIG},
        {"scale_attn_weights", NULL, 0},
        {"residual", "false", 0},  // GPTConfig.from_dict reads our ablations in config.json too
        {"position_embedding", "\"no\"", GPT_ERR_CONFIG},
        {"scale_attn_by_inverse_layer_idx", "true", GPT_ERR_CONFIG},
        {"scale_attn_by_inverse_layer_idx", "0.0", 0},
        {"tie_word_embeddings", "false", GPT_ERR_CONFIG},
        {"tie_word_embeddings", NULL, 0},
        {"n_inner", "64", 0},
        {"n_inner", "64.0", 0},
        {"n_inner", "63", GPT_ERR_CONFIG},
        {"n_inner", "\"64\"", GPT_ERR_CONFIG},
        {"n_positions", NULL, GPT_ERR_CONFIG},  // no block_size either
        {"n_layer", NULL, GPT_ERR_CONFIG},
        {"n_layer", "2.0", GPT_ERR_CONFIG},
        {"n_layer", "3", ST_ERR_CHECKPOINT},  // the weights have 2 layers: missing tensors
        {"n_embd", "8", GPT_ERR_CONFIG},   // wrong shapes
        {"block_size", "16", 0},
        {"vocab_size", "-29", GPT_ERR_CONFIG},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        hf_dir(dir, hf_config_with(cfgs[i].key, cfgs[i].value), &f);
        rc = read_dir(dir, &cfg, got, err, sizeof err);
        check(rc == cfgs[i].want && (!rc || strstr(err, "hf")), "config.json %s: %s -> %d (want %d): %s", cfgs[i].key,
              cfgs[i].value ? cfgs[i].value : "(absent)", rc, cfgs[i].want, err);
    }
    hf_dir(dir, hf_config_with("scale_attn_weights", "false"), &f);
    rc = read_dir(dir, &cfg, got, err, sizeof err);
    check(rc == 0 && cfg.scale_attn_weights == 0 && cfg.residual == 1 && cfg.position_embedding == 1,
          "config.json scale_attn_weights false is the ablation, the others stay on (%s)", err);
    const char *not_json[] = {"", "{", "{\"n_layer\": 2,}", "\xef\xbb\xbf{}", "{\"a\": \"\xff\"}"};
    for (int i = 0; i < 5; i++) {
        hf_dir(dir, not_json[i], &f);
        rc = read_dir(dir, &cfg, got, err, sizeof err);
        check(rc == ST_ERR_CHECKPOINT, "config.json not JSON #%d -> ST_ERR_CHECKPOINT: %s", i, err);
    }
    hf_dir(dir, "[1, 2]", &f);
    rc = read_dir(dir, &cfg, got, err, sizeof err);
    check(rc == GPT_ERR_CONFIG, "config.json a list -> GPT_ERR_CONFIG: %s", err);
    hf_dir(dir, NULL, &f);
    rc = read_dir(dir, &cfg, got, err, sizeof err);
    check(rc == ST_ERR_CHECKPOINT && strstr(err, "config.json is missing"), "no config.json: %s", err);
    hf_dir(dir, HF_CONFIG, NULL);
    rc = read_dir(dir, &cfg, got, err, sizeof err);
    check(rc == ST_ERR_CHECKPOINT && strstr(err, "model.safetensors is missing"), "no model.safetensors: %s", err);

    // the in-memory twin
    size_t len;
    unsigned char *b = build(&f, &len);
    rc = st_read_hf_buffers(HF_CONFIG, strlen(HF_CONFIG), b, len, "hfbuf", &cfg, NULL, err, sizeof err);
    rc = rc ? rc : st_read_hf_buffers(HF_CONFIG, strlen(HF_CONFIG), b, len, "hfbuf", &cfg, got, err, sizeof err);
    check(rc == 0 && !memcmp(got, p, n * 4), "st_read_hf_buffers (%s)", err);
    free(b);
    file_free(&f);
    free(p), free(got);
}

// ---- the ablations in the config (SPEC.md "Ablations", "Config") ----

static void test_ablations(void) {
    GPTConfig c = SMALL;
    size_t n = nparams(c);
    float *p = random_params(c), *p2 = malloc(n * 4);
    char err[512] = "", value[512];
    const char *path = path_in("ablated.safetensors");
    // each ablation off alone, then all three, then none: GPTConfig.to_json() writes one only when it is off,
    // with sorted keys, so GPT-2's config is byte for byte what it was before the ablations
    struct {
        int scale_attn_weights, residual, position_embedding;
        const char *json;
    } writes[] = {
        {0, 1, 1, "{\"block_size\": 3, \"n_embd\": 4, \"n_head\": 1, \"n_layer\": 1, \"scale_attn_weights\": false, \"vocab_size\": 5}"},
        {1, 0, 1, "{\"block_size\": 3, \"n_embd\": 4, \"n_head\": 1, \"n_layer\": 1, \"residual\": false, \"vocab_size\": 5}"},
        {1, 1, 0, "{\"block_size\": 3, \"n_embd\": 4, \"n_head\": 1, \"n_layer\": 1, \"position_embedding\": false, \"vocab_size\": 5}"},
        {0, 0, 0,
         "{\"block_size\": 3, \"n_embd\": 4, \"n_head\": 1, \"n_layer\": 1, \"position_embedding\": false, \"residual\": false, "
         "\"scale_attn_weights\": false, \"vocab_size\": 5}"},
        {1, 1, 1, "{\"block_size\": 3, \"n_embd\": 4, \"n_head\": 1, \"n_layer\": 1, \"vocab_size\": 5}"},
    };
    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
        GPTConfig a = c, got;
        a.scale_attn_weights = writes[i].scale_attn_weights;
        a.residual = writes[i].residual;
        a.position_embedding = writes[i].position_embedding;
        int rc = st_write_checkpoint(path, a, p, NULL, NULL, 0, NULL, NULL, 0, err, sizeof err);
        rc = rc ? rc : st_get_metadata(path, "config", value, sizeof value, err, sizeof err);
        check(rc == 0 && !strcmp(value, writes[i].json), "ablations %d %d %d written as GPTConfig.to_json(): %s",
              a.scale_attn_weights, a.residual, a.position_embedding, rc ? err : value);
        rc = st_read_config(path, &got, NULL, err, sizeof err);
        rc = rc ? rc : st_read_checkpoint(path, a, p2, NULL, NULL, NULL, NULL, 0, err, sizeof err);
        check(rc == 0 && !memcmp(&got, &a, sizeof a) && !memcmp(p, p2, n * 4), "... and read back (%s)", err);
        if (a.scale_attn_weights && a.residual && a.position_embedding) continue;
        rc = st_read_checkpoint(path, c, p2, NULL, NULL, NULL, NULL, 0, err, sizeof err);
        const char *off = !a.scale_attn_weights ? "scale_attn_weights"
                          : !a.residual         ? "residual"
                                                : "position_embedding";
        check(rc == GPT_ERR_CONFIG && strstr(err, off), "... read with GPT-2's config -> GPT_ERR_CONFIG: %s", err);
    }

    // in the config's JSON an ablation is true, false or absent (true); anything else names the key
    struct {
        const char *key, *value;  // value as JSON inside the config string (quotes escaped once more)
        int want, on;
    } reads[] = {
        {"scale_attn_weights", "false", 0, 0},
        {"scale_attn_weights", "true", 0, 1},
        {"residual", "false", 0, 0},
        {"position_embedding", "false", 0, 0},
        {"position_embedding", "true", 0, 1},
        {"residual", "1", GPT_ERR_CONFIG, 0},  // Python's GPTConfig takes a bool only: 1 is an int
        {"residual", "0", GPT_ERR_CONFIG, 0},
        {"scale_attn_weights", "1.0", GPT_ERR_CONFIG, 0},
        {"scale_attn_weights", "null", GPT_ERR_CONFIG, 0},
        {"position_embedding", "\\\"false\\\"", GPT_ERR_CONFIG, 0},
        {"position_embedding", "[true]", GPT_ERR_CONFIG, 0},
        {"residual", "{}", GPT_ERR_CONFIG, 0},
    };
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        File f = {0};
        snprintf(f.meta, sizeof f.meta,
                 "{\"config\":\"{\\\"n_layer\\\": 1, \\\"n_head\\\": 1, \\\"n_embd\\\": 4, \\\"block_size\\\": 3, "
                 "\\\"vocab_size\\\": 5, \\\"%s\\\": %s}\"}",
                 reads[i].key, reads[i].value);
        add_canonical(&f, c, "", p);
        size_t len;
        unsigned char *b = build(&f, &len);
        GPTConfig got;
        int rc = st_read_config_buffer(b, len, "buf", &got, NULL, err, sizeof err);
        int ok = rc == reads[i].want;
        if (ok && rc == 0) {  // the key as read, the other two true
            const char *names[3] = {"scale_attn_weights", "residual", "position_embedding"};
            int on[3] = {got.scale_attn_weights, got.residual, got.position_embedding};
            for (int k = 0; k < 3; k++) ok &= on[k] == (strcmp(names[k], reads[i].key) ? 1 : reads[i].on);
        } else if (ok) {
            ok = strstr(err, reads[i].key) && strstr(err, "must be true or false");
        }
        check(ok, "config %s: %s -> %d (want %d): %s", reads[i].key, reads[i].value, rc, reads[i].want, err);
        free(b);
        file_free(&f);
    }

    // a C config whose switch is neither 0 nor 1 is no config: the writer refuses it
    GPTConfig bad = c;
    bad.residual = 2;
    int rc = st_write_checkpoint(path, bad, p, NULL, NULL, 0, NULL, NULL, 0, err, sizeof err);
    check(rc == GPT_ERR_CONFIG && strstr(err, "residual"), "write with residual 2 -> GPT_ERR_CONFIG: %s", err);
    free(p), free(p2);
}

static void test_paths(void) {
    char err[512];
    GPTConfig c;
    int rc = st_read_config(path_in("nothing.safetensors"), &c, NULL, err, sizeof err);
    check(rc == ST_ERR_CHECKPOINT && strstr(err, "no such"), "a missing file: %s", err);
    rc = st_read_config(path_in("nothing/deeper.safetensors"), &c, NULL, err, sizeof err);
    check(rc == ST_ERR_CHECKPOINT, "a missing folder: %s", err);
    rc = st_read_config("/dev/null", &c, NULL, err, sizeof err);
    check(rc == ST_ERR_CHECKPOINT, "/dev/null: %s", err);
    mkdir(path_in("empty_dir"), 0777);
    rc = st_read_config(path_in("empty_dir"), &c, NULL, err, sizeof err);
    check(rc == ST_ERR_CHECKPOINT, "an empty directory: %s", err);
    rc = st_read_config(NULL, &c, NULL, err, sizeof err);
    check(rc == GPT_ERR_INPUT, "path NULL: %s", err);
    const char *empty = path_in("empty.safetensors");
    write_file(empty, "", 0);
    rc = st_read_config(empty, &c, NULL, err, sizeof err);
    check(rc == ST_ERR_CHECKPOINT && strstr(err, "truncated"), "an empty file: %s", err);
}

// ---- the seed corpus of fuzz_safetensors: mode byte, then the input (see fuzz_safetensors.c) ----

static int write_seed(const char *dir, const char *name, unsigned char mode, const void *a, size_t na, const void *b, size_t nb) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len = 1 + (b ? 2 : 0) + na + nb;
    unsigned char *buf = malloc(len);
    buf[0] = mode;
    size_t k = 1;
    if (b) buf[k++] = (unsigned char)(na & 0xFF), buf[k++] = (unsigned char)(na >> 8);
    memcpy(buf + k, a, na);
    if (b) memcpy(buf + k + na, b, nb);
    int rc = write_file(path, buf, len);
    free(buf);
    return rc;
}

static int write_seeds(const char *dir) {
    mkdir(dir, 0777);
    GPTConfig c = {1, 1, 2, 2, 3, 1, 1, 1};  // the fuzzer's small config
    float *p = random_params(c), *m = random_params(c), *v = random_moments(c);
    File f = {0};
    size_t len;
    int rc = 0;
    config_meta(f.meta, sizeof f.meta, c, "\"tokenizer\":\"[\\\"a\\\", \\\"b\\\", \\\"\\\\n\\\"]\"");
    add_canonical(&f, c, "", p);
    unsigned char *b = build(&f, &len);
    rc |= write_seed(dir, "single_weights", 0, b, len, NULL, 0);
    free(b);
    file_free(&f);
    config_meta(f.meta, sizeof f.meta, c,
                "\"step\":\"12\",\"adamw\":\"{\\\"beta1\\\": 0.9, \\\"beta2\\\": 0.95, \\\"eps\\\": 1e-08, \\\"weight_decay\\\": 0.1, \\\"grad_clip\\\": null}\"");
    add_canonical(&f, c, "", p);
    add_canonical(&f, c, "optim.m.", m);
    add_canonical(&f, c, "optim.v.", v);
    b = build(&f, &len);
    rc |= write_seed(dir, "single_training", 0, b, len, NULL, 0);
    free(b);
    file_free(&f);
    // F64 and F16 tensors (converted on reading), an F64 lm_head equal to wte, a step with underscores
    config_meta(f.meta, sizeof f.meta, c, "\"step\":\" 1_0 \"");
    add_canonical(&f, c, "", p);
    add_canonical(&f, c, "optim.m.", m);
    add_canonical(&f, c, "optim.v.", v);
    for (int i = 0; i < f.n; i++) {
        T *t = &f.t[i];
        size_t numel = t->nbytes / 4;
        if (i % 3 == 0) {  // F64: the same values
            double *d = malloc(numel * 8);
            for (size_t j = 0; j < numel; j++) d[j] = ((float *)t->data)[j];
            free(t->data);
            t->data = (unsigned char *)d, t->nbytes = numel * 8, t->dtype = "F64";
        } else if (i % 3 == 1) {  // F16: finite halves
            uint16_t *h = malloc(numel * 2);
            for (size_t j = 0; j < numel; j++) h[j] = (uint16_t)(rnd() & 0xBBFF);
            free(t->data);
            t->data = (unsigned char *)h, t->nbytes = numel * 2, t->dtype = "F16";
        }
    }
    T *wte = find_tensor(&f, "wte.weight");
    add_tensor(&f, "transformer.lm_head.weight", wte->dtype, 2, wte->dims, wte->data, wte->nbytes);
    b = build(&f, &len);
    rc |= write_seed(dir, "single_mixed_dtypes", 0, b, len, NULL, 0);
    free(b);
    file_free(&f);
    const char *cfg = "{\"activation_function\": \"gelu_new\", \"n_embd\": 2, \"n_head\": 1, \"n_layer\": 1, "
                      "\"n_positions\": 2, \"vocab_size\": 3, \"n_inner\": null, \"layer_norm_epsilon\": 1e-05}";
    add_canonical(&f, c, "transformer.", p);
    add_tensor(&f, "transformer.h.0.attn.bias", "BOOL", 4, (uint64_t[]){1, 1, 2, 2}, NULL, 4);
    add_tensor(&f, "lm_head.weight", "F32", 2, (uint64_t[]){3, 2}, p, 24);
    b = build(&f, &len);
    rc |= write_seed(dir, "hf_dir", 1, cfg, strlen(cfg), b, len);
    free(b);
    file_free(&f);
    const char *adamw = "{\"beta1\": 0.9, \"beta2\": 0.95, \"eps\": 1e-08, \"weight_decay\": 0.1, \"grad_clip\": 1.0}";
    rc |= write_seed(dir, "adamw", 2, adamw, strlen(adamw), NULL, 0);
    free(p), free(m), free(v);
    printf("seed corpus written to %s\n", dir);
    return rc ? 1 : 0;
}

// a libFuzzer dictionary (-dict=FILE): the words of the format
// seeds for fuzz_json: mode byte, then the text (see fuzz_json.c)
static int write_json_seeds(const char *dir) {
    static const char *const adamw[] = {
        "{\"beta1\": 0.9, \"beta2\": 0.95, \"eps\": 1e-08, \"weight_decay\": 0.1, \"grad_clip\": 1.0}",
        "{\"beta1\": 0.8, \"grad_clip\": null}", "{}", "{\"eps\": true}", "{\"beta2\": 1e400}", "{\"beta1\": -0.0}",
    };
    static const char *const configs[] = {
        "{\"block_size\": 16, \"n_embd\": 16, \"n_head\": 2, \"n_layer\": 2, \"vocab_size\": 29}",
        "{\"block_size\": 16, \"n_embd\": 16, \"n_head\": 2, \"n_layer\": 2, \"residual\": false, \"vocab_size\": 29}",
        "{\"n_layer\": 65536, \"n_head\": 1, \"n_embd\": 4, \"n_positions\": 3, \"vocab_size\": 5}",
        "{\"n_layer\": 1, \"n_head\": 1, \"n_embd\": 4, \"block_size\": 3, \"vocab_size\": 99999999999999999999}",
    };
    char name[32];
    for (size_t i = 0; i < sizeof adamw / sizeof adamw[0]; i++)
        if (write_seed(dir, (snprintf(name, sizeof name, "adamw%zu", i), name), 0, adamw[i], strlen(adamw[i]), NULL, 0))
            return 1;
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        if (write_seed(dir, (snprintf(name, sizeof name, "config%zu", i), name), 2, configs[i], strlen(configs[i]), NULL, 0))
            return 1;
        if (write_seed(dir, (snprintf(name, sizeof name, "hf%zu", i), name), 1, configs[i], strlen(configs[i]), NULL, 0))
            return 1;
    }
    if (write_seed(dir, "hf", 1, HF_CONFIG, strlen(HF_CONFIG), NULL, 0)) return 1;
    return 0;
}

static int write_dict(const char *path) {
    const char *words[] = {
        "\"__metadata__\"", "\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"F32\"", "\"F16\"", "\"F64\"",
        "\"BF16\"", "\"BOOL\"", "\"I64\"", "\"format\"", "\"config\"", "\"step\"", "\"adamw\"",
        "\"gpt-tiers/1\"", "\"wte.weight\"", "\"wpe.weight\"", "\"ln_f.weight\"", "\"ln_f.bias\"",
        "\"h.0.\"", "\"ln_1.weight\"", "\"attn.c_attn.weight\"", "\"mlp.c_proj.bias\"", "\"transformer.\"",
        "\"optim.m.\"", "\"optim.v.\"", "\".attn.bias\"", "\".attn.masked_bias\"", "\"lm_head.weight\"",
        "\"n_layer\"", "\"n_head\"", "\"n_embd\"", "\"block_size\"", "\"n_positions\"", "\"vocab_size\"",
        "\"activation_function\"", "\"gelu_new\"", "\"layer_norm_epsilon\"", "\"scale_attn_weights\"",
        "\"residual\"", "\"position_embedding\"",
        "\"scale_attn_by_inverse_layer_idx\"", "\"tie_word_embeddings\"", "\"n_inner\"", "\"beta1\"",
        "\"grad_clip\"", "\"\\\\u\"", "\"\\\\ud83d\\\\ude00\"", "\"\\\\\\\"\"", "\"null\"", "\"true\"",
        "\"false\"", "\"NaN\"", "\"-Infinity\"", "\"1e-05\"", "\"18446744073709551615\"", "\"\\xff\\xff\\xff\\xff\"",
    };
    FILE *fp = fopen(path, "w");
    if (!fp) return 1;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) fprintf(fp, "%s\n", words[i]);
    return fclose(fp) != 0;
}

// ---- SPEC.md "Limits" ----

// reads a buffer's step (and checks the data) with the file's own config
static int read_step(const void *data, size_t len, int64_t *step, char *err, size_t errlen) {
    GPTConfig c;
    int rc = st_read_config_buffer(data, len, "buf", &c, NULL, err, errlen);
    if (rc) return rc;
    size_t n = nparams(c);
    float *p = malloc(n * 4), *m = malloc(n * 4), *v = malloc(n * 4);
    rc = st_read_checkpoint_buffer(data, len, "buf", c, p, m, v, step, NULL, 0, err, errlen);
    free(p), free(m), free(v);
    return rc;
}

static void test_limits(void) {
    GPTConfig c = SMALL;
    size_t n = nparams(c), len;
    float *p = random_params(c), *m = random_params(c), *v = random_moments(c);
    File f = {0};
    char err[512], more[64];

    // the step is 64 bits: 2^32 + 3 is read exactly (a 32-bit reader wrapped or refused it), and the
    // writer writes what the reader reads
    const int64_t steps[] = {(1LL << 32) + 3, 2147483647, 1LL << 53};
    for (int i = 0; i < 3; i++) {
        config_meta(f.meta, sizeof f.meta, c, (snprintf(more, sizeof more, "\"step\":\"%lld\"", (long long)steps[i]), more));
        add_canonical(&f, c, "", p), add_canonical(&f, c, "optim.m.", m), add_canonical(&f, c, "optim.v.", v);
        unsigned char *b = build(&f, &len);
        int64_t step = -1;
        int rc = read_step(b, len, &step, err, sizeof err);
        check(rc == 0 && step == steps[i], "step %lld read exactly: %lld (%s)", (long long)steps[i], (long long)step, err);
        const char *path = path_in("limits.safetensors");
        rc = st_write_checkpoint(path, c, p, m, v, steps[i], NULL, NULL, 0, err, sizeof err);
        step = -1;
        rc = rc ? rc : st_read_checkpoint(path, c, p, NULL, NULL, &step, NULL, 0, err, sizeof err);
        check(rc == 0 && step == steps[i], "step %lld written and read back: %lld (%s)", (long long)steps[i],
              (long long)step, err);
        free(b);
        file_free(&f);
    }

    // a negative second moment poisons the next step (sqrt(v) is NaN): refused, naming the tensor
    config_meta(f.meta, sizeof f.meta, c, "\"step\":\"5\"");
    add_canonical(&f, c, "", p), add_canonical(&f, c, "optim.m.", m), add_canonical(&f, c, "optim.v.", v);
    T *t = find_tensor(&f, "optim.v.h.0.attn.c_proj.weight");
    ((float *)t->data)[2] = -1e-20f;
    unsigned char *b = build(&f, &len);
    int rc = read_all(b, len, err, sizeof err);
    check(rc == ST_ERR_CHECKPOINT && strstr(err, "second moments: h.0.attn.c_proj.weight holds a negative value"),
          "a negative v in a checkpoint -> ST_ERR_CHECKPOINT: %s", err);
    free(b);
    ((float *)t->data)[2] = -0.0f;
    b = build(&f, &len);
    rc = read_all(b, len, err, sizeof err);
    check(rc == 0, "a v of -0.0 is not negative: %s", err);
    free(b);
    file_free(&f);

    // a small file claiming a huge config: refused at once, before anything is sized from the config
    const struct {
        int n_layer, n_embd, want;
        const char *says;
    } huge[] = {
        {1000000, 4, GPT_ERR_CONFIG, "config.n_layer must be in 1 .. 65536, got 1000000"},
        {65536, 4, ST_ERR_CHECKPOINT, "needs 786436 tensors; the file has 17"},
    };
    for (int i = 0; i < 2; i++) {
        add_canonical(&f, c, "", p);
        add_tensor(&f, "padding", "U8", 1, (uint64_t[]){20000}, NULL, 20000);  // a 20 KB file
        GPTConfig big = c;
        big.n_layer = huge[i].n_layer, big.n_embd = huge[i].n_embd;
        config_meta(f.meta, sizeof f.meta, big, NULL);
        b = build(&f, &len);
        GPTConfig got;
        rc = st_read_config_buffer(b, len, "buf", &got, NULL, err, sizeof err);
        check(rc == huge[i].want && strstr(err, huge[i].says), "%zu bytes, n_layer %d -> %d: %s", len, huge[i].n_layer,
              rc, err);
        free(b);
        file_free(&f);
    }
    // enough tensors listed (empty ones), too few bytes: 2 per parameter at least
    for (int i = 0; i < 16; i++) {
        char name[16];
        snprintf(name, sizeof name, "empty%d", i);
        add_tensor(&f, name, "F32", 1, (uint64_t[]){0}, NULL, 0);
    }
    add_tensor(&f, "padding", "U8", 1, (uint64_t[]){100}, NULL, 100);
    config_meta(f.meta, sizeof f.meta, c, NULL);
    b = build(&f, &len);
    GPTConfig got;
    rc = st_read_config_buffer(b, len, "buf", &got, NULL, err, sizeof err);
    char want[96];
    snprintf(want, sizeof want, "needs %zu bytes of tensor data (2 per parameter); the file has 100", 2 * n);
    check(rc == ST_ERR_CHECKPOINT && strstr(err, want), "17 tensors but 100 bytes of data: %s", err);
    free(b);
    file_free(&f);
    free(p), free(m), free(v);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--seeds")) return write_seeds(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "--dict")) return write_dict(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "--json-seeds")) return write_json_seeds(argv[2]);
    char base[1024];
    const char *t = getenv("TMPDIR");
    snprintf(base, sizeof base, "%s/test_safetensors.XXXXXX", t && t[0] ? t : "/tmp");
    if (!(tmpdir = mkdtemp(base))) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_writer_rejects();
    test_truncation();
    test_header_length();
    test_invalid_json();
    test_tensor_defects();
    test_hf();
    test_ablations();
    test_paths();
    test_limits();
    rm_rf(tmpdir);
    printf("%d checks, %d failed\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
