// train_gpt: the C tier as a program of its own. It trains a GPT on a text file (the character
// tokenizer of shared/tokenizer.py) or on token files of any size (SPEC.md "Token files", read a batch
// at a time), saves and resumes checkpoints (the same safetensors files the Python tiers read), and samples.
// No Python needed, but to make token files:
//
//   make -C impl_c train_gpt
//   impl_c/train_gpt train --data tinyshakespeare.txt --out out/shakespeare-c.safetensors
//   impl_c/train_gpt train --train-bin data/train.bin --val-bin data/val.bin --out out/corpus-c.safetensors
//   impl_c/train_gpt sample --ckpt out/shakespeare-c.safetensors --prompt "ROMEO:"
//
// It follows the spec (shared/SPEC.md) for the model, init, AdamW and the schedule; its random numbers
// come from its own generator (splitmix64), so it does not draw the same batches as the Python tiers.
//
// A mistake is refused before any work (SPEC.md "Limits"), in one line on stderr, "error: ...", and
// nothing on disk changes: every flag is known, given once, and its number read whole and range-checked;
// the config is checked before a byte of the model is allocated, the --out folder before the first step.
// Exit statuses (transformer.py's too): 0 done; 2 a user error (a mistake on the command line, a file,
// the data, a checkpoint's contents, a diverged run, which writes no checkpoint); 1 the system refused
// (out of memory, a read or write that failed); 130 / 143 stopped by SIGINT / SIGTERM, after the step in
// progress and a checkpoint of it.
#define _DEFAULT_SOURCE  // POSIX 2008 (clock_gettime, sigaction) and flock, under -std=c11
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gpt.h"
#include "safetensors.h"
#include "tokens.h"

#define ERRLEN 512
#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif
// exit statuses (SPEC.md "The programs", as transformer.py's): 2 a user error (an option, a file, a
// checkpoint's contents, a diverging run), 1 the system refused (out of memory, a failed read or write)
#define EXIT_USER 2
#define EXIT_SYSTEM 1
#define MAX_STEPS (1LL << 53)     // SPEC.md "Limits": AdamW steps, and every count a checkpoint stores
#define MAX_THREADS 1024

__attribute__((noreturn)) static void fail_with(int status, const char *end, const char *fmt, va_list ap) {
    fprintf(stderr, "error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "%s\n", end);
    exit(status);
}

// a problem with a file, the data or the run: one line, exit status 2
__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fail_with(EXIT_USER, "", fmt, ap);
}

// a mistake on the command line: one line pointing at --help, exit status 2
__attribute__((format(printf, 1, 2), noreturn)) static void usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fail_with(EXIT_USER, " (see train_gpt --help)", fmt, ap);
}

// the system refused (out of memory, a read or write that failed): one line, exit status 1
__attribute__((format(printf, 1, 2), noreturn)) static void die_system(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fail_with(EXIT_SYSTEM, "", fmt, ap);
}

// ---- random numbers: splitmix64, seeded per use so that a resumed run draws what it would have ----

typedef struct {
    uint64_t s;
} Rng;

static uint64_t rng_next(Rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static Rng rng_for(uint64_t seed, uint64_t stream, uint64_t k) {
    Rng r = {seed * 0x2545F4914F6CDD1Dull ^ (stream << 48) ^ k};
    rng_next(&r);
    return r;
}

static double rng_uniform(Rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }  // [0, 1)

static double rng_normal(Rng *r) {  // Box-Muller
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

// ---- the character tokenizer: one token per distinct character (code point), sorted ----

#define N_CODE_POINTS 0x110000

typedef struct {
    int n;
    uint32_t *chars;  // sorted code points; the id of a character is its index
    char *json;       // or NULL: the tokenizer's JSON as given (tokenizer.json beside token files, or a
                      // checkpoint's), stored in checkpoints as it is; chars is NULL when it is not
                      // the character tokenizer's
} Tokenizer;

// bytes in the UTF-8 sequence that starts with lead byte c; 0 if c cannot start one
static int utf8_width(unsigned char c) {
    return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
}

// the code point that starts s (len > 0 bytes left) into *c; returns its length in bytes, or 0 when s
// does not start with one. Strict, as Python decodes: no overlong forms, surrogates or past U+10FFFF.
static int utf8_next(const unsigned char *s, size_t len, uint32_t *c) {
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    int w = utf8_width(s[0]);
    if (w == 0 || (size_t)w > len) return 0;
    uint32_t v = w == 1 ? s[0] : s[0] & (0x7F >> w);
    for (int k = 1; k < w; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[k] & 0x3F);
    }
    if (v < least[w] || v >= N_CODE_POINTS || (v >= 0xD800 && v < 0xE000)) return 0;
    *c = v;
    return w;
}

// UTF-8 -> code points; returns the count, or -1 on invalid UTF-8
static long utf8_decode(const unsigned char *s, size_t len, uint32_t *out) {
    long n = 0;
    for (size_t i = 0; i < len; n++) {
        int w = utf8_next(s + i, len - i, &out[n]);
        if (w == 0) return -1;
        i += (size_t)w;
    }
    return n;
}

static int utf8_valid(const unsigned char *s, size_t len) {
    uint32_t c;
    for (size_t i = 0, w; i < len; i += w)
        if ((w = (size_t)utf8_next(s + i, len - i, &c)) == 0) return 0;
    return 1;
}
static int utf8_encode(uint32_t c, char *out) {
    if (c < 0x80) { out[0] = (char)c; return 1; }
    if (c < 0x800) { out[0] = (char)(0xC0 | (c >> 6)); out[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12)); out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F)); return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18)); out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F)); out[3] = (char)(0x80 | (c & 0x3F)); return 4;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

// the character tokenizer of a text: its distinct characters, in code point order (a table of which
// code points occur, not a sorted copy of the text); dies when the text is not UTF-8
static Tokenizer tokenizer_from_text(const unsigned char *text, size_t len, const char *path) {
    unsigned char *seen = calloc(N_CODE_POINTS, 1);
    if (!seen) die_system("out of memory");
    uint32_t c;
    for (size_t i = 0, w; i < len; i += w) {
        if ((w = (size_t)utf8_next(text + i, len - i, &c)) == 0) die("%s is not UTF-8 text (byte %zu)", path, i);
        seen[c] = 1;
    }
    Tokenizer t = {0, NULL, NULL};
    for (uint32_t k = 0; k < N_CODE_POINTS; k++) t.n += seen[k];
    if (!(t.chars = malloc(sizeof(uint32_t) * (size_t)t.n))) die_system("out of memory");
    for (uint32_t k = 0, i = 0; k < N_CODE_POINTS; k++)
        if (seen[k]) t.chars[i++] = k;
    free(seen);
    return t;
}

static int tokenizer_id(const Tokenizer *t, uint32_t c) {
    uint32_t *p = bsearch(&c, t->chars, t->n, sizeof(uint32_t), cmp_u32);
    return p ? (int)(p - t->chars) : -1;
}

// the tokenizer as checkpoint metadata: a JSON string of its characters (shared/tokenizer.py to_json)
static char *tokenizer_to_json(const Tokenizer *t) {
    char *out = malloc((size_t)t->n * 12 + 3), *p = out;
    if (!out) die_system("out of memory");
    *p++ = '"';
    for (int i = 0; i < t->n; i++) {
        uint32_t c = t->chars[i];
        if (c == '"' || c == '\\') { *p++ = '\\'; *p++ = (char)c; }
        else if (c >= 0x20 && c < 0x7F) *p++ = (char)c;
        else if (c < 0x10000) p += sprintf(p, "\\u%04x", (unsigned)c);
        else {  // a surrogate pair
            uint32_t v = c - 0x10000;
            p += sprintf(p, "\\u%04x\\u%04x", (unsigned)(0xD800 + (v >> 10)), (unsigned)(0xDC00 + (v & 0x3FF)));
        }
    }
    *p++ = '"';
    *p = 0;
    return out;
}

static int hex4(const char *s, uint32_t *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int c = s[i], d = isdigit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        *v = *v * 16 + (uint32_t)d;
    }
    return 1;
}

// parses a JSON string (as written by tokenizer_to_json or Python's json.dumps); 0 on success
static int tokenizer_from_json(const char *s, Tokenizer *t) {
    size_t len = strlen(s);
    if (len < 2 || s[0] != '"' || s[len - 1] != '"') return -1;
    uint32_t *chars = malloc(len * sizeof(uint32_t));
    if (!chars) return -1;
    int n = 0;
    for (size_t i = 1; i < len - 1;) {
        uint32_t c;
        if (s[i] == '\\') {
            char e = s[i + 1];
            const char *simple = strchr("\"\\/bfnrt", e);
            if (e && simple) {
                c = (uint32_t) "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
                i += 2;
            } else if (e == 'u' && i + 6 <= len - 1 && hex4(s + i + 2, &c)) {
                i += 6;
                uint32_t lo;
                if (c >= 0xD800 && c < 0xDC00 && s[i] == '\\' && s[i + 1] == 'u' && hex4(s + i + 2, &lo)) {
                    c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
            } else { free(chars); return -1; }
        } else {
            int w = utf8_width((unsigned char)s[i]);
            if (w == 0 || i + w > len - 1 || utf8_decode((const unsigned char *)s + i, w, &c) != 1) {
                free(chars);
                return -1;
            }
            i += w;
        }
        chars[n++] = c;
    }
    for (int i = 1; i < n; i++)
        if (chars[i] <= chars[i - 1]) { free(chars); return -1; }  // sorted and distinct, as written
    t->n = n;
    t->chars = chars;
    return 0;
}

// ---- data: a text file (tokenized here), or token files (SPEC.md "Token files", read by tokens.c) ----

typedef struct {
    const unsigned char *ids;  // a text's ids in memory, id_bytes (1, 2 or 4) each; NULL for a token file:
    int id_bytes;
    const TokenFile *file;     // its ids, read window by window as batches need them
    long n;
} Split;

// opens path for reading, a regular file only: a folder, a FIFO or a device is refused by name, and a
// FIFO does not block the open (O_NONBLOCK)
static int open_regular(const char *path, const char *what, struct stat *st) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 && errno == ENOENT) die("%s %s: no such file", what, path);
    if (fd < 0) die("%s %s: %s", what, path, strerror(errno));
    if (fstat(fd, st) != 0) die("%s %s: %s", what, path, strerror(errno));
    if (S_ISDIR(st->st_mode)) die("%s %s is a directory, not a file", what, path);
    if (!S_ISREG(st->st_mode)) die("%s %s is not a regular file", what, path);
    return fd;
}

// the whole of a regular file (a text, tokenizer.json), NUL-terminated; dies with a message when it cannot
static unsigned char *read_file(const char *path, const char *what, size_t *len) {
    struct stat st;
    int fd = open_regular(path, what, &st);
    if ((uint64_t)st.st_size >= SIZE_MAX / 4) die("%s %s is too large to read into memory", what, path);
    size_t size = (size_t)st.st_size, got = 0;
    unsigned char *buf = malloc(size + 1);
    if (!buf) die("%s %s: out of memory reading %zu bytes", what, path, size);
    while (got < size) {
        ssize_t k = read(fd, buf + got, size - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) die("%s %s: %s", what, path, k < 0 ? strerror(errno) : "the file shrank while being read");
        got += (size_t)k;
    }
    close(fd);
    buf[size] = 0;
    *len = size;
    return buf;
}

static int32_t text_id(const Split *s, long i) {
    if (s->id_bytes == 1) return s->ids[i];
    if (s->id_bytes == 2) return ((const uint16_t *)s->ids)[i];
    return ((const int32_t *)s->ids)[i];
}

// ids [ix, ix + T] of a split into window (T + 1 of them); a token file's are checked as they are read
// (the writer checked them too, but the file may have changed since)
static void read_window(const Split *s, long ix, int T, int32_t *window) {
    if (s->ids) {
        for (int t = 0; t <= T; t++) window[t] = text_id(s, ix + t);
        return;
    }
    char err[ERRLEN];
    uint32_t *ids = (uint32_t *)window;
    if (tok_read(s->file, (uint64_t)ix, (size_t)T + 1, ids, err, sizeof err) != 0) die_system("%s", err);
    for (int t = 0; t <= T; t++) {
        if (ids[t] >= (uint32_t)s->file->h.vocab_size)
            die("%s: token id %u at position %ld is outside [0, %d): the file is corrupt", s->file->path,
                (unsigned)ids[t], ix + t, s->file->h.vocab_size);
        window[t] = (int32_t)ids[t];
    }
}

static void get_batch(const Split *s, int B, int T, Rng *r, int32_t *x, int32_t *y) {
    int32_t *window = malloc(sizeof(int32_t) * ((size_t)T + 1));
    if (!window) die_system("out of memory");
    for (int b = 0; b < B; b++) {
        long ix = (long)(rng_uniform(r) * (double)(s->n - T));
        read_window(s, ix, T, window);
        memcpy(x + (size_t)b * T, window, T * sizeof(int32_t));
        memcpy(y + (size_t)b * T, window + 1, T * sizeof(int32_t));
    }
    free(window);
}

typedef struct {
    Split train, val;
    unsigned char *text_ids;  // a text's ids (train and val point into them)
    TokenFile train_file, val_file;  // token files (train and val read from them)
} Data;

// a text's ids, 1, 2 or 4 bytes each as the vocabulary needs; for 1 byte they are written over the text
// itself (an id never takes more bytes than its character), so a text takes its size in memory once
static unsigned char *text_to_ids(unsigned char *text, size_t len, const Tokenizer *tok, const char *path, long *n) {
    int32_t *id_of = malloc(sizeof(int32_t) * N_CODE_POINTS);  // code point -> id, or -1
    if (!id_of) die_system("out of memory");
    for (uint32_t c = 0; c < N_CODE_POINTS; c++) id_of[c] = -1;
    for (int i = 0; i < tok->n; i++)
        if (tok->chars[i] < N_CODE_POINTS) id_of[tok->chars[i]] = i;
    int width = tok->n <= 256 ? 1 : tok->n <= 65536 ? 2 : 4;
    unsigned char *ids = width == 1 ? text : malloc(len * (size_t)width);
    if (!ids) die("%s: out of memory for its %zu characters' ids", path, len);
    uint32_t c;
    *n = 0;
    for (size_t i = 0, w; i < len; i += w, (*n)++) {
        if ((w = (size_t)utf8_next(text + i, len - i, &c)) == 0) die("%s is not UTF-8 text (byte %zu)", path, i);
        int32_t id = id_of[c];
        if (id < 0) die("%s has a character (U+%04X) the checkpoint's tokenizer lacks", path, (unsigned)c);
        if (width == 1) ids[*n] = (unsigned char)id;  // *n <= i: the bytes of the character are read already
        else if (width == 2) ((uint16_t *)ids)[*n] = (uint16_t)id;
        else ((int32_t *)ids)[*n] = id;
    }
    free(id_of);
    if (width != 1) free(text);
    return ids;
}

// a text, by character: the first 90% train, the rest val (shared/data.py CharDataset). Without a
// tokenizer (a new run) it is made from the text's characters.
static void data_from_text(Data *d, const char *path, Tokenizer *tok) {
    if (!tok->chars && tok->json) die("the checkpoint's tokenizer is not the character tokenizer: resume on its token files");
    size_t len;
    unsigned char *text = read_file(path, "--data", &len);
    if (!tok->chars) *tok = tokenizer_from_text(text, len, path);
    long n;
    d->text_ids = text_to_ids(text, len, tok, path, &n);
    if (n < 2) die("%s is not UTF-8 text of 2 characters or more", path);
    int width = tok->n <= 256 ? 1 : tok->n <= 65536 ? 2 : 4;
    long n_train = (long)(0.9 * n);
    d->train = (Split){d->text_ids, width, NULL, n_train};
    d->val = (Split){d->text_ids + (size_t)n_train * width, width, NULL, n - n_train};
}

// FOLDER/tokenizer.json beside a token file (SPEC.md "Token files"): its text, trailing whitespace
// cut, or NULL when there is none
static char *tokenizer_beside(const char *token_path) {
    const char *slash = strrchr(token_path, '/');
    size_t dir = slash ? (size_t)(slash - token_path) + 1 : 0;
    char *path = malloc(dir + sizeof "tokenizer.json");
    if (!path) die_system("out of memory");
    memcpy(path, token_path, dir);
    strcpy(path + dir, "tokenizer.json");
    struct stat st;
    char *json = NULL;
    if (lstat(path, &st) == 0) {
        size_t len;
        json = (char *)read_file(path, "the tokenizer", &len);
        if (strlen(json) != len || !utf8_valid((unsigned char *)json, len)) die("%s is not UTF-8 text", path);
        while (len > 0 && isspace((unsigned char)json[len - 1])) json[--len] = 0;
    }
    free(path);
    return json;
}

// token files: their vocab_size is the model's (given by --vocab-size V, if at all, and on resume the
// checkpoint's); tokenizer.json beside the train file becomes the checkpoint's tokenizer
static void data_from_token_files(Data *d, const char *train_path, const char *val_path, Tokenizer *tok) {
    char err[ERRLEN];
    if (tok_open(train_path, &d->train_file, err, sizeof err) != 0) die("%s", err);
    if (tok_open(val_path, &d->val_file, err, sizeof err) != 0) die("%s", err);
    const TokenHeader *h = &d->train_file.h, *hv = &d->val_file.h;
    if (hv->vocab_size != h->vocab_size || strcmp(hv->kind, h->kind) != 0)
        die("the train and val token files disagree on vocab_size or tokenizer kind");
    if (h->count > (uint64_t)LONG_MAX || hv->count > (uint64_t)LONG_MAX) die("a token file too large for this machine's long");
    d->train = (Split){NULL, 0, &d->train_file, (long)h->count};
    d->val = (Split){NULL, 0, &d->val_file, (long)hv->count};
    if (tok->chars || tok->json) return;  // resuming: the checkpoint's tokenizer
    int V = h->vocab_size;
    tok->json = tokenizer_beside(train_path);
    // a character tokenizer's JSON string gives this program its characters, to sample from the
    // checkpoint later; any other tokenizer travels as its JSON alone
    if (tok->json && tokenizer_from_json(tok->json, tok) == 0) {
        if (strcmp(h->kind, "char") != 0 || tok->n != V)
            die("tokenizer.json beside the token files is a character tokenizer that does not match their header");
        return;
    }
    tok->n = V;
    if (tok->json) return;
    // V placeholder characters keep checkpoints uniform where there is no tokenizer.json: U+0100 + id,
    // past the surrogates (U+D800..U+DFFF, which JSON would pair into other characters)
    if ((uint32_t)V > 0x10FFFF + 1 - 0x100 - 0x800) die("a vocabulary this large needs a tokenizer.json beside the token files");
    tok->chars = malloc(sizeof(uint32_t) * (size_t)V);
    if (!tok->chars) die_system("out of memory");
    for (int i = 0; i < V; i++) tok->chars[i] = 0x100 + (uint32_t)i + (0x100 + (uint32_t)i >= 0xD800 ? 0x800 : 0);
}

static void data_free(Data *d) {
    free(d->text_ids);
    if (d->train.file) tok_close(&d->train_file);  // a zeroed TokenFile's fd 0 is not ours to close
    if (d->val.file) tok_close(&d->val_file);
}
// ---- init (SPEC.md "Init"): the spec's distributions, drawn from this program's generator ----

static void init_params(GPT *m, uint64_t seed) {
    GPTConfig c = gpt_config(m);
    float *p = gpt_params(m);
    Rng r = rng_for(seed, 1, 0);
    char name[128];
    for (int i = 0; i < gpt_num_tensors(c); i++) {
        size_t n = gpt_tensor_numel(c, i);
        gpt_tensor_name(c, i, name, sizeof name);
        size_t len = strlen(name);
        int is_ln_w = strstr(name, "ln_") && strcmp(name + len - 7, ".weight") == 0;
        int is_bias = strcmp(name + len - 5, ".bias") == 0;
        double std = strstr(name, "c_proj.weight") ? 0.02 / sqrt(2.0 * c.n_layer) : 0.02;
        for (size_t k = 0; k < n; k++) p[k] = is_ln_w ? 1.0f : is_bias ? 0.0f : (float)(std * rng_normal(&r));
        p += n;
    }
}

// ---- the schedule (shared/schedule.py lr_at) ----

static double lr_at(int64_t step, double max_lr, double min_lr, int64_t warmup, int64_t decay) {
    if (step < warmup) return max_lr * (double)(step + 1) / (double)(warmup + 1);
    if (step >= decay) return min_lr;
    double ratio = (double)(step - warmup) / (double)(decay - warmup > 1 ? decay - warmup : 1);
    return min_lr + 0.5 * (1.0 + cos(M_PI * ratio)) * (max_lr - min_lr);
}

// ---- settings: transformer.py's "train_settings", and the AdamW settings ("adamw") ----

typedef struct {
    int64_t steps, batch_size, warmup_steps, decay_steps, eval_interval, eval_iters, seed;
    double lr, min_lr, beta1, beta2, eps, weight_decay, grad_clip;  // grad_clip < 0: none (null)
} Settings;

static char *settings_to_json(const Settings *s) {
    char *out = malloc(512);
    if (!out) die_system("out of memory");
    snprintf(out, 512,
             "{\"steps\": %lld, \"batch_size\": %lld, \"lr\": %.17g, \"min_lr\": %.17g, \"warmup_steps\": %lld, "
             "\"decay_steps\": %lld, \"eval_interval\": %lld, \"eval_iters\": %lld, \"seed\": %lld}",
             (long long)s->steps, (long long)s->batch_size, s->lr, s->min_lr, (long long)s->warmup_steps,
             (long long)s->decay_steps, (long long)s->eval_interval, (long long)s->eval_iters, (long long)s->seed);
    return out;
}

// a number stored under "key" in a flat JSON object we wrote ourselves; 0 when found
static int json_number(const char *json, const char *key, double *out) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *p = strstr(json, pattern);
    if (!p) return -1;
    p += strlen(pattern);
    char *end;
    errno = 0;
    double v = strtod(p, &end);
    if (end == p || errno) return -1;
    *out = v;
    return 0;
}

// an integer setting of a checkpoint, in the range its flag takes (a file is checked as a flag is)
static int64_t json_int(const char *json, const char *key, int64_t fallback, int64_t lo, int64_t hi, const char *path) {
    double v;
    if (json_number(json, key, &v) != 0) return fallback;
    if (!(v >= (double)lo && v <= (double)hi && v == floor(v)))
        die("%s: train_settings %s %.17g is not an integer from %lld to %lld", path, key, v, (long long)lo, (long long)hi);
    return (int64_t)v;
}

static void settings_from_json(Settings *s, const char *json, const char *path) {
    s->steps = json_int(json, "steps", s->steps, 1, MAX_STEPS, path);
    s->batch_size = json_int(json, "batch_size", s->batch_size, 1, INT_MAX, path);
    s->warmup_steps = json_int(json, "warmup_steps", s->warmup_steps, 0, MAX_STEPS, path);
    s->decay_steps = json_int(json, "decay_steps", s->decay_steps, 0, MAX_STEPS, path);
    s->eval_interval = json_int(json, "eval_interval", s->eval_interval, 1, MAX_STEPS, path);
    s->eval_iters = json_int(json, "eval_iters", s->eval_iters, 1, MAX_STEPS, path);
    s->seed = json_int(json, "seed", s->seed, 0, MAX_STEPS, path);
    double v;
    if (json_number(json, "lr", &v) == 0 && !(isfinite(s->lr = v) && v > 0))
        die("%s: train_settings lr %.17g is not a finite number above 0", path, v);
    if (json_number(json, "min_lr", &v) == 0 && !(isfinite(s->min_lr = v) && v >= 0))
        die("%s: train_settings min_lr %.17g is not a finite number at least 0", path, v);
}

// SPEC.md "Limits": AdamWConfig's ranges, which the Python reader holds a checkpoint's "adamw" to
static void check_adamw(const Settings *s, const char *path) {
    int clip_ok = s->grad_clip < 0 || (s->grad_clip > 0 && isfinite(s->grad_clip));  // < 0: null, no clipping
    if (!(s->beta1 >= 0 && s->beta1 < 1 && s->beta2 >= 0 && s->beta2 < 1 && s->eps > 0 && isfinite(s->eps) &&
          s->weight_decay >= 0 && isfinite(s->weight_decay) && clip_ok))
        die("%s: AdamW settings out of range (beta1 %g, beta2 %g, eps %g, weight_decay %g, grad_clip %g): betas "
            "must be in [0, 1), eps > 0, weight_decay >= 0, grad_clip null or > 0", path, s->beta1, s->beta2, s->eps,
            s->weight_decay, s->grad_clip);
}

// ---- evaluation ----

static double estimate_loss(GPT *m, const Split *s, int B, int64_t iters, uint64_t seed) {
    int T = gpt_config(m).block_size;
    int32_t *x = malloc(sizeof(int32_t) * B * T), *y = malloc(sizeof(int32_t) * B * T);
    if (!x || !y) die_system("out of memory");
    double total = 0.0;
    for (int64_t k = 0; k < iters; k++) {
        Rng r = rng_for(seed, 3, (uint64_t)k);
        get_batch(s, B, T, &r, x, y);
        float loss;
        if (gpt_forward(m, x, y, B, T, &loss) != GPT_OK) die("%s", gpt_error(m));
        total += loss;
    }
    free(x);
    free(y);
    return total / (double)iters;
}

// ---- sampling (SPEC.md "Generation": temperature, top-k, the window rule) with the KV cache ----

// p[i] = exp((logit_i - max) / temperature): the largest is exp(0) = 1 and none overflows, so a tiny
// temperature (1e-300) leaves the greedy token alone, not a NaN distribution
static int sample_token(const float *logits, int V, double temperature, int top_k, Rng *r) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (temperature == 0.0) return best;
    double *p = malloc(V * sizeof(double));
    if (!p) die_system("out of memory");
    double kth = -INFINITY;
    if (top_k > 0 && top_k < V) {  // the k-th largest logit: ties with it are kept
        for (int i = 0; i < V; i++) p[i] = logits[i];
        for (int k = 0; k < top_k; k++) {
            int arg = -1;
            for (int i = 0; i < V; i++)
                if (p[i] != -INFINITY && (arg < 0 || p[i] > p[arg])) arg = i;
            kth = p[arg];
            p[arg] = -INFINITY;
        }
    }
    double total = 0.0;
    for (int i = 0; i < V; i++) {
        double z = ((double)logits[i] - logits[best]) / temperature;  // <= 0, or -inf
        p[i] = logits[i] < kth || !(z > -INFINITY) ? 0.0 : exp(z);
        total += p[i];
    }
    double u = rng_uniform(r) * total, cdf = 0.0;
    int token = best;  // total >= 1 (the best's own exp(0)); a rounding past the last cdf keeps the best
    for (int i = 0; i < V; i++) {
        cdf += p[i];
        if (cdf > u) { token = i; break; }
    }
    free(p);
    return token;
}

// prints the prompt and max_new sampled tokens; keeps the last block_size tokens only (all the window
// rule needs), so max_new is bounded by time alone
static void generate(GPT *m, const Tokenizer *tok, const int32_t *prompt, int n_prompt, int64_t max_new,
                     double temperature, int top_k, uint64_t seed) {
    GPTConfig c = gpt_config(m);
    int V = c.vocab_size, cap = 2 * c.block_size, len = n_prompt, cached = 0;  // n_prompt <= block_size
    int32_t *seq = malloc(sizeof(int32_t) * cap);
    float *logits = malloc(sizeof(float) * (size_t)c.block_size * V);
    if (!seq || !logits) die_system("out of memory");
    memcpy(seq, prompt, sizeof(int32_t) * n_prompt);
    Rng r = rng_for(seed, 4, 0);
    char utf8[4];
    for (int i = 0; i < n_prompt; i++) fwrite(utf8, 1, utf8_encode(tok->chars[prompt[i]], utf8), stdout);
    for (int64_t k = 0; k < max_new; k++) {
        const float *last;
        if (len == cap) {  // keep the last block_size
            memmove(seq, seq + len - c.block_size, sizeof(int32_t) * c.block_size);
            len = c.block_size;
        }
        if (cached == 0 || cached == c.block_size) {  // empty or full: rebuild from the last block_size
            int w = len < c.block_size ? len : c.block_size;
            if (gpt_cache_reset(m, 1) != GPT_OK || gpt_cache_forward(m, seq + len - w, 1, w, logits) != GPT_OK)
                die("%s", gpt_error(m));
            cached = w;
            last = logits + (size_t)(w - 1) * V;
        } else {
            if (gpt_cache_forward(m, seq + len - 1, 1, 1, logits) != GPT_OK) die("%s", gpt_error(m));
            cached++;
            last = logits;
        }
        seq[len++] = sample_token(last, V, temperature, top_k, &r);
        fwrite(utf8, 1, utf8_encode(tok->chars[seq[len - 1]], utf8), stdout);
        fflush(stdout);
    }
    printf("\n");
    free(seq);
    free(logits);
}
// ---- checkpoints (safetensors.c): weights, AdamW state, tokenizer and settings ----

static void save(GPT *m, const char *path, const Tokenizer *tok, const Settings *s) {
    char err[ERRLEN], adamw[256];
    char *tok_json = tok->json ? tok->json : tokenizer_to_json(tok), *settings = settings_to_json(s);
    if (s->grad_clip > 0)
        snprintf(adamw, sizeof adamw, "{\"beta1\": %.17g, \"beta2\": %.17g, \"eps\": %.17g, \"weight_decay\": %.17g, \"grad_clip\": %.17g}",
                 s->beta1, s->beta2, s->eps, s->weight_decay, s->grad_clip);
    else
        snprintf(adamw, sizeof adamw, "{\"beta1\": %.17g, \"beta2\": %.17g, \"eps\": %.17g, \"weight_decay\": %.17g, \"grad_clip\": null}",
                 s->beta1, s->beta2, s->eps, s->weight_decay);
    const char *keys[] = {"tokenizer", "train_settings", "adamw"};
    const char *values[] = {tok_json, settings, adamw};
    int64_t step = gpt_get_step(m);
    if (st_write_checkpoint(path, gpt_config(m), gpt_params(m), gpt_adam_m(m), gpt_adam_v(m), step,
                            keys, values, 3, err, sizeof err) != 0)
        die_system("%s", err);  // the folder was checked before the first step: the disk refused
    if (tok_json != tok->json) free(tok_json);
    free(settings);
}

// a metadata value of any size (a BPE tokenizer's JSON is megabytes), NULL when the key is absent
static char *metadata(const char *path, const char *key) {
    char err[ERRLEN];
    for (size_t cap = 1 << 16;; cap *= 2) {
        char *buf = malloc(cap);
        if (!buf) die_system("out of memory");
        int rc = st_get_metadata(path, key, buf, cap, err, sizeof err);
        if (rc == GPT_OK) return buf;
        free(buf);
        if (rc == ST_ERR_NOT_FOUND) return NULL;
        if (rc != ST_ERR_BUFFER || cap > ST_MAX_HEADER) die("%s", err);
    }
}

// what a checkpoint holds besides its tensors, read from its header alone: the config (returned), the
// tokenizer, the settings (*has_settings: a training checkpoint's "train_settings"), the step (*step)
static GPTConfig load_header(const char *path, Tokenizer *tok, Settings *s, int *has_settings, int64_t *step) {
    char err[ERRLEN];
    GPTConfig c;
    if (st_read_config(path, &c, NULL, err, sizeof err) != 0) die("%s", err);
    *tok = (Tokenizer){0, NULL, metadata(path, "tokenizer")};
    if (!tok->json) die("%s has no tokenizer in its metadata (saved by train_gpt or transformer.py?)", path);
    if (tokenizer_from_json(tok->json, tok) == 0) {  // the character tokenizer (else kept as JSON only)
        if (tok->n != c.vocab_size) die("%s: the tokenizer's size does not match the config's vocab_size", path);
        free(tok->json);
        tok->json = NULL;
    }
    tok->n = c.vocab_size;
    char *buf = metadata(path, "train_settings");
    *has_settings = buf != NULL;
    if (buf) settings_from_json(s, buf, path);
    free(buf);
    if ((buf = metadata(path, "adamw"))) {
        int rc = st_parse_adamw(buf, &s->beta1, &s->beta2, &s->eps, &s->weight_decay, &s->grad_clip, err, sizeof err);
        free(buf);
        if (rc != 0) die("%s", err);
        check_adamw(s, path);
    }
    *step = (buf = metadata(path, "step")) ? strtoll(buf, NULL, 10) : 0;  // the reader checks it (below)
    free(buf);
    return c;
}

// the model of a checkpoint whose header load_header read
static GPT *load_weights(const char *path, GPTConfig c) {
    char err[ERRLEN];
    int has_optimizer;
    if (st_read_config(path, &c, &has_optimizer, err, sizeof err) != 0) die("%s", err);
    GPT *m = gpt_create(c, err, sizeof err);
    if (!m) die("%s", err);
    int64_t step = 0;  // SPEC.md "Limits": 0 .. 2^53, checked by the reader
    if (st_read_checkpoint(path, c, gpt_params(m), has_optimizer ? gpt_adam_m(m) : NULL,
                           has_optimizer ? gpt_adam_v(m) : NULL, &step, NULL, 0, err, sizeof err) != 0)
        die("%s", err);
    if (gpt_set_step(m, step) != GPT_OK) die("%s", gpt_error(m));
    return m;
}
// ---- the command line: every flag known and given at most once, every number read whole and in range ----

static const char *const TRAIN_FLAGS[] = {  // each takes a value
    "--data", "--train-bin", "--val-bin", "--vocab-size", "--resume", "--out", "--n-layer", "--n-head", "--n-embd",
    "--block-size", "--steps", "--batch-size", "--lr", "--min-lr", "--warmup", "--decay-steps", "--eval-interval",
    "--eval-iters", "--seed", "--threads", NULL};
static const char *const TRAIN_SWITCHES[] = {"--no-scale-attn-weights", "--no-residual", "--no-position-embedding", NULL};
static const char *const SAMPLE_FLAGS[] = {"--ckpt", "--prompt", "--tokens", "--temperature", "--top-k", "--seed",
                                           "--threads", NULL};
static const char *const NO_SWITCHES[] = {NULL};

typedef struct {
    int n;
    const char *name[32], *value[32];  // value NULL for a switch
} Options;

static void usage(void) {
    printf(
        "usage:\n"
        "  train_gpt train --data TEXT [options]       train with the character tokenizer\n"
        "  train_gpt train --train-bin F --val-bin F [--vocab-size V] [options]   train on token files\n"
        "      (SPEC.md \"Token files\": a 1024-byte header, then uint16 or uint32 ids; make them with\n"
        "      `python transformer.py prepare ...`; a tokenizer.json beside F goes into the checkpoint)\n"
        "  train_gpt train --resume CKPT (--data TEXT | --train-bin F --val-bin F) [--steps N] [--threads N]\n"
        "      continue a run exactly, with its own settings, writing back to CKPT; --steps N (at least the\n"
        "      checkpoint's step) sets a new total; another flag may only repeat the checkpoint's value\n"
        "  train_gpt sample --ckpt CKPT [--prompt S] [--tokens N] [--temperature T] [--top-k K] [--seed S]\n"
        "      [--threads N]\n"
        "train options (defaults: the shakespeare config and transformer.py's run):\n"
        "  --n-layer 4 --n-head 4 --n-embd 128 --block-size 64   the model (SPEC.md \"Limits\")\n"
        "  --no-scale-attn-weights --no-residual --no-position-embedding   the ablations (SPEC.md \"Ablations\")\n"
        "  --steps 2000 --batch-size 12 --lr 3e-3 --min-lr LR/10 --warmup min(100,STEPS/10) --decay-steps STEPS\n"
        "  --eval-interval 250 --eval-iters 20 --seed 1337 --threads N (0: all cores)\n"
        "  --out out/shakespeare-c.safetensors   saved at every evaluation; OUT.lock is held for the run (one\n"
        "      run per OUT, transformer.py's too), and OUT.*.tmp files a killed run left are removed\n"
        "Ctrl-C (SIGINT) or SIGTERM: the step in progress ends, a checkpoint of it is saved and the command\n"
        "that resumes it printed.\n"
        "exit status: 0 done; 2 a user error (the command line, a file, the data, a checkpoint, a diverged\n"
        "  run, which saves nothing); 1 the system refused (out of memory, a failed read or write);\n"
        "  130 / 143 stopped by SIGINT / SIGTERM, its checkpoint saved\n");
}

static int listed(const char *const *list, const char *s) {
    for (; *list; list++)
        if (strcmp(*list, s) == 0) return 1;
    return 0;
}

static const char *opt_str(const Options *o, const char *name) {
    for (int i = 0; i < o->n; i++)
        if (strcmp(o->name[i], name) == 0) return o->value[i] ? o->value[i] : "";
    return NULL;
}

static Options parse_options(int argc, char **argv, const char *const *flags, const char *const *switches) {
    Options o = {0};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) { usage(); exit(0); }
        int takes_value = listed(flags, a);
        if (!takes_value && !listed(switches, a))
            usage_error(a[0] == '-' ? "unknown option %s for %s" : "unexpected argument '%s' for %s", a, argv[1]);
        if (opt_str(&o, a)) usage_error("%s is given twice", a);
        if (takes_value && i + 1 == argc) usage_error("%s needs a value", a);
        o.name[o.n] = a;
        o.value[o.n++] = takes_value ? argv[++i] : NULL;
    }
    return o;
}

// a whole decimal integer in [lo, hi] (strtoll: "12abc" and 99999999999999999999 are refused, not cut)
static int64_t parse_int(const char *flag, const char *s, int64_t lo, int64_t hi) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || isspace((unsigned char)*s)) usage_error("%s '%s' is not an integer", flag, s);
    if (errno == ERANGE || v < lo || v > hi) {
        char top[24];
        snprintf(top, sizeof top, hi == MAX_STEPS ? "2^53" : "%lld", (long long)hi);
        usage_error("%s %s is out of range: it must be an integer from %lld to %s", flag, s, (long long)lo, top);
    }
    return v;
}

// a whole finite number, at least lo (above it when strict)
static double parse_num(const char *flag, const char *s, double lo, int strict) {
    char *end;
    double v = strtod(s, &end);  // an underflow to 0 or a subnormal is a number; an overflow is inf, refused
    if (end == s || *end || isspace((unsigned char)*s)) usage_error("%s '%s' is not a number", flag, s);
    if (!isfinite(v) || v < lo || (strict && v == lo))
        usage_error("%s %s is out of range: it must be a finite number %s %g", flag, s, strict ? "above" : "at least", lo);
    return v;
}

static int64_t opt_int(const Options *o, const char *flag, int64_t fallback, int64_t lo, int64_t hi) {
    const char *s = opt_str(o, flag);
    return s ? parse_int(flag, s, lo, hi) : fallback;
}

// a setting's value: the flag's on a new run (else *current, the default); on a resume (ckpt not NULL)
// the checkpoint's, which the flag may repeat but not change
static void setting_int(const Options *o, const char *flag, int64_t *current, int64_t lo, int64_t hi, const char *ckpt) {
    const char *s = opt_str(o, flag);
    if (!s) return;
    int64_t v = parse_int(flag, s, lo, hi);
    if (ckpt && v != *current)
        usage_error("%s %s, but %s was trained with %s %lld: a resumed run keeps its settings (only --steps may change)",
                    flag, s, ckpt, flag + 2, (long long)*current);
    *current = v;
}

static void setting_num(const Options *o, const char *flag, double *current, double lo, int strict, const char *ckpt) {
    const char *s = opt_str(o, flag);
    if (!s) return;
    double v = parse_num(flag, s, lo, strict);
    if (ckpt && v != *current)
        usage_error("%s %s, but %s was trained with %s %.17g: a resumed run keeps its settings (only --steps may change)",
                    flag, s, ckpt, flag + 2, *current);
    *current = v;
}

static void setting_switch(const Options *o, const char *flag, int *on, const char *ckpt) {
    if (!opt_str(o, flag)) return;
    if (ckpt && *on) usage_error("%s, but %s was trained with %s on", flag, ckpt, flag + 5);
    *on = 0;
}

// the run's settings: the flags on a new run; on a resume (ckpt, at step `step`) the checkpoint's,
// with --steps the new total
static void settings_from_flags(const Options *o, Settings *s, const char *ckpt, int64_t step) {
    const char *steps = opt_str(o, "--steps");
    if (ckpt && steps) {
        s->steps = parse_int("--steps", steps, 1, MAX_STEPS);
        if (s->steps < step) usage_error("--steps %s, but %s is at step %lld already", steps, ckpt, (long long)step);
    } else {
        setting_int(o, "--steps", &s->steps, 1, MAX_STEPS, ckpt);
    }
    if (!ckpt) {  // the defaults that follow --steps (transformer.py's: warmup min(100, steps / 10))
        s->decay_steps = s->steps;
        if (s->warmup_steps > s->steps / 10) s->warmup_steps = s->steps / 10;
    }  // a --warmup given is taken as it is
    setting_int(o, "--batch-size", &s->batch_size, 1, INT_MAX, ckpt);
    setting_int(o, "--warmup", &s->warmup_steps, 0, MAX_STEPS, ckpt);
    setting_int(o, "--decay-steps", &s->decay_steps, 0, MAX_STEPS, ckpt);
    setting_int(o, "--eval-interval", &s->eval_interval, 1, MAX_STEPS, ckpt);
    setting_int(o, "--eval-iters", &s->eval_iters, 1, MAX_STEPS, ckpt);
    setting_int(o, "--seed", &s->seed, 0, MAX_STEPS, ckpt);
    setting_num(o, "--lr", &s->lr, 0, 1, ckpt);
    if (!ckpt) s->min_lr = s->lr / 10;
    setting_num(o, "--min-lr", &s->min_lr, 0, 0, ckpt);
}

// the model's config: the flags (SPEC.md "Limits" bound each; gpt_config_check checks them together)
// and the data's vocab_size on a new run; on a resume the checkpoint's, which the flags may only repeat
static GPTConfig config_from_flags(const Options *o, GPTConfig c, const char *ckpt) {
    int64_t v[5] = {c.n_layer, c.n_head, c.n_embd, c.block_size, c.vocab_size};
    setting_int(o, "--n-layer", &v[0], 1, 1 << 16, ckpt);
    setting_int(o, "--n-head", &v[1], 1, 1 << 20, ckpt);
    setting_int(o, "--n-embd", &v[2], 1, 1 << 20, ckpt);
    setting_int(o, "--block-size", &v[3], 1, 1 << 20, ckpt);
    const char *vocab = opt_str(o, "--vocab-size");
    if (vocab && parse_int("--vocab-size", vocab, 1, 1 << 30) != v[4])
        usage_error("--vocab-size %s, but the %s say vocab_size %lld", vocab,
                    ckpt ? "checkpoint's config and data" : opt_str(o, "--data") ? "text's characters" : "token files",
                    (long long)v[4]);
    c.n_layer = (int)v[0], c.n_head = (int)v[1], c.n_embd = (int)v[2], c.block_size = (int)v[3];
    setting_switch(o, "--no-scale-attn-weights", &c.scale_attn_weights, ckpt);
    setting_switch(o, "--no-residual", &c.residual, ckpt);
    setting_switch(o, "--no-position-embedding", &c.position_embedding, ckpt);
    char err[ERRLEN];
    if (gpt_config_check(c, err, sizeof err) != GPT_OK) usage_error("%s", err);
    return c;
}
// ---- the checkpoint's folder, its lock, and stopping on a signal ----

static char *str_cat(const char *a, const char *b) {
    char *s = malloc(strlen(a) + strlen(b) + 1);
    if (!s) die_system("out of memory");
    return strcat(strcpy(s, a), b);
}

// the folder of path ("." when it has none), made if missing, like mkdir -p
static char *out_folder(const char *out) {
    const char *slash = strrchr(out, '/');
    char *dir = slash ? strndup(out, slash == out ? 1 : (size_t)(slash - out)) : strdup(".");
    if (!dir) die_system("out of memory");
    for (char *p = dir + 1;; p++) {
        if (*p && *p != '/') continue;
        char was = *p;
        *p = 0;
        struct stat st;
        if (stat(dir, &st) != 0 && (errno != ENOENT || mkdir(dir, 0777) != 0))
            die("--out %s: cannot make the folder %s: %s", out, dir, strerror(errno));
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) die("--out %s: %s is not a folder", out, dir);
        if (!(*p = was)) return dir;
    }
}

// --out checked before the first step, not at the first checkpoint 250 steps in: not a folder, its
// folder there (or made) and writable (a probe file made and removed); the caller frees the folder
static char *check_out(const char *out) {
    struct stat st;
    size_t len = strlen(out);
    if (len == 0 || out[len - 1] == '/' || (stat(out, &st) == 0 && S_ISDIR(st.st_mode)))
        die("--out %s is a directory; give a file name, e.g. %.*s/model.safetensors", out,
            (int)(len && out[len - 1] == '/' ? len - 1 : len), out);
    if (stat(out, &st) == 0 && !S_ISREG(st.st_mode)) die("--out %s is not a regular file", out);
    char *dir = out_folder(out), probe[64];
    snprintf(probe, sizeof probe, "/.train_gpt-probe-%ld", (long)getpid());
    char *path = str_cat(dir, probe);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) die("--out %s: cannot write in the folder %s: %s", out, dir, strerror(errno));
    close(fd);
    unlink(path);
    free(path);
    return dir;
}

// one run per checkpoint: an exclusive lock on OUT.lock for the whole run (transformer.py takes the
// same, shared/cli.py), dropped by the kernel however the process ends. The file is removed as the run
// exits, while still held; so a lock taken on a file that has meanwhile been removed is no lock, and is
// taken again on the file now at that path.
static char *lock_path;

static void remove_lock(void) { unlink(lock_path); }

static int lock_out(const char *out) {
    lock_path = str_cat(out, ".lock");
    for (;;) {
        int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0) die("--out %s: cannot make %s: %s", out, lock_path, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            if (errno == EWOULDBLOCK)
                die("%s is being written by another training run (%s is locked)", out, lock_path);
            die("cannot lock %s: %s", lock_path, strerror(errno));
        }
        struct stat held, now;
        if (fstat(fd, &held) == 0 && stat(lock_path, &now) == 0 && held.st_ino == now.st_ino &&
            held.st_dev == now.st_dev) {
            atexit(remove_lock);
            return fd;
        }
        close(fd);
    }
}

// OUT.<16 hex digits>.tmp: st_write_checkpoint's (and checkpoint.py's) temporary name
static int is_temp_of(const char *name, const char *base) {
    size_t n = strlen(base);
    if (strncmp(name, base, n) != 0 || name[n] != '.' || strlen(name + n) != 1 + 16 + 4) return 0;
    for (int i = 1; i <= 16; i++)
        if (!isxdigit((unsigned char)name[n + i]) || isupper((unsigned char)name[n + i])) return 0;
    return strcmp(name + n + 17, ".tmp") == 0;
}

// the temporary files of a run killed while saving: nobody else writes OUT while we hold its lock
static void remove_stale_temps(const char *out, const char *dir) {
    const char *slash = strrchr(out, '/'), *base = slash ? slash + 1 : out;
    DIR *d = opendir(dir);
    if (!d) die("--out %s: cannot list the folder %s: %s", out, dir, strerror(errno));
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_temp_of(e->d_name, base)) continue;
        char *path = malloc(strlen(dir) + strlen(e->d_name) + 2);
        if (!path) die_system("out of memory");
        sprintf(path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0) die("cannot remove %s, left by an earlier run: %s", path, strerror(errno));
        free(path);
        removed++;
    }
    closedir(d);
    if (removed)
        printf("removed %d temporary file%s (%s.*.tmp) that an interrupted run left\n", removed, removed > 1 ? "s" : "", out);
}

static volatile sig_atomic_t stop_signal;  // the first SIGINT or SIGTERM: the run stops after its step

static void on_stop_signal(int sig) {
    if (!stop_signal) stop_signal = sig;  // a second one changes nothing: the save in progress goes on
}

static void catch_stop_signals(int catch) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = catch ? on_stop_signal : SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  // the reads and writes in progress go on
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

// an argument as the shell reads it back
static void print_quoted(const char *s) {
    if (*s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=+,@%-") == strlen(s)) {
        printf(" %s", s);
        return;
    }
    printf(" '");
    for (; *s; s++)
        if (*s == '\'') printf("'\\''");
        else putchar(*s);
    printf("'");
}

// after a signal, the run's last step saved (by the caller): the command that resumes it; returns the
// exit status, 128 + the signal
static int stop_on_signal(int64_t step, int saved, const char *out, const Options *o, const char *program) {
    int sig = stop_signal;
    if (!saved) {
        printf("stopped by %s before the first step: nothing saved\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        return 128 + sig;
    }
    printf("stopped by %s at step %lld, saved in %s; resume with:", sig == SIGINT ? "SIGINT" : "SIGTERM",
           (long long)step, out);
    print_quoted(program);
    printf(" train --resume");
    print_quoted(out);
    const char *data[] = {"--data", "--train-bin", "--val-bin", "--threads"};
    for (int i = 0; i < 4; i++)
        if (opt_str(o, data[i])) { printf(" %s", data[i]); print_quoted(opt_str(o, data[i])); }
    printf("\n");
    return 128 + sig;
}
// ---- training ----

typedef struct {
    const char *program, *out;  // argv[0]; the checkpoint written
    const Options *opts;
    int resumed;                // out held a checkpoint of the first step before the run began
} Run;

// one AdamW step on one batch. A loss or gradient norm that is not finite ends the run with no
// checkpoint written for it (SPEC.md "Limits": the last good one stays as it was): -1, and why in err.
static int train_step(GPT *m, const Split *train, const Settings *s, int64_t step, int32_t *x, int32_t *y, char *err) {
    int B = (int)s->batch_size, T = gpt_config(m).block_size;
    Rng r = rng_for((uint64_t)s->seed, 2, (uint64_t)step);  // this step's batch: a function of (seed, step)
    get_batch(train, B, T, &r, x, y);
    double lr = lr_at(step, s->lr, s->min_lr, s->warmup_steps, s->decay_steps);
    float loss, norm;  // the library refuses a non-finite loss or norm before it changes anything
    int rc = gpt_train_step(m, x, y, B, T, (float)lr, (float)s->beta1, (float)s->beta2, (float)s->eps,
                            (float)s->weight_decay, (float)s->grad_clip, &loss, &norm);
    if (rc == GPT_ERR_DIVERGED) {
        snprintf(err, ERRLEN, "%s; no checkpoint written for it", gpt_error(m));
        return -1;
    }
    if (rc != GPT_OK) die("%s", gpt_error(m));
    return 0;
}

static double seconds_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

// from the model's step to s->steps: a batch per step, an evaluation and a checkpoint every
// eval_interval. A SIGINT or SIGTERM ends it after the step in progress, with a checkpoint of it.
// Returns the exit status: 0 done, EXIT_USER diverged, 128 + a signal.
static int train_loop(GPT *m, const Data *d, const Settings *s, const Tokenizer *tok, const Run *run) {
    GPTConfig c = gpt_config(m);
    int B = (int)s->batch_size, T = c.block_size;
    printf("model: n_layer %d, n_head %d, n_embd %d, block_size %d, vocab_size %d%s%s%s: %zu parameters, %d threads\n",
           c.n_layer, c.n_head, c.n_embd, c.block_size, c.vocab_size,
           c.scale_attn_weights ? "" : ", scale_attn_weights off", c.residual ? "" : ", residual off",
           c.position_embedding ? "" : ", position_embedding off", gpt_num_params(c), gpt_get_num_threads());
    printf("data: %ld train / %ld val tokens\n", d->train.n, d->val.n);
    int32_t *x = malloc(sizeof(int32_t) * B * T), *y = malloc(sizeof(int32_t) * B * T);
    if (!x || !y) die_system("out of memory");
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int64_t start = gpt_get_step(m);
    catch_stop_signals(1);
    int status = 0;
    char err[ERRLEN];
    for (int64_t step = start; step <= s->steps && status == 0; step++) {
        int saved = 0;
        if (step % s->eval_interval == 0 || step == s->steps) {
            double tl = estimate_loss(m, &d->train, B, s->eval_iters, (uint64_t)s->seed + 1);
            double vl = estimate_loss(m, &d->val, B, s->eval_iters, (uint64_t)s->seed + 2);
            printf("step %5lld: train loss %.4f, val loss %.4f (%.0f s)\n", (long long)step, tl, vl, seconds_since(&t0));
            fflush(stdout);
            if ((saved = step > 0)) save(m, run->out, tok, s);  // a training checkpoint at every evaluation
        }
        if (stop_signal) {
            if (step > start && !saved) save(m, run->out, tok, s);
            status = stop_on_signal(step, step > start || run->resumed, run->out, run->opts, run->program);
        } else if (step < s->steps && train_step(m, &d->train, s, step, x, y, err) != 0) {
            fprintf(stderr, "error: %s\n", err);
            status = EXIT_USER;
        }
    }
    catch_stop_signals(0);
    if (status == 0 && stop_signal)  // a signal after the last step's check: its checkpoint is saved
        status = stop_on_signal(s->steps, 1, run->out, run->opts, run->program);
    if (status == 0)
        printf("trained to step %lld in %.1f s; checkpoint: %s\n", (long long)s->steps, seconds_since(&t0), run->out);
    free(x);
    free(y);
    return status;
}

// the flags that choose the data and the checkpoint, together
static void check_train_flags(const Options *o) {
    int text = opt_str(o, "--data") != NULL, tb = opt_str(o, "--train-bin") != NULL, vb = opt_str(o, "--val-bin") != NULL;
    if (text && (tb || vb)) usage_error("give --data TEXT or --train-bin F and --val-bin F, not both");
    if (!text && !(tb && vb)) usage_error("give --data TEXT, or --train-bin F and --val-bin F");
    const char *resume = opt_str(o, "--resume"), *out = opt_str(o, "--out");
    if (out && !*out) usage_error("--out is empty: give the checkpoint's file name");
    if (resume && out && strcmp(resume, out) != 0)
        usage_error("--out %s with --resume %s: a resumed run writes back to its checkpoint", out, resume);
}

// the data, checked against the tokenizer (on a resume the checkpoint's, of vocab_size V; else V is 0
// and the data gives both)
static void load_data(Data *d, const Options *o, Tokenizer *tok, int V) {
    const char *text = opt_str(o, "--data");
    if (text) {
        data_from_text(d, text, tok);
        return;
    }
    data_from_token_files(d, opt_str(o, "--train-bin"), opt_str(o, "--val-bin"), tok);
    if (V && d->train_file.h.vocab_size != V)
        die("the token files' vocab_size %d is not the checkpoint's %d", d->train_file.h.vocab_size, V);
}

// what the config, the settings and the data say together, before the model is allocated
static void check_fit(GPTConfig c, const Settings *s, const Data *d) {
    if (s->batch_size * c.block_size > INT_MAX)
        usage_error("--batch-size %lld with block_size %d is more than 2^31 - 1 positions a batch",
                    (long long)s->batch_size, c.block_size);
    if (d->train.n <= c.block_size || d->val.n <= c.block_size)
        die("the data is too short for the block size: %ld train and %ld val tokens, block_size %d", d->train.n,
            d->val.n, c.block_size);
}

static GPT *new_model(GPTConfig c, uint64_t seed) {
    char err[ERRLEN];
    GPT *m = gpt_create(c, err, sizeof err);
    if (!m) die("%s", err);
    init_params(m, seed);
    return m;
}

// every check first (the flags, the checkpoint, the data, the config, --out and its lock), then the model
static int cmd_train(int argc, char **argv) {
    Options o = parse_options(argc, argv, TRAIN_FLAGS, TRAIN_SWITCHES);
    check_train_flags(&o);
    const char *resume = opt_str(&o, "--resume"), *out = resume ? resume : opt_str(&o, "--out");
    Run run = {argv[0], out ? out : "out/shakespeare-c.safetensors", &o, resume != NULL};
    Settings s = {.steps = 2000, .batch_size = 12, .warmup_steps = 100, .decay_steps = 2000, .eval_interval = 250,
                  .eval_iters = 20, .seed = 1337, .lr = 3e-3, .min_lr = 3e-4, .beta1 = 0.9, .beta2 = 0.99,
                  .eps = 1e-8, .weight_decay = 0.1, .grad_clip = 1.0};
    GPTConfig c = {.n_layer = 4, .n_head = 4, .n_embd = 128, .block_size = 64, .scale_attn_weights = 1, .residual = 1,
                   .position_embedding = 1};
    Tokenizer tok = {0, NULL, NULL};
    int64_t step = 0;
    int has_settings;
    if (resume && (c = load_header(resume, &tok, &s, &has_settings, &step), !has_settings))
        die("%s is not a training checkpoint (no train_settings)", resume);
    settings_from_flags(&o, &s, resume, step);
    int threads = (int)opt_int(&o, "--threads", 0, 0, MAX_THREADS);
    Data d = {0};
    load_data(&d, &o, &tok, resume ? c.vocab_size : 0);
    c.vocab_size = tok.n;
    c = config_from_flags(&o, c, resume);
    check_fit(c, &s, &d);
    char *dir = check_out(run.out);
    int lock = lock_out(run.out);
    remove_stale_temps(run.out, dir);
    free(dir);
    GPT *m = resume ? load_weights(resume, c) : new_model(c, (uint64_t)s.seed);
    if (threads > 0) gpt_set_num_threads(threads);
    int status = train_loop(m, &d, &s, &tok, &run);
    if (status == 0 && d.text_ids) {
        printf("\n--- sample ---\n");
        int32_t nl = tokenizer_id(&tok, '\n'), first = text_id(&d.train, 0);
        generate(m, &tok, nl >= 0 ? &nl : &first, 1, 500, 0.8, 0, (uint64_t)s.seed);
    }
    close(lock);
    data_free(&d);
    free(tok.chars);
    free(tok.json);
    gpt_destroy(m);
    return status;
}

static int cmd_sample(int argc, char **argv) {
    Options o = parse_options(argc, argv, SAMPLE_FLAGS, NO_SWITCHES);
    const char *ckpt = opt_str(&o, "--ckpt"), *prompt = opt_str(&o, "--prompt");
    if (!ckpt) usage_error("sample needs --ckpt CKPT");
    int64_t tokens = opt_int(&o, "--tokens", 500, 0, MAX_STEPS);
    const char *t = opt_str(&o, "--temperature");
    double temperature = t ? parse_num("--temperature", t, 0, 0) : 0.8;
    int top_k = (int)opt_int(&o, "--top-k", 0, 1, INT_MAX);  // 0: all (the flag absent)
    uint64_t seed = (uint64_t)opt_int(&o, "--seed", 0, 0, INT64_MAX);
    int threads = (int)opt_int(&o, "--threads", 0, 0, MAX_THREADS);
    Tokenizer tok;
    Settings s = {0};
    int has_settings;
    int64_t step;
    GPTConfig c = load_header(ckpt, &tok, &s, &has_settings, &step);
    if (!tok.chars) die("%s: its tokenizer is not the character tokenizer; sample with `python transformer.py sample`", ckpt);
    if (!prompt) prompt = "\n";
    size_t len = strlen(prompt);
    uint32_t *cps = malloc(sizeof(uint32_t) * (len + 1));
    long n = cps ? utf8_decode((const unsigned char *)prompt, len, cps) : -1;
    if (n < 1) usage_error("--prompt must be non-empty UTF-8 text");
    if (n > c.block_size) { memmove(cps, cps + n - c.block_size, sizeof(uint32_t) * c.block_size); n = c.block_size; }
    int32_t *ids = malloc(sizeof(int32_t) * n);
    if (!ids) die_system("out of memory");
    for (long i = 0; i < n; i++)
        if ((ids[i] = tokenizer_id(&tok, cps[i])) < 0)
            die("the prompt has a character (U+%04X) the tokenizer lacks", (unsigned)cps[i]);
    GPT *m = load_weights(ckpt, c);
    if (threads > 0) gpt_set_num_threads(threads);
    generate(m, &tok, ids, (int)n, tokens, temperature, top_k, seed);
    free(cps);
    free(ids);
    free(tok.chars);
    gpt_destroy(m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "train") == 0) return cmd_train(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "sample") == 0) return cmd_sample(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "-h") != 0 && strcmp(argv[1], "--help") != 0)
        usage_error("unknown command '%s': give train or sample", argv[1]);
    usage();
    return argc >= 2 ? 0 : EXIT_USER;
}
