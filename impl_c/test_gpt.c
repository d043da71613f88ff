// Tests of the C tier that need no Python: each fast kernel against its naive twin, the backward pass
// against finite differences, thread-count independence and run-to-run determinism, the KV cache
// against the full forward, and the error paths; the model-level ones for GPT-2 and again with each
// ablation of SPEC.md "Ablations" switched off. Prints one line per check; exits 1 if any fails.
// (The numerics against the float64 reference are the conformance suite's job.)
//
// Like llm.c's test_gpt2.c, this file includes the model's source, to reach its static layers.
#include "gpt.c"

#include <stdint.h>

static int failures = 0;

static void check(int ok, const char *what, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s  %-44s ", ok ? "ok  " : "FAIL", what);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (!ok) failures++;
}

// ---- random numbers (xorshift), so the test needs nothing but libc ----

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;

static double uniform(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (rng_state >> 11) * (1.0 / 9007199254740992.0);
}

static float normal(void) {
    double u1 = uniform() + 1e-300, u2 = uniform();
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static float *randn(size_t n, float scale) {
    float *p = malloc(n * sizeof(float));
    if (p == NULL) {
        fprintf(stderr, "test: out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < n; i++) p[i] = scale * normal();
    return p;
}

static float *copy_of(const float *src, size_t n) {
    float *p = randn(n, 0.0f);
    memcpy(p, src, n * sizeof(float));
    return p;
}

// ||a - ref|| / ||ref||, in double
static double rel_err(const float *a, const float *ref, size_t n) {
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < n; i++) {
        diff += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        norm += (double)ref[i] * ref[i];
    }
    return norm > 0 ? sqrt(diff / norm) : sqrt(diff);
}

// ---- fast matmuls against the naive ones ----

// float32 sums of up to a few hundred terms in another order differ by ~1e-7 relative; an indexing
// bug differs by ~1
#define MATMUL_TOL 1e-5

static void test_matmul(int N, int C, int OC) {
    char what[64];
    float *inp = randn((size_t)N * C, 1.0f), *w = randn((size_t)C * OC, 1.0f), *b = randn(OC, 1.0f);
    float *dout = randn((size_t)N * OC, 1.0f);
    // forward
    float *out = randn((size_t)N * OC, 1.0f), *out_ref = randn((size_t)N * OC, 1.0f);
    int rc = matmul_forward(out, inp, w, b, N, C, OC);
    matmul_forward_naive(out_ref, inp, w, b, N, C, OC);
    double e = rel_err(out, out_ref, (size_t)N * OC);
    snprintf(what, sizeof(what), "matmul_forward N=%d C=%d OC=%d", N, C, OC);
    check(rc == 0 && e < MATMUL_TOL, what, "rel err %.1e", e);
    // backward onto random gradients: dinp is overwritten, dweight and dbias accumulate (+=)
    float *dinp = randn((size_t)N * C, 1.0f), *dw = randn((size_t)C * OC, 1.0f), *db = randn(OC, 1.0f);
    float *dinp_ref = copy_of(dinp, (size_t)N * C), *dw_ref = copy_of(dw, (size_t)C * OC);
    float *db_ref = copy_of(db, OC);
    rc = matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC);
    matmul_backward_naive(dinp_ref, dw_ref, db_ref, dout, inp, w, N, C, OC);
    double e1 = rel_err(dinp, dinp_ref, (size_t)N * C), e2 = rel_err(dw, dw_ref, (size_t)C * OC);
    double e3 = rel_err(db, db_ref, OC);
    snprintf(what, sizeof(what), "matmul_backward N=%d C=%d OC=%d", N, C, OC);
    check(rc == 0 && e1 < MATMUL_TOL && e2 < MATMUL_TOL && e3 < MATMUL_TOL, what,
          "rel err dinp %.1e dweight %.1e dbias %.1e", e1, e2, e3);
    free(inp), free(w), free(b), free(dout), free(out), free(out_ref);
    free(dinp), free(dw), free(db), free(dinp_ref), free(dw_ref), free(db_ref);
}

static void test_head(int N, int C, int V) {
    char what[64];
    float *x = randn((size_t)N * C, 1.0f), *wte = randn((size_t)V * C, 1.0f);
    float *dlogits = randn((size_t)N * V, 1.0f);
    float *logits = randn((size_t)N * V, 1.0f), *logits_ref = randn((size_t)N * V, 1.0f);
    int rc = head_forward(logits, x, wte, N, C, V);
    head_forward_naive(logits_ref, x, wte, N, C, V);
    double e = rel_err(logits, logits_ref, (size_t)N * V);
    snprintf(what, sizeof(what), "head_forward N=%d C=%d V=%d", N, C, V);
    check(rc == 0 && e < MATMUL_TOL, what, "rel err %.1e", e);
    float *dx = randn((size_t)N * C, 1.0f), *dwte = randn((size_t)V * C, 1.0f);
    float *dx_ref = copy_of(dx, (size_t)N * C), *dwte_ref = copy_of(dwte, (size_t)V * C);
    rc = head_backward(dx, dwte, dlogits, x, wte, N, C, V);
    head_backward_naive(dx_ref, dwte_ref, dlogits, x, wte, N, C, V);
    double e1 = rel_err(dx, dx_ref, (size_t)N * C), e2 = rel_err(dwte, dwte_ref, (size_t)V * C);
    snprintf(what, sizeof(what), "head_backward N=%d C=%d V=%d", N, C, V);
    check(rc == 0 && e1 < MATMUL_TOL && e2 < MATMUL_TOL, what, "rel err dx %.1e dwte %.1e", e1, e2);
    free(x), free(wte), free(dlogits), free(logits), free(logits_ref);
    free(dx), free(dwte), free(dx_ref), free(dwte_ref);
}

// gemm on sub-matrices (row strides larger than the width), both transposes, overwrite and accumulate
static void test_gemm_strided(int M, int N, int K, int ta, int tb, int accumulate) {
    char what[64];
    long lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
    float *a = randn((size_t)(ta ? K : M) * lda, 1.0f), *b = randn((size_t)(tb ? N : K) * ldb, 1.0f);
    float *c = randn((size_t)M * ldc, 1.0f), *c_ref = copy_of(c, (size_t)M * ldc);
    long rsa = ta ? 1 : lda, csa = ta ? lda : 1, rsb = tb ? 1 : ldb, csb = tb ? ldb : 1;
    int rc = gemm(M, N, K, a, rsa, csa, b, rsb, csb, c, ldc, accumulate);
    gemm_naive(M, N, K, a, rsa, csa, b, rsb, csb, c_ref, ldc, accumulate);
    double e = rel_err(c, c_ref, (size_t)M * ldc);  // includes the padding columns: untouched
    snprintf(what, sizeof(what), "gemm M=%d N=%d K=%d ta=%d tb=%d acc=%d", M, N, K, ta, tb, accumulate);
    check(rc == 0 && e < MATMUL_TOL, what, "rel err %.1e", e);
    free(a), free(b), free(c), free(c_ref);
}

// ---- the other fast layers against their naive twins ----

static void test_layers(void) {
    // exp_fast against libm's expf over the range the model uses
    double worst = 0.0;
    for (int i = 0; i <= 200000; i++) {
        float x = -87.0f + 175.0f * i / 200000.0f;
        double e = fabs((double)exp_fast(x) - exp((double)x)) / exp((double)x);
        worst = e > worst ? e : worst;
    }
    check(worst < 4e-7, "exp_fast vs exp, x in [-87, 88]", "max rel err %.1e", worst);

    size_t n = 100000;
    float *x = randn(n, 3.0f), *dout = randn(n, 1.0f);
    float *y = randn(n, 0.0f), *y_ref = randn(n, 0.0f);
    float *dx = randn(n, 1.0f), *dx_ref = copy_of(dx, n);
    gelu_forward(y, x, n);
    gelu_forward_naive(y_ref, x, n);
    double e = rel_err(y, y_ref, n);
    check(e < 1e-6, "gelu_forward vs naive (tanh form)", "rel err %.1e", e);
    gelu_backward(dx, x, dout, n);
    gelu_backward_naive(dx_ref, x, dout, n);
    e = rel_err(dx, dx_ref, n);
    check(e < 1e-6, "gelu_backward vs naive", "rel err %.1e", e);
    free(x), free(dout), free(y), free(y_ref), free(dx), free(dx_ref);

    // attention: B=2, T=37 (odd), C=48 in 3 heads of 16, scaled by 1 / sqrt(16) and (without
    // scale_attn_weights) not at all
    int B = 2, T = 37, C = 48, NH = 3;
    size_t nqkv = (size_t)B * T * 3 * C, ny = (size_t)B * T * C, natt = (size_t)B * NH * T * T;
    float *qkv = randn(nqkv, 1.0f), *dy = randn(ny, 1.0f);
    float *att = randn(natt, 1.0f), *att_ref = randn(natt, 1.0f);
    float *out = randn(ny, 1.0f), *out_ref = randn(ny, 1.0f), *scratch = randn(natt, 1.0f);
    float *dqkv = randn(nqkv, 1.0f), *dqkv_ref = copy_of(dqkv, nqkv);
    float scales[2] = {0.25f, 1.0f};
    for (int i = 0; i < 2; i++) {
        char what[64];
        int rc = attention_forward(out, att, qkv, B, T, C, NH, scales[i], NULL);
        attention_forward_naive(out_ref, att_ref, qkv, B, T, C, NH, scales[i]);
        double e1 = rel_err(out, out_ref, ny), e2 = rel_err(att, att_ref, natt);
        snprintf(what, sizeof(what), "attention_forward vs naive, scale %g", scales[i]);
        check(rc == 0 && e1 < 1e-6 && e2 < 1e-6, what, "rel err y %.1e att %.1e", e1, e2);
        rc = attention_backward(dqkv, dy, qkv, att, scratch, B, T, C, NH, scales[i]);
        attention_backward_naive(dqkv_ref, dy, qkv, att, B, T, C, NH, scales[i]);
        e = rel_err(dqkv, dqkv_ref, nqkv);
        snprintf(what, sizeof(what), "attention_backward vs naive, scale %g", scales[i]);
        check(rc == 0 && e < 1e-5, what, "rel err dqkv %.1e", e);
    }
    free(qkv), free(dy), free(att), free(att_ref), free(out), free(out_ref), free(scratch);
    free(dqkv), free(dqkv_ref);
}

// ---- whole-model tests ----

// SPEC.md "Ablations": NO_ABLATION is GPT-2, the others switch one piece off
enum { NO_ABLATION = -1, NO_SCALE, NO_RESIDUAL, NO_POSITION, N_ABLATIONS };
static const char *const ABLATION_NAMES[N_ABLATIONS] = {"scale_attn_weights", "residual",
                                                         "position_embedding"};

static GPTConfig ablate(GPTConfig c, int ablation) {
    if (ablation == NO_SCALE) c.scale_attn_weights = 0;
    if (ablation == NO_RESIDUAL) c.residual = 0;
    if (ablation == NO_POSITION) c.position_embedding = 0;
    return c;
}

// a check's name, with the ablation it ran under
static const char *named(char *buf, size_t n, const char *what, int ablation) {
    if (ablation == NO_ABLATION) snprintf(buf, n, "%s", what);
    else snprintf(buf, n, "%s, no %s", what, ABLATION_NAMES[ablation]);
    return buf;
}

// weights like conformance/compare.py's random_state_dict: every parameter random, at a scale where each
// nonlinearity works in its curved range
static void randomize(GPT *m) {
    GPTConfig c = m->config;
    float *p = gpt_params(m);
    for (int i = 0; i < gpt_num_tensors(c); i++) {
        char name[64];
        size_t shape[2], numel = gpt_tensor_numel(c, i);
        int ndim = gpt_tensor_shape(c, i, shape);
        gpt_tensor_name(c, i, name, sizeof(name));
        int gain = strstr(name, "ln_") != NULL && strstr(name, ".weight") != NULL;
        for (size_t j = 0; j < numel; j++) {
            if (gain) p[j] = 1.0f + 0.2f * normal();
            else if (i < 2) p[j] = 0.5f * normal();  // wte, wpe
            else if (ndim == 2) p[j] = normal() / sqrtf((float)shape[0]);
            else p[j] = 0.2f * normal();
        }
        p += numel;
    }
}

static void random_tokens(int32_t *idx, int32_t *targets, int n, int V) {
    for (int i = 0; i < n; i++) {
        idx[i] = (int32_t)(uniform() * V);
        if (targets != NULL) targets[i] = (int32_t)(uniform() * V);
    }
    if (targets != NULL && n > 3) targets[0] = targets[2] = -1;  // some ignored positions
}

static GPT *create(GPTConfig c) {
    char err[256];
    GPT *m = gpt_create(c, err, sizeof(err));
    if (m == NULL) {
        fprintf(stderr, "test: gpt_create failed: %s\n", err);
        exit(2);
    }
    return m;
}

// everything one training step produces, to compare two runs bit for bit
typedef struct {
    float loss, norm;
    float *logits, *grads, *params, *m, *v;
} StepResult;

static StepResult train_step(GPT *m, const float *params0, const int32_t *idx, const int32_t *targets,
                             int B, int T) {
    size_t n = m->num_params, nl = (size_t)B * T * m->config.vocab_size;
    memcpy(gpt_params(m), params0, n * sizeof(float));
    memset(gpt_adam_m(m), 0, n * sizeof(float));
    memset(gpt_adam_v(m), 0, n * sizeof(float));
    gpt_set_step(m, 0);
    StepResult r;
    int rc = gpt_forward(m, idx, targets, B, T, &r.loss);
    gpt_zero_grad(m);
    rc |= gpt_backward(m);
    if (rc != GPT_OK) {
        fprintf(stderr, "test: step failed: %s\n", gpt_error(m));
        exit(2);
    }
    r.logits = copy_of(gpt_logits(m), nl);
    r.grads = copy_of(gpt_grads(m), n);
    rc = gpt_adamw_update(m, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, &r.norm);
    if (rc != GPT_OK) {
        fprintf(stderr, "test: update failed: %s\n", gpt_error(m));
        exit(2);
    }
    r.params = copy_of(gpt_params(m), n);
    r.m = copy_of(gpt_adam_m(m), n);
    r.v = copy_of(gpt_adam_v(m), n);
    return r;
}

static int same_bits(StepResult a, StepResult b, size_t n, size_t nl) {
    return memcmp(&a.loss, &b.loss, sizeof(float)) == 0 && memcmp(&a.norm, &b.norm, sizeof(float)) == 0 &&
           memcmp(a.logits, b.logits, nl * sizeof(float)) == 0 &&
           memcmp(a.grads, b.grads, n * sizeof(float)) == 0 &&
           memcmp(a.params, b.params, n * sizeof(float)) == 0 &&
           memcmp(a.m, b.m, n * sizeof(float)) == 0 && memcmp(a.v, b.v, n * sizeof(float)) == 0;
}

static void free_step(StepResult r) { free(r.logits), free(r.grads), free(r.params), free(r.m), free(r.v); }

static void test_determinism(int ablation) {
    // big enough that every parallel loop and the gemm really use several threads
    GPTConfig c = {.n_layer = 2, .n_head = 4, .n_embd = 64, .block_size = 64, .vocab_size = 97,
                   .scale_attn_weights = 1, .residual = 1, .position_embedding = 1};
    c = ablate(c, ablation);
    int B = 4, T = 61;
    GPT *m = create(c);
    randomize(m);
    float *params0 = copy_of(gpt_params(m), m->num_params);
    int32_t idx[4 * 61], targets[4 * 61];
    random_tokens(idx, targets, B * T, c.vocab_size);
    size_t n = m->num_params, nl = (size_t)B * T * c.vocab_size;
    int threads0 = gpt_get_num_threads();

    gpt_set_num_threads(1);
    StepResult one = train_step(m, params0, idx, targets, B, T);
    int threads[] = {2, 3, 4};
    for (int i = 0; i < 3; i++) {
        gpt_set_num_threads(threads[i]);
        StepResult many = train_step(m, params0, idx, targets, B, T);
        char what[64], name[96];
        snprintf(what, sizeof(what), "1 thread vs %d: forward+backward+adamw", threads[i]);
        check(same_bits(one, many, n, nl), named(name, sizeof(name), what, ablation),
              "bit-identical loss, logits, grads, params, m, v");
        free_step(many);
    }
    gpt_set_num_threads(threads0);
    StepResult again = train_step(m, params0, idx, targets, B, T);
    StepResult again2 = train_step(m, params0, idx, targets, B, T);
    char name[96];
    check(same_bits(again, again2, n, nl) && same_bits(again, one, n, nl),
          named(name, sizeof(name), "run to run", ablation), "bit-identical (%d threads)", threads0);
    free_step(one), free_step(again), free_step(again2);
    free(params0);
    gpt_destroy(m);
}

static void test_kv_cache(int ablation) {
    GPTConfig c = {.n_layer = 3, .n_head = 3, .n_embd = 48, .block_size = 24, .vocab_size = 37,
                   .scale_attn_weights = 1, .residual = 1, .position_embedding = 1};
    c = ablate(c, ablation);
    int B = 2, T = 24;
    GPT *m = create(c);
    randomize(m);
    int32_t idx[2 * 24];
    random_tokens(idx, NULL, B * T, c.vocab_size);
    size_t nl = (size_t)B * T * c.vocab_size;
    int rc = gpt_forward(m, idx, NULL, B, T, NULL);
    float *full = copy_of(gpt_logits(m), nl), *cached = randn(nl, 0.0f);
    // feed the sequence in chunks: a prefill of `first` tokens, then `step` at a time
    int plans[][2] = {{1, 1}, {12, 1}, {5, 3}, {24, 1}};
    for (int p = 0; p < 4; p++) {
        int first = plans[p][0], step = plans[p][1];
        rc |= gpt_cache_reset(m, B);
        for (int t0 = 0; t0 < T;) {
            int n = t0 == 0 ? first : (T - t0 < step ? T - t0 : step);
            int32_t chunk[2 * 24];
            float *out = randn((size_t)B * n * c.vocab_size, 0.0f);
            for (int b = 0; b < B; b++) memcpy(chunk + b * n, idx + b * T + t0, n * sizeof(int32_t));
            rc |= gpt_cache_forward(m, chunk, B, n, out);
            for (int b = 0; b < B; b++) {
                memcpy(cached + ((size_t)b * T + t0) * c.vocab_size, out + (size_t)b * n * c.vocab_size,
                       (size_t)n * c.vocab_size * sizeof(float));
            }
            free(out);
            t0 += n;
        }
        double e = rel_err(cached, full, nl);
        char what[64], name[96];
        snprintf(what, sizeof(what), "KV cache (prefill %d, then %d at a time)", first, step);
        check(rc == GPT_OK && e <= 1e-6 && gpt_cache_len(m) == T, named(name, sizeof(name), what, ablation),
              "rel err vs full forward %.1e", e);
    }
    free(full), free(cached);
    gpt_destroy(m);
}

static double loss_at(GPT *m, const int32_t *idx, const int32_t *targets, int B, int T) {
    float loss = 0.0f;
    if (gpt_forward(m, idx, targets, B, T, &loss) != GPT_OK) exit(2);
    return loss;
}

// the forward's pieces on their own give the forward's own activations, bit for bit
static void test_pieces(int ablation) {
    GPTConfig c = {.n_layer = 2, .n_head = 3, .n_embd = 48, .block_size = 24, .vocab_size = 37,
                   .scale_attn_weights = 1, .residual = 1, .position_embedding = 1};
    c = ablate(c, ablation);
    int B = 2, T = 19, layer = 1;
    size_t n = (size_t)B * T * c.n_embd;
    GPT *m = create(c);
    randomize(m);
    int32_t idx[2 * 19];
    random_tokens(idx, NULL, B * T, c.vocab_size);
    int rc = gpt_forward(m, idx, NULL, B, T, NULL);
    float *ln_1 = copy_of(gpt_activation(m, ACT_LN_1, layer), n);
    float *attn_out = copy_of(gpt_activation(m, ACT_ATTN_OUT, layer), n);
    float *x = copy_of(gpt_activation(m, ACT_RES_2, layer - 1), n);
    float *res_2 = copy_of(gpt_activation(m, ACT_RES_2, layer), n);
    float *out = malloc(n * sizeof(float));
    char name[96];
    rc |= gpt_attention_forward(m, layer, ln_1, B, T, out);
    check(rc == GPT_OK && memcmp(out, attn_out, n * sizeof(float)) == 0,
          named(name, sizeof(name), "gpt_attention_forward", ablation),
          "bit-identical to the forward's attn.out");
    rc |= gpt_block_forward(m, layer, x, B, T, out);
    check(rc == GPT_OK && memcmp(out, res_2, n * sizeof(float)) == 0,
          named(name, sizeof(name), "gpt_block_forward", ablation), "bit-identical to the forward's res_2");
    if (ablation != NO_ABLATION) {
        free(ln_1), free(attn_out), free(x), free(res_2), free(out);
        gpt_destroy(m);
        return;
    }
    check(gpt_block_forward(m, 2, x, B, T, out) == GPT_ERR_INPUT, "gpt_block_forward, layer out of range",
          "%s", gpt_error(m));
    check(gpt_attention_forward(m, 0, x, B, 25, out) == GPT_ERR_INPUT, "gpt_attention_forward, T too long",
          "%s", gpt_error(m));
    free(ln_1), free(attn_out), free(x), free(res_2), free(out);
    gpt_destroy(m);
}

static void test_gradcheck(int ablation) {
    // directional finite differences per tensor: (L(p + h d) - L(p - h d)) / 2h against grad . d, for a
    // random unit direction d over the tensor; float32 losses, so h is large and the tolerance loose
    GPTConfig c = {.n_layer = 2, .n_head = 2, .n_embd = 8, .block_size = 8, .vocab_size = 11,
                   .scale_attn_weights = 1, .residual = 1, .position_embedding = 1};
    c = ablate(c, ablation);
    int B = 2, T = 7;
    GPT *m = create(c);
    randomize(m);
    int32_t idx[2 * 7], targets[2 * 7];
    random_tokens(idx, targets, B * T, c.vocab_size);
    loss_at(m, idx, targets, B, T);
    gpt_zero_grad(m);
    if (gpt_backward(m) != GPT_OK) exit(2);
    float *grads = copy_of(gpt_grads(m), m->num_params);
    float *p = gpt_params(m);
    double h = 1e-2, worst = 0.0;
    int worst_i = 0;
    size_t offset = 0;
    for (int i = 0; i < gpt_num_tensors(c); i++) {
        size_t numel = gpt_tensor_numel(c, i);
        // a random direction of unit length: a step of h along it stays where the loss is close to
        // linear, whatever the tensor's size
        float *d = randn(numel, 1.0f), *p0 = copy_of(p + offset, numel);
        double norm = 0.0;
        for (size_t j = 0; j < numel; j++) norm += (double)d[j] * d[j];
        for (size_t j = 0; j < numel; j++) d[j] = (float)(d[j] / sqrt(norm));
        double analytic = 0.0;
        for (size_t j = 0; j < numel; j++) analytic += (double)grads[offset + j] * d[j];
        for (size_t j = 0; j < numel; j++) p[offset + j] = p0[j] + (float)h * d[j];
        double up = loss_at(m, idx, targets, B, T);
        for (size_t j = 0; j < numel; j++) p[offset + j] = p0[j] - (float)h * d[j];
        double down = loss_at(m, idx, targets, B, T);
        memcpy(p + offset, p0, numel * sizeof(float));
        double numeric = (up - down) / (2 * h);
        double err = fabs(numeric - analytic) / fmax(fabs(analytic), 1e-2);
        if (err > worst) worst = err, worst_i = i;
        free(d), free(p0);
        offset += numel;
    }
    char name[64], what[96];
    gpt_tensor_name(c, worst_i, name, sizeof(name));
    check(worst < 2e-2, named(what, sizeof(what), "finite differences, every tensor (float32)", ablation),
          "worst rel err %.1e (%s)", worst, name);
    if (ablation == NO_POSITION) {  // wpe takes no part: its gradient is exactly 0 (SPEC.md "Ablations")
        size_t nwpe = gpt_tensor_numel(c, 1);
        int zero = 1;
        for (size_t j = 0; j < nwpe; j++) zero &= grads[gpt_tensor_numel(c, 0) + j] == 0.0f;
        check(zero, "no position_embedding: wpe's gradient", "exactly 0");
    }
    free(grads);
    gpt_destroy(m);
}

// what each ablation changes, seen in the named activations: without position embedding emb = wte[idx],
// without the residual res_1 = attn_out and res_2 = mlp_out, bit for bit; without the scale the
// attention weights differ from GPT-2's, and the rest of the forward is the same code
static void test_ablation_activations(void) {
    GPTConfig c = {.n_layer = 2, .n_head = 3, .n_embd = 48, .block_size = 24, .vocab_size = 37,
                   .scale_attn_weights = 1, .residual = 1, .position_embedding = 1};
    int B = 2, T = 19, C = c.n_embd;
    size_t n = (size_t)B * T * C;
    int32_t idx[2 * 19];
    random_tokens(idx, NULL, B * T, c.vocab_size);
    GPT *base = create(c);
    randomize(base);
    int rc = gpt_forward(base, idx, NULL, B, T, NULL);
    for (int ablation = 0; ablation < N_ABLATIONS; ablation++) {
        GPT *m = create(ablate(c, ablation));
        memcpy(gpt_params(m), gpt_params(base), m->num_params * sizeof(float));
        rc |= gpt_forward(m, idx, NULL, B, T, NULL);
        int ok = rc == GPT_OK;
        if (ablation == NO_POSITION) {
            const float *emb = gpt_activation(m, ACT_EMB, 0);
            for (int i = 0; i < B * T; i++) {
                ok &= memcmp(emb + (size_t)i * C, m->params.wte + (size_t)idx[i] * C, C * sizeof(float)) == 0;
            }
        } else if (ablation == NO_RESIDUAL) {
            for (int l = 0; l < c.n_layer; l++) {
                const float *res_1 = gpt_activation(m, ACT_RES_1, l);
                const float *res_2 = gpt_activation(m, ACT_RES_2, l);
                ok &= memcmp(res_1, gpt_activation(m, ACT_ATTN_OUT, l), n * sizeof(float)) == 0;
                ok &= memcmp(res_2, gpt_activation(m, ACT_MLP_OUT, l), n * sizeof(float)) == 0;
            }
        }
        // the piece taken out mattered: the logits are not GPT-2's
        size_t nl = (size_t)B * T * c.vocab_size;
        double e = rel_err(gpt_logits(m), gpt_logits(base), nl);
        ok &= e > 1e-3;
        char what[96];
        snprintf(what, sizeof(what), "no %s: the activations it changes", ABLATION_NAMES[ablation]);
        check(ok, what, "logits differ from GPT-2's by %.1e", e);
        gpt_destroy(m);
    }
    gpt_destroy(base);
}

static void test_params_and_errors(void) {
    GPTConfig gpt2 = {.n_layer = 12, .n_head = 12, .n_embd = 768, .block_size = 1024, .vocab_size = 50257,
                      .scale_attn_weights = 1, .residual = 1, .position_embedding = 1};
    check(gpt_num_params(gpt2) == 124439808, "gpt2 parameter count", "%zu", gpt_num_params(gpt2));
    GPTConfig c = {.n_layer = 2, .n_head = 2, .n_embd = 16, .block_size = 16, .vocab_size = 29,
                   .scale_attn_weights = 1, .residual = 1, .position_embedding = 1};
    char name[64];
    gpt_tensor_name(c, 6, name, sizeof(name));
    int names_ok = strcmp(name, "h.0.attn.c_proj.weight") == 0;
    gpt_tensor_name(c, gpt_num_tensors(c) - 1, name, sizeof(name));
    names_ok &= strcmp(name, "ln_f.bias") == 0;
    check(gpt_num_params(c) == 7312 && names_ok, "tiny: 7312 parameters, canonical names", "");

    char err[256] = "";
    GPTConfig bad = {.n_layer = 2, .n_head = 3, .n_embd = 16, .block_size = 16, .vocab_size = 29,
                     .scale_attn_weights = 1, .residual = 1, .position_embedding = 1};
    GPT *none = gpt_create(bad, err, sizeof(err));
    check(none == NULL && strstr(err, "divisible") != NULL, "config: n_embd % n_head != 0", "%s", err);
    bad = c;
    bad.residual = 2;
    none = gpt_create(bad, err, sizeof(err));
    check(none == NULL && strstr(err, "config.residual") != NULL, "config: residual 2", "%s", err);
    bad = c;
    bad.position_embedding = -1;
    none = gpt_create(bad, err, sizeof(err));
    check(none == NULL && strstr(err, "config.position_embedding") != NULL, "config: position_embedding -1",
          "%s", err);

    GPT *m = create(c);
    int32_t idx[2 * 17], targets[2 * 17];
    random_tokens(idx, targets, 2 * 17, c.vocab_size);
    float loss;
    int rc = gpt_backward(m);
    check(rc == GPT_ERR_STATE, "backward before any forward", "%s", gpt_error(m));
    rc = gpt_forward(m, idx, targets, 2, 17, &loss);
    check(rc == GPT_ERR_INPUT, "T > block_size", "%s", gpt_error(m));
    rc = gpt_forward(m, idx, targets, 0, 5, &loss);
    check(rc == GPT_ERR_INPUT, "B = 0", "%s", gpt_error(m));
    idx[3] = c.vocab_size;
    rc = gpt_forward(m, idx, targets, 2, 5, &loss);
    check(rc == GPT_ERR_INPUT, "token id = V", "%s", gpt_error(m));
    idx[3] = -1;
    rc = gpt_forward(m, idx, targets, 2, 5, &loss);
    check(rc == GPT_ERR_INPUT, "token id = -1", "%s", gpt_error(m));
    idx[3] = 0;
    targets[1] = -2;
    rc = gpt_forward(m, idx, targets, 2, 5, &loss);
    check(rc == GPT_ERR_INPUT, "target = -2", "%s", gpt_error(m));
    for (int i = 0; i < 10; i++) targets[i] = -1;
    rc = gpt_forward(m, idx, targets, 2, 5, &loss);
    check(rc == GPT_ERR_INPUT, "every target -1", "%s", gpt_error(m));
    rc = gpt_forward(m, idx, NULL, 2, 5, NULL);
    rc |= gpt_backward(m) != GPT_ERR_STATE;
    check(rc == GPT_OK, "backward after a forward without targets", "%s", gpt_error(m));
    rc = gpt_cache_forward(m, idx, 2, 1, NULL);
    check(rc == GPT_ERR_STATE, "cache forward before a reset", "%s", gpt_error(m));
    float out[2 * 16 * 29];
    rc = gpt_cache_reset(m, 2);
    rc |= gpt_cache_forward(m, idx, 2, 16, out);
    rc = rc == GPT_OK ? gpt_cache_forward(m, idx, 2, 1, out) : -1;
    check(rc == GPT_ERR_INPUT, "cache past block_size", "%s", gpt_error(m));
    rc = gpt_cache_forward(m, idx, 1, 1, out);
    check(rc == GPT_ERR_INPUT, "cache with another B", "%s", gpt_error(m));
    check(gpt_activation(m, ACT_LN_1, 2) == NULL && gpt_activation(m, 99, 0) == NULL,
          "unknown activation or layer", "NULL");
    gpt_destroy(m);
}

// SPEC.md "Limits": each bound, at the bound and one past it; the message names the field and the range
static void test_limits(void) {
    const GPTConfig ok = {.n_layer = 2, .n_head = 2, .n_embd = 16, .block_size = 16, .vocab_size = 29,
                          .scale_attn_weights = 1, .residual = 1, .position_embedding = 1};
    struct {
        const char *what;
        GPTConfig c;
        int want;
        const char *says;
    } cases[] = {
        {"n_layer 2^16", {65536, 1, 4, 1, 1, 1, 1, 1}, GPT_OK, ""},
        {"n_layer 2^16 + 1", {65537, 1, 4, 1, 1, 1, 1, 1}, GPT_ERR_CONFIG,
         "config.n_layer must be in 1 .. 65536, got 65537"},
        {"n_layer 0", {0, 1, 4, 1, 1, 1, 1, 1}, GPT_ERR_CONFIG, "must be in 1 .. 65536, got 0"},
        {"n_embd 2^20 + 1", {1, 1, (1 << 20) + 1, 1, 1, 1, 1, 1}, GPT_ERR_CONFIG,
         "config.n_embd must be in 1 .. 1048576"},
        {"block_size 2^20 + 1", {1, 1, 4, (1 << 20) + 1, 1, 1, 1, 1}, GPT_ERR_CONFIG,
         "config.block_size must be in 1 .. 1048576"},
        {"vocab_size 2^30", {1, 1, 4, 1, 1 << 30, 1, 1, 1}, GPT_OK, ""},
        {"vocab_size 2^30 + 1", {1, 1, 4, 1, (1 << 30) + 1, 1, 1, 1}, GPT_ERR_CONFIG,
         "config.vocab_size must be in 1 .. 1073741824"},
        {"vocab_size -5", {1, 1, 4, 1, -5, 1, 1, 1}, GPT_ERR_CONFIG, "got -5"},
        {"n_head > n_embd", {1, 8, 4, 1, 1, 1, 1, 1}, GPT_ERR_CONFIG,
         "config.n_head must be in 1 .. n_embd (4), got 8"},
        {"over 2^40 parameters", {65536, 1, 4096, 1, 1, 1, 1, 1}, GPT_ERR_CONFIG, "at most 2^40"},
    };
    char err[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        int rc = gpt_config_check(cases[i].c, err, sizeof(err));
        int ok = rc == cases[i].want && strstr(err, cases[i].says) != NULL;
        check(ok, "limits", "%s: %d %s", cases[i].what, rc, err);
    }
    // the one parameter table: offsets tile the flat buffer, in canonical order, for a large config too
    GPTConfig big = {65536, 1, 4, 1, 1, 1, 1, 1};
    int tiled = 1;
    GPTConfig configs[2] = {ok, big};
    for (int k = 0; k < 2; k++) {
        size_t at = 0;
        for (int i = 0; i < gpt_num_tensors(configs[k]); i++) {
            tiled &= gpt_tensor_offset(configs[k], i) == at;
            at += gpt_tensor_numel(configs[k], i);
        }
        tiled &= at == gpt_num_params(configs[k]);
    }
    check(tiled, "limits", "gpt_tensor_offset tiles the buffer (tiny; 65536 layers: %zu params)",
          gpt_num_params(big));
}

// exp_fast at the edges: NaN in, NaN out, and no float -> int conversion of NaN (UBSan's
// float-cast-overflow, which `make asan` turns into a failure, saw one here before)
static void test_exp_edges(void) {
    float nan_out = exp_fast(NAN), big = exp_fast(INFINITY), tiny = exp_fast(-INFINITY), one = exp_fast(0.0f);
    check(isnan(nan_out) && isfinite(big) && big > 1e38f && tiny >= 0.0f && tiny < 1e-37f && one == 1.0f,
          "exp_fast edges", "nan -> %g, inf -> %g, -inf -> %g, 0 -> %g", nan_out, big, tiny, one);
}

typedef struct {
    float *params, *m, *v;
    int64_t step;
} Snapshot;

static Snapshot snapshot(GPT *m) {
    size_t n = m->num_params;
    return (Snapshot){copy_of(gpt_params(m), n), copy_of(gpt_adam_m(m), n), copy_of(gpt_adam_v(m), n),
                      gpt_get_step(m)};
}

static int unchanged(GPT *m, Snapshot s) {  // bit for bit, NaNs included
    size_t n = m->num_params * sizeof(float);
    return memcmp(s.params, gpt_params(m), n) == 0 && memcmp(s.m, gpt_adam_m(m), n) == 0 &&
           memcmp(s.v, gpt_adam_v(m), n) == 0 && s.step == gpt_get_step(m);
}

static void free_snapshot(Snapshot s) { free(s.params), free(s.m), free(s.v); }

static int all_finite(const float *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i])) return 0;
    return 1;
}

// a 1-layer model with random weights and a batch of 2 x 8 random tokens and targets, for the step tests
static GPT *small_model(int32_t idx[2 * 8], int32_t targets[2 * 8]) {
    GPTConfig c = {.n_layer = 1, .n_head = 2, .n_embd = 8, .block_size = 8, .vocab_size = 11,
                   .scale_attn_weights = 1, .residual = 1, .position_embedding = 1};
    GPT *m = create(c);
    randomize(m);
    random_tokens(idx, targets, 2 * 8, c.vocab_size);
    return m;
}

// the step counter is 64 bits, bounded by 2^53; a model at 2^53 takes no more steps
static void test_step_counter(void) {
    int32_t idx[2 * 8], targets[2 * 8];
    GPT *m = small_model(idx, targets);
    float loss = 0.0f, norm = 0.0f;
    // from 2^31 - 1, where a 32-bit counter overflowed to INT_MIN and every weight became NaN
    int rc = gpt_set_step(m, 2147483647);
    rc |= gpt_train_step(m, idx, targets, 2, 8, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, &loss, &norm);
    check(rc == GPT_OK && gpt_get_step(m) == 2147483648LL && all_finite(gpt_params(m), m->num_params),
          "step 2^31 - 1 -> 2^31", "rc %d, step %lld, weights finite %d", rc, (long long)gpt_get_step(m),
          all_finite(gpt_params(m), m->num_params));
    rc = gpt_set_step(m, (1LL << 32) + 3);
    check(rc == GPT_OK && gpt_get_step(m) == (1LL << 32) + 3, "step 2^32 + 3 kept exactly", "%lld",
          (long long)gpt_get_step(m));
    rc = gpt_set_step(m, -1);
    int rc2 = gpt_set_step(m, GPT_MAX_STEP + 1);
    check(rc == GPT_ERR_INPUT && rc2 == GPT_ERR_INPUT && gpt_get_step(m) == (1LL << 32) + 3,
          "set_step -1 or 2^53 + 1 refused", "%s", gpt_error(m));
    rc = gpt_set_step(m, GPT_MAX_STEP);
    Snapshot before = snapshot(m);
    rc |= gpt_train_step(m, idx, targets, 2, 8, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, NULL, NULL) !=
          GPT_ERR_INPUT;
    rc |= gpt_adamw_update(m, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, NULL) != GPT_ERR_INPUT;
    check(rc == GPT_OK && unchanged(m, before) && strstr(gpt_error(m), "2^53"), "step 2^53: no more steps",
          "%s",
          gpt_error(m));
    free_snapshot(before);
    gpt_destroy(m);
}

// SPEC.md "Limits": a diverging run stops before the step changes anything; given gradients that are
// not finite, and AdamW settings out of range, are refused
static void test_divergence(void) {
    int32_t idx[2 * 8], targets[2 * 8];
    GPT *m = small_model(idx, targets);
    // an absurd learning rate: the first step blows the weights up, a later one finds the loss not finite
    int rc = GPT_OK, steps = 0;
    Snapshot before = snapshot(m);
    for (; steps < 5 && rc == GPT_OK; steps++) {
        free_snapshot(before);
        before = snapshot(m);
        rc = gpt_train_step(m, idx, targets, 2, 8, 1e30f, 0.9f, 0.95f, 1e-8f, 0.0f, 0.0f, NULL, NULL);
    }
    char want[64];
    snprintf(want, sizeof(want), "step %lld: the ", (long long)before.step);
    check(rc == GPT_ERR_DIVERGED && strstr(gpt_error(m), want) && strstr(gpt_error(m), "the run diverged") &&
              unchanged(m, before),
          "lr 1e30 diverges", "after %d calls, rc %d: %s; weights, moments, step unchanged", steps, rc,
          gpt_error(m));
    free_snapshot(before);

    randomize(m);
    gpt_set_step(m, 12);
    memset(gpt_adam_m(m), 0, m->num_params * sizeof(float));
    memset(gpt_adam_v(m), 0, m->num_params * sizeof(float));
    gpt_params(m)[0] = NAN;  // wte[0][0]: the forward sees it if token 0 is read
    idx[0] = 0;
    before = snapshot(m);
    rc = gpt_train_step(m, idx, targets, 2, 8, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, NULL, NULL);
    check(rc == GPT_ERR_DIVERGED && strstr(gpt_error(m), "step 12: the loss is nan; the run diverged") &&
              unchanged(m, before),
          "a NaN weight: loss nan", "%s", gpt_error(m));
    free_snapshot(before);
    gpt_params(m)[0] = 0.0f;

    // given gradients: a NaN or inf is the caller's mistake, named by tensor
    gpt_zero_grad(m);
    size_t at = gpt_tensor_offset(gpt_config(m), 6) + 3;  // h.0.attn.c_proj.weight
    gpt_grads(m)[at] = INFINITY;
    before = snapshot(m);
    rc = gpt_adamw_update(m, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, NULL);
    check(rc == GPT_ERR_INPUT && strstr(gpt_error(m), "h.0.attn.c_proj.weight holds inf") &&
              unchanged(m, before),
          "apply: an inf gradient", "%s", gpt_error(m));
    gpt_grads(m)[at] = NAN;
    rc = gpt_adamw_update(m, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, NULL);
    check(rc == GPT_ERR_INPUT && strstr(gpt_error(m), "holds nan") && unchanged(m, before),
          "apply: a NaN gradient",
          "%s", gpt_error(m));
    gpt_grads(m)[at] = 0.5f;
    const float settings[][6] = {
        {NAN, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f}, {-1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f},
        {1e-3f, 1.0f, 0.95f, 1e-8f, 0.1f, 1.0f}, {1e-3f, 0.9f, -0.1f, 1e-8f, 0.1f, 1.0f},
        {1e-3f, 0.9f, 0.95f, 0.0f, 0.1f, 1.0f}, {1e-3f, 0.9f, 0.95f, 1e-8f, -0.1f, 1.0f},
        {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, INFINITY},
    };
    int refused = 1;
    for (int i = 0; i < 7; i++) {
        const float *a = settings[i];
        refused &= gpt_adamw_update(m, a[0], a[1], a[2], a[3], a[4], a[5], NULL) == GPT_ERR_INPUT;
        refused &= gpt_train_step(m, idx, targets, 2, 8, a[0], a[1], a[2], a[3], a[4], a[5], NULL, NULL) ==
                   GPT_ERR_INPUT;
    }
    check(refused && unchanged(m, before), "AdamW settings out of range", "%s", gpt_error(m));
    float norm = 0.0f;
    rc = gpt_adamw_update(m, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, &norm);
    check(rc == GPT_OK && norm == 0.5f && gpt_get_step(m) == 13, "apply: finite gradients", "norm %g", norm);
    free_snapshot(before);
    gpt_destroy(m);
}

int main(void) {
    printf("threads: %d\n", gpt_get_num_threads());
    int sizes[] = {1, 7, 65};
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            for (int k = 0; k < 3; k++) test_matmul(sizes[i], sizes[j], sizes[k]);
        }
    }
    // larger and off-tile sizes: rows past MC = 144, depth past KC = 256, tiles of 6 x 16 cut anywhere
    int shapes[][3] = {{129, 257, 65}, {257, 129, 257}, {145, 97, 17}, {6, 16, 300}, {150, 300, 33}};
    for (int i = 0; i < 5; i++) test_matmul(shapes[i][0], shapes[i][1], shapes[i][2]);
    test_head(7, 65, 29);
    test_head(129, 33, 257);
    test_head(5, 40, 4100);  // more columns than NC = 4080
    test_gemm_strided(37, 29, 300, 0, 0, 0);
    test_gemm_strided(37, 29, 300, 1, 1, 1);
    test_gemm_strided(150, 17, 9, 1, 0, 1);
    test_gemm_strided(13, 70, 65, 0, 1, 0);
    // a few rows (decoding) take the unpacked path: every transpose, columns past one chunk of 256
    test_gemm_strided(1, 300, 65, 0, 0, 1);
    test_gemm_strided(3, 513, 40, 1, 1, 0);
    test_gemm_strided(4, 70, 129, 0, 1, 1);
    test_gemm_strided(2, 257, 7, 1, 0, 0);
    test_head(3, 48, 4100);
    test_layers();
    for (int ablation = NO_ABLATION; ablation < N_ABLATIONS; ablation++) {
        test_determinism(ablation);
        test_kv_cache(ablation);
        test_pieces(ablation);
        test_gradcheck(ablation);
    }
    test_ablation_activations();
    test_params_and_errors();
    test_limits();
    test_exp_edges();
    test_step_counter();
    test_divergence();
    printf(failures == 0 ? "all tests passed\n" : "%d FAILED\n", failures);
    return failures == 0 ? 0 : 1;
}
