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
#define _POSIX_C_SOURCE 200809L  // clock_gettime, fileno
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "gpt.h"
#include "safetensors.h"
#include "tokens.h"

#define ERRLEN 512
#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static void die(const char *fmt, const char *what) {
    fprintf(stderr, "error: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n");
    exit(1);
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

// UTF-8 -> code points; returns the count, or -1 on invalid UTF-8
static long utf8_decode(const unsigned char *s, size_t len, uint32_t *out) {
    long n = 0;
    for (size_t i = 0; i < len;) {
        int w = utf8_width(s[i]);
        if (w == 0 || i + w > len) return -1;
        uint32_t c = w == 1 ? s[i] : s[i] & (0x7F >> w);
        for (int k = 1; k < w; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return -1;
            c = (c << 6) | (s[i + k] & 0x3F);
        }
        out[n++] = c;
        i += w;
    }
    return n;
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

static Tokenizer tokenizer_from_text(const uint32_t *text, long n) {
    uint32_t *sorted = malloc(n * sizeof(uint32_t));
    if (!sorted) die("%s", "out of memory");
    memcpy(sorted, text, n * sizeof(uint32_t));
    qsort(sorted, n, sizeof(uint32_t), cmp_u32);
    int k = 0;
    for (long i = 0; i < n; i++)
        if (k == 0 || sorted[i] != sorted[k - 1]) sorted[k++] = sorted[i];
    Tokenizer t = {k, sorted, NULL};
    return t;
}

static int tokenizer_id(const Tokenizer *t, uint32_t c) {
    uint32_t *p = bsearch(&c, t->chars, t->n, sizeof(uint32_t), cmp_u32);
    return p ? (int)(p - t->chars) : -1;
}

// the tokenizer as checkpoint metadata: a JSON string of its characters (shared/tokenizer.py to_json)
static char *tokenizer_to_json(const Tokenizer *t) {
    char *out = malloc((size_t)t->n * 12 + 3), *p = out;
    if (!out) die("%s", "out of memory");
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
    const int32_t *tokens;  // a text's ids, in memory; NULL for a token file:
    const TokenFile *file;  // its ids, read window by window as batches need them
    long n;
} Split;

// the whole of a regular file (a text, tokenizer.json); dies with a message when it cannot
static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) die("%s is not a regular file", path);
    if ((uint64_t)st.st_size >= SIZE_MAX / 4) die("%s is too large to read into memory", path);
    size_t size = (size_t)st.st_size;
    unsigned char *buf = malloc(size + 1);
    if (!buf) die("%s", "out of memory");
    if (fread(buf, 1, size, f) != size) die("cannot read %s", path);
    fclose(f);
    buf[size] = 0;
    *len = size;
    return buf;
}

// ids [ix, ix + T] of a split into window (T + 1 of them); a token file's are checked as they are read
// (the writer checked them too, but the file may have changed since)
static void read_window(const Split *s, long ix, int T, int32_t *window) {
    if (s->tokens) {
        memcpy(window, s->tokens + ix, sizeof(int32_t) * (size_t)(T + 1));
        return;
    }
    char err[ERRLEN];
    uint32_t *ids = (uint32_t *)window;
    if (tok_read(s->file, (uint64_t)ix, (size_t)T + 1, ids, err, sizeof err) != 0) die("%s", err);
    for (int t = 0; t <= T; t++) {
        if (ids[t] >= (uint32_t)s->file->h.vocab_size) {
            snprintf(err, sizeof err, "%s: token id %u at position %ld is outside [0, %d): the file is corrupt",
                     s->file->path, (unsigned)ids[t], ix + t, s->file->h.vocab_size);
            die("%s", err);
        }
        window[t] = (int32_t)ids[t];
    }
}

static void get_batch(const Split *s, int B, int T, Rng *r, int32_t *x, int32_t *y) {
    int32_t *window = malloc(sizeof(int32_t) * ((size_t)T + 1));
    if (!window) die("%s", "out of memory");
    for (int b = 0; b < B; b++) {
        long ix = (long)(rng_uniform(r) * (double)(s->n - T));
        read_window(s, ix, T, window);
        memcpy(x + b * T, window, T * sizeof(int32_t));
        memcpy(y + b * T, window + 1, T * sizeof(int32_t));
    }
    free(window);
}

typedef struct {
    Split train, val;
    int32_t *text_tokens;  // a text's ids (train and val point into them)
    TokenFile train_file, val_file;  // token files (train and val read from them)
} Data;

// a text, by character: the first 90% train, the rest val (shared/data.py CharDataset). Without a
// tokenizer (a new run) it is made from the text's characters.
static void data_from_text(Data *d, const char *path, Tokenizer *tok) {
    size_t len;
    unsigned char *text = read_file(path, &len);
    uint32_t *cps = malloc(sizeof(uint32_t) * (len + 1));
    long n = cps ? utf8_decode(text, len, cps) : -1;
    if (n < 2) die("%s is not UTF-8 text of 2 characters or more", path);
    if (!tok->chars && tok->json) die("%s", "the checkpoint's tokenizer is not the character tokenizer: resume on its token files");
    if (!tok->chars) *tok = tokenizer_from_text(cps, n);
    d->text_tokens = malloc(sizeof(int32_t) * n);
    if (!d->text_tokens) die("%s", "out of memory");
    for (long i = 0; i < n; i++)
        if ((d->text_tokens[i] = tokenizer_id(tok, cps[i])) < 0) die("%s has a character the checkpoint's tokenizer lacks", path);
    long n_train = (long)(0.9 * n);
    d->train = (Split){d->text_tokens, NULL, n_train};
    d->val = (Split){d->text_tokens + n_train, NULL, n - n_train};
    free(text);
    free(cps);
}

static int utf8_valid(const unsigned char *s, size_t len) {
    for (size_t i = 0; i < len;) {
        int w = utf8_width(s[i]);
        uint32_t c;
        if (w == 0 || i + w > len || utf8_decode(s + i, (size_t)w, &c) != 1) return 0;
        i += (size_t)w;
    }
    return 1;
}

// FOLDER/tokenizer.json beside a token file (SPEC.md "Token files"): its text, trailing whitespace
// cut, or NULL when there is none
static char *tokenizer_beside(const char *token_path) {
    const char *slash = strrchr(token_path, '/');
    size_t dir = slash ? (size_t)(slash - token_path) + 1 : 0;
    char *path = malloc(dir + sizeof "tokenizer.json");
    if (!path) die("%s", "out of memory");
    memcpy(path, token_path, dir);
    strcpy(path + dir, "tokenizer.json");
    struct stat st;
    char *json = NULL;
    if (stat(path, &st) == 0) {
        size_t len;
        json = (char *)read_file(path, &len);
        if (strlen(json) != len || !utf8_valid((unsigned char *)json, len)) die("%s is not UTF-8 text", path);
        while (len > 0 && isspace((unsigned char)json[len - 1])) json[--len] = 0;
    }
    free(path);
    return json;
}

// token files: their vocab_size is the model's (given by --vocab-size V, if at all, and on resume the
// checkpoint's); tokenizer.json beside the train file becomes the checkpoint's tokenizer
static void data_from_token_files(Data *d, const char *train_path, const char *val_path, int vocab_arg, Tokenizer *tok) {
    char err[ERRLEN];
    if (tok_open(train_path, &d->train_file, err, sizeof err) != 0) die("%s", err);
    if (tok_open(val_path, &d->val_file, err, sizeof err) != 0) die("%s", err);
    const TokenHeader *h = &d->train_file.h, *hv = &d->val_file.h;
    if (hv->vocab_size != h->vocab_size || strcmp(hv->kind, h->kind) != 0)
        die("%s", "the train and val token files disagree on vocab_size or tokenizer kind");
    if (h->count > (uint64_t)LONG_MAX || hv->count > (uint64_t)LONG_MAX) die("%s", "a token file too large for this machine's long");
    if (vocab_arg > 0 && vocab_arg != h->vocab_size) {
        snprintf(err, sizeof err, "--vocab-size %d, but the token files say vocab_size %d", vocab_arg, h->vocab_size);
        die("%s", err);
    }
    d->train = (Split){NULL, &d->train_file, (long)h->count};
    d->val = (Split){NULL, &d->val_file, (long)hv->count};
    if (tok->chars || tok->json) return;  // resuming: the checkpoint's tokenizer
    int V = h->vocab_size;
    tok->json = tokenizer_beside(train_path);
    // a character tokenizer's JSON string gives this program its characters, to sample from the
    // checkpoint later; any other tokenizer travels as its JSON alone
    if (tok->json && tokenizer_from_json(tok->json, tok) == 0) {
        if (strcmp(h->kind, "char") != 0 || tok->n != V)
            die("%s", "tokenizer.json beside the token files is a character tokenizer that does not match their header");
        return;
    }
    // V placeholder characters keep checkpoints uniform where there is no tokenizer.json: U+0100 + id,
    // past the surrogates (U+D800..U+DFFF, which JSON would pair into other characters)
    if ((uint32_t)V > 0x10FFFF + 1 - 0x100 - 0x800) die("%s", "a vocabulary this large needs a tokenizer.json beside the token files");
    tok->n = V;
    tok->chars = malloc(sizeof(uint32_t) * (size_t)V);
    if (!tok->chars) die("%s", "out of memory");
    for (int i = 0; i < V; i++) tok->chars[i] = 0x100 + (uint32_t)i + (0x100 + (uint32_t)i >= 0xD800 ? 0x800 : 0);
}

static void data_free(Data *d) {
    free(d->text_tokens);
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

static double lr_at(int step, double max_lr, double min_lr, int warmup, int decay) {
    if (step < warmup) return max_lr * (step + 1) / (warmup + 1);
    if (step >= decay) return min_lr;
    double ratio = (double)(step - warmup) / (decay - warmup > 1 ? decay - warmup : 1);
    return min_lr + 0.5 * (1.0 + cos(M_PI * ratio)) * (max_lr - min_lr);
}

// ---- settings ----

typedef struct {
    int steps, batch_size, warmup_steps, decay_steps, eval_interval, eval_iters, seed;
    double lr, min_lr, beta1, beta2, eps, weight_decay, grad_clip;
} Settings;

static char *settings_to_json(const Settings *s) {  // transformer.py's "train_settings"
    char *out = malloc(512);
    if (!out) die("%s", "out of memory");
    snprintf(out, 512,
             "{\"steps\": %d, \"batch_size\": %d, \"lr\": %.17g, \"min_lr\": %.17g, \"warmup_steps\": %d, "
             "\"decay_steps\": %d, \"eval_interval\": %d, \"eval_iters\": %d, \"seed\": %d}",
             s->steps, s->batch_size, s->lr, s->min_lr, s->warmup_steps, s->decay_steps, s->eval_interval,
             s->eval_iters, s->seed);
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

static void settings_from_json(Settings *s, const char *json) {
    double v;
#define GET(field) if (json_number(json, #field, &v) == 0) s->field = v
    GET(steps); GET(batch_size); GET(lr); GET(min_lr); GET(warmup_steps); GET(decay_steps);
    GET(eval_interval); GET(eval_iters); GET(seed);
#undef GET
}

// ---- evaluation ----

static double estimate_loss(GPT *m, const Split *s, int B, int iters, uint64_t seed) {
    int T = gpt_config(m).block_size;
    int32_t *x = malloc(sizeof(int32_t) * B * T), *y = malloc(sizeof(int32_t) * B * T);
    if (!x || !y) die("%s", "out of memory");
    double total = 0.0;
    for (int k = 0; k < iters; k++) {
        Rng r = rng_for(seed, 3, (uint64_t)k);
        get_batch(s, B, T, &r, x, y);
        float loss;
        if (gpt_forward(m, x, y, B, T, &loss) != GPT_OK) die("%s", gpt_error(m));
        total += loss;
    }
    free(x);
    free(y);
    return total / iters;
}

// ---- sampling (SPEC.md "Generation": temperature, top-k, the window rule) with the KV cache ----

static int sample_token(const float *logits, int V, double temperature, int top_k, Rng *r) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (temperature == 0.0) return best;
    double *p = malloc(V * sizeof(double));
    if (!p) die("%s", "out of memory");
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
        p[i] = logits[i] < kth ? 0.0 : exp(((double)logits[i] - logits[best]) / temperature);
        total += p[i];
    }
    double u = rng_uniform(r) * total, cdf = 0.0;
    int token = V - 1;
    for (int i = 0; i < V; i++) {
        cdf += p[i];
        if (cdf > u) { token = i; break; }
    }
    free(p);
    return token;
}

static void generate(GPT *m, const Tokenizer *tok, const int32_t *prompt, int n_prompt, int max_new,
                     double temperature, int top_k, uint64_t seed) {
    GPTConfig c = gpt_config(m);
    int V = c.vocab_size, total = n_prompt + max_new;
    int32_t *seq = malloc(sizeof(int32_t) * total);
    float *logits = malloc(sizeof(float) * (size_t)c.block_size * V);
    if (!seq || !logits) die("%s", "out of memory");
    memcpy(seq, prompt, sizeof(int32_t) * n_prompt);
    Rng r = rng_for(seed, 4, 0);
    int len = n_prompt, cached = 0;
    char utf8[4];
    for (int i = 0; i < n_prompt; i++) fwrite(utf8, 1, utf8_encode(tok->chars[prompt[i]], utf8), stdout);
    for (int k = 0; k < max_new; k++) {
        const float *last;
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
    if (st_write_checkpoint(path, gpt_config(m), gpt_params(m), gpt_adam_m(m), gpt_adam_v(m), gpt_get_step(m),
                            keys, values, 3, err, sizeof err) != 0)
        die("%s", err);
    if (tok_json != tok->json) free(tok_json);
    free(settings);
}

// a metadata value of any size (a BPE tokenizer's JSON is megabytes), NULL when the key is absent
static char *metadata(const char *path, const char *key) {
    char err[ERRLEN];
    for (size_t cap = 1 << 16;; cap *= 2) {
        char *buf = malloc(cap);
        if (!buf) die("%s", "out of memory");
        int rc = st_get_metadata(path, key, buf, cap, err, sizeof err);
        if (rc == GPT_OK) return buf;
        free(buf);
        if (rc == ST_ERR_NOT_FOUND) return NULL;
        if (rc != ST_ERR_BUFFER || cap > ST_MAX_HEADER) die("%s", err);
    }
}

static GPT *load(const char *path, Tokenizer *tok, Settings *s, int *has_settings) {
    char err[ERRLEN];
    GPTConfig c;
    int has_optimizer;
    if (st_read_config(path, &c, &has_optimizer, err, sizeof err) != 0) die("%s", err);
    GPT *m = gpt_create(c, err, sizeof err);
    if (!m) die("%s", err);
    int step = 0;
    if (st_read_checkpoint(path, c, gpt_params(m), has_optimizer ? gpt_adam_m(m) : NULL,
                           has_optimizer ? gpt_adam_v(m) : NULL, &step, NULL, 0, err, sizeof err) != 0)
        die("%s", err);
    gpt_set_step(m, step);
    *tok = (Tokenizer){0, NULL, metadata(path, "tokenizer")};
    if (!tok->json) die("%s has no tokenizer in its metadata (saved by train_gpt or transformer.py?)", path);
    if (tokenizer_from_json(tok->json, tok) == 0) {  // the character tokenizer (else kept as JSON only)
        if (tok->n != c.vocab_size) die("%s: the tokenizer's size does not match the config's vocab_size", path);
        free(tok->json);
        tok->json = NULL;
    }
    char *buf = metadata(path, "train_settings");
    *has_settings = buf != NULL;
    if (buf) settings_from_json(s, buf);
    free(buf);
    if ((buf = metadata(path, "adamw")) &&
        st_parse_adamw(buf, &s->beta1, &s->beta2, &s->eps, &s->weight_decay, &s->grad_clip, err, sizeof err) != 0)
        die("%s", err);
    free(buf);
    return m;
}

// ---- the command line ----

static const char *arg(int argc, char **argv, const char *name, const char *fallback) {
    for (int i = 2; i < argc - 1; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return fallback;
}

static int has_flag(int argc, char **argv, const char *name) {
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return 1;
    return 0;
}

static void usage(void) {
    printf(
        "usage:\n"
        "  train_gpt train --data TEXT [options]       train with the character tokenizer\n"
        "  train_gpt train --train-bin F --val-bin F [--vocab-size V] [options]   train on token files\n"
        "      (SPEC.md \"Token files\": a 1024-byte header, then uint16 or uint32 ids; make them with\n"
        "      `python transformer.py prepare ...`; a tokenizer.json beside F goes into the checkpoint)\n"
        "  train_gpt train --resume CKPT (--data TEXT | --train-bin F --val-bin F) [--steps N]\n"
        "      continue a run exactly, with its own settings\n"
        "  train_gpt sample --ckpt CKPT [--prompt S] [--tokens N] [--temperature T] [--top-k K] [--seed S]\n"
        "train options (defaults: the shakespeare config and transformer.py's run):\n"
        "  --n-layer 4 --n-head 4 --n-embd 128 --block-size 64   the model\n"
        "  --no-scale-attn-weights --no-residual --no-position-embedding   the ablations (SPEC.md \"Ablations\")\n"
        "  --steps 2000 --batch-size 12 --lr 3e-3 --warmup 100 --decay-steps STEPS --eval-interval 250\n"
        "  --eval-iters 20\n"
        "  --seed 1337 --threads N --out out/shakespeare-c.safetensors\n");
}

// a new run: its settings and model from the command line, vocab_size from the data
static GPT *new_model(int argc, char **argv, Settings *s, int vocab_size) {
    s->steps = atoi(arg(argc, argv, "--steps", "2000"));
    s->batch_size = atoi(arg(argc, argv, "--batch-size", "12"));
    s->lr = atof(arg(argc, argv, "--lr", "3e-3"));
    s->min_lr = s->lr / 10;
    s->warmup_steps = atoi(arg(argc, argv, "--warmup", "100"));
    if (s->warmup_steps > s->steps / 10) s->warmup_steps = s->steps / 10;
    s->decay_steps = atoi(arg(argc, argv, "--decay-steps", arg(argc, argv, "--steps", "2000")));
    s->eval_interval = atoi(arg(argc, argv, "--eval-interval", "250"));
    s->eval_iters = atoi(arg(argc, argv, "--eval-iters", "20"));
    s->seed = atoi(arg(argc, argv, "--seed", "1337"));
    GPTConfig c = {
        .n_layer = atoi(arg(argc, argv, "--n-layer", "4")),
        .n_head = atoi(arg(argc, argv, "--n-head", "4")),
        .n_embd = atoi(arg(argc, argv, "--n-embd", "128")),
        .block_size = atoi(arg(argc, argv, "--block-size", "64")),
        .vocab_size = vocab_size,
        .scale_attn_weights = !has_flag(argc, argv, "--no-scale-attn-weights"),
        .residual = !has_flag(argc, argv, "--no-residual"),
        .position_embedding = !has_flag(argc, argv, "--no-position-embedding"),
    };
    char err[ERRLEN];
    GPT *m = gpt_create(c, err, sizeof err);
    if (!m) die("%s", err);
    init_params(m, (uint64_t)s->seed);
    return m;
}

// from the model's step to s->steps: a batch per step, an evaluation and a checkpoint every eval_interval
static void train_loop(GPT *m, const Data *d, const Settings *s, const Tokenizer *tok, const char *out) {
    GPTConfig c = gpt_config(m);
    int B = s->batch_size, T = c.block_size;
    if (d->train.n <= T || d->val.n <= T) die("%s", "the data is too short for the block size");
    printf("model: n_layer %d, n_head %d, n_embd %d, block_size %d, vocab_size %d%s%s%s: %zu parameters, %d threads\n",
           c.n_layer, c.n_head, c.n_embd, c.block_size, c.vocab_size,
           c.scale_attn_weights ? "" : ", scale_attn_weights off", c.residual ? "" : ", residual off",
           c.position_embedding ? "" : ", position_embedding off", gpt_num_params(c), gpt_get_num_threads());
    printf("data: %ld train / %ld val tokens\n", d->train.n, d->val.n);
    int32_t *x = malloc(sizeof(int32_t) * B * T), *y = malloc(sizeof(int32_t) * B * T);
    if (!x || !y) die("%s", "out of memory");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int step = gpt_get_step(m); step <= s->steps; step++) {
        if (step % s->eval_interval == 0 || step == s->steps) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double tl = estimate_loss(m, &d->train, B, s->eval_iters, (uint64_t)s->seed + 1);
            double vl = estimate_loss(m, &d->val, B, s->eval_iters, (uint64_t)s->seed + 2);
            printf("step %5d: train loss %.4f, val loss %.4f (%.0f s)\n", step, tl, vl,
                   (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec));
            fflush(stdout);
            if (step > 0) save(m, out, tok, s);  // a training checkpoint at every evaluation
        }
        if (step == s->steps) break;
        Rng r = rng_for((uint64_t)s->seed, 2, (uint64_t)step);  // this step's batch: a function of (seed, step)
        get_batch(&d->train, B, T, &r, x, y);
        float loss;
        if (gpt_forward(m, x, y, B, T, &loss) != GPT_OK) die("%s", gpt_error(m));
        gpt_zero_grad(m);
        if (gpt_backward(m) != GPT_OK) die("%s", gpt_error(m));
        double lr = lr_at(step, s->lr, s->min_lr, s->warmup_steps, s->decay_steps);
        gpt_adamw_update(m, (float)lr, (float)s->beta1, (float)s->beta2, (float)s->eps, (float)s->weight_decay,
                         (float)s->grad_clip);
        if (!isfinite(loss)) die("%s", "the loss is not finite; lower --lr");
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    printf("trained to step %d in %.1f s; checkpoint: %s\n", s->steps, secs, out);
    free(x);
    free(y);
}

static int cmd_train(int argc, char **argv) {
    Settings s = {2000, 12, 100, 2000, 250, 20, 1337, 3e-3, 3e-4, 0.9, 0.99, 1e-8, 0.1, 1.0};
    const char *out = arg(argc, argv, "--out", "out/shakespeare-c.safetensors");
    const char *resume = arg(argc, argv, "--resume", NULL);
    const char *text = arg(argc, argv, "--data", NULL);
    Tokenizer tok = {0, NULL, NULL};
    Data d = {0};
    GPT *m = NULL;
    if (resume) {
        int has_settings;
        m = load(resume, &tok, &s, &has_settings);
        if (!has_settings) die("%s is not a training checkpoint (no train_settings)", resume);
        out = resume;
    }
    if (text) {
        data_from_text(&d, text, &tok);
    } else {
        const char *tb = arg(argc, argv, "--train-bin", NULL), *vb = arg(argc, argv, "--val-bin", NULL);
        if (!tb || !vb) { usage(); die("%s", "give --data TEXT, or --train-bin F and --val-bin F"); }
        data_from_token_files(&d, tb, vb, atoi(arg(argc, argv, "--vocab-size", "0")), &tok);
        if (m && d.train_file.h.vocab_size != gpt_config(m).vocab_size) {
            char err[ERRLEN];
            snprintf(err, sizeof err, "the token files' vocab_size %d is not the checkpoint's %d", d.train_file.h.vocab_size,
                     gpt_config(m).vocab_size);
            die("%s", err);
        }
    }
    if (!m) m = new_model(argc, argv, &s, tok.n);
    else if (arg(argc, argv, "--steps", NULL)) s.steps = atoi(arg(argc, argv, "--steps", NULL));
    if (s.steps < 1 || s.batch_size < 1 || s.eval_interval < 1 || s.eval_iters < 1 || !(s.lr > 0))
        die("%s", "--steps, --batch-size, --eval-interval, --eval-iters and --lr must be positive");
    int threads = atoi(arg(argc, argv, "--threads", "0"));
    if (threads > 0) gpt_set_num_threads(threads);
    train_loop(m, &d, &s, &tok, out);
    if (text) {
        printf("\n--- sample ---\n");
        int32_t nl = tokenizer_id(&tok, '\n');
        generate(m, &tok, nl >= 0 ? &nl : d.text_tokens, 1, 500, 0.8, 0, (uint64_t)s.seed);
    }
    data_free(&d);
    free(tok.chars);
    free(tok.json);
    gpt_destroy(m);
    return 0;
}

static int cmd_sample(int argc, char **argv) {
    const char *ckpt = arg(argc, argv, "--ckpt", NULL);
    if (!ckpt) { usage(); die("%s", "sample needs --ckpt"); }
    Tokenizer tok;
    Settings s = {0};
    int has_settings;
    GPT *m = load(ckpt, &tok, &s, &has_settings);
    if (!tok.chars) die("%s: its tokenizer is not the character tokenizer; sample with `python transformer.py sample`", ckpt);
    const char *prompt = arg(argc, argv, "--prompt", "\n");
    size_t len = strlen(prompt);
    uint32_t *cps = malloc(sizeof(uint32_t) * (len + 1));
    long n = cps ? utf8_decode((const unsigned char *)prompt, len, cps) : -1;
    if (n < 1) die("%s", "the prompt must be non-empty UTF-8 text");
    int block = gpt_config(m).block_size;
    if (n > block) { memmove(cps, cps + n - block, sizeof(uint32_t) * block); n = block; }
    int32_t *ids = malloc(sizeof(int32_t) * n);
    for (long i = 0; i < n; i++)
        if ((ids[i] = tokenizer_id(&tok, cps[i])) < 0) die("%s", "the prompt has a character the tokenizer lacks");
    int tokens = atoi(arg(argc, argv, "--tokens", "500"));
    double temperature = atof(arg(argc, argv, "--temperature", "0.8"));
    if (tokens < 0 || !(temperature >= 0) || !isfinite(temperature)) die("%s", "--tokens and --temperature must be >= 0");
    generate(m, &tok, ids, (int)n, tokens, temperature, atoi(arg(argc, argv, "--top-k", "0")),
             (uint64_t)atoll(arg(argc, argv, "--seed", "0")));
    free(cps);
    free(ids);
    free(tok.chars);
    gpt_destroy(m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "train") == 0) return cmd_train(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "sample") == 0) return cmd_sample(argc, argv);
    usage();
    return argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) ? 0 : 2;
}
