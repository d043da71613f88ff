// The C tier: GPT-2 per shared/SPEC.md, in float32, with hand-written backward passes.
// Every layer is a name_forward / name_backward pair (gpt.c); the matmuls are in matmul.c, each fast
// kernel beside its naive reference. No libraries beyond libc, libm and OpenMP.
//
// Conventions (llm.c's): outputs first, then inputs, weights, dims. The backward adds to the
// parameters' gradients (+=); zeroing them is explicit (gpt_zero_grad). Results do not depend on
// the number of threads: every reduction has one fixed order.
#ifndef GPT_H
#define GPT_H

#include <stddef.h>
#include <stdint.h>

// mirrors shared/config.py GPTConfig, same field names and order. The last three are the spec's
// ablations (SPEC.md "Ablations"), 0 or 1, and 1 in GPT-2: a config built field by field must set them,
// since a zeroed one switches all three off.
typedef struct {
    int n_layer;
    int n_head;
    int n_embd;
    int block_size;
    int vocab_size;
    int scale_attn_weights;  // 1: scores divided by sqrt(HS); 0: att = q @ k^T
    int residual;            // 1: x + f(LN(x)) in both halves of every block; 0: f(LN(x))
    int position_embedding;  // 1: x = wte[idx] + wpe[pos]; 0: x = wte[idx] (wpe unused, gradient 0)
} GPTConfig;

// error codes; a message is kept in the model (gpt_error) or written to the caller's buffer.
// safetensors.h continues the numbering (5 .. 8).
enum {
    GPT_OK = 0,
    GPT_ERR_CONFIG = 1,  // invalid config
    GPT_ERR_INPUT = 2,   // token id out of range, T > block_size, B or T < 1, cache overflow, ...
    GPT_ERR_STATE = 3,   // call out of order (backward without a forward with targets, ...)
    GPT_ERR_MEMORY = 4,  // allocation failed
    GPT_ERR_DIVERGED = 9,  // a training step's loss or gradient norm is not finite (DivergenceError)
};

// SPEC.md "Limits": the one set of bounds every reader, writer and tier enforces
#define GPT_MAX_N_LAYER (1 << 16)
#define GPT_MAX_N_EMBD (1 << 20)
#define GPT_MAX_BLOCK_SIZE (1 << 20)
#define GPT_MAX_VOCAB_SIZE (1 << 30)
#define GPT_MAX_PARAMS (1ull << 40)   // V C + T C + L (12 C^2 + 13 C) + 2 C
#define GPT_MAX_STEP (1ll << 53)      // AdamW steps: every step count is exact in a double

// ---- parameters: one contiguous float buffer in the spec's canonical order (shared/params.py) ----

// the tensors of one block, in canonical order
typedef struct {
    float *ln_1_w, *ln_1_b;                  // (C), (C)
    float *attn_c_attn_w, *attn_c_attn_b;    // (C, 3C), (3C)
    float *attn_c_proj_w, *attn_c_proj_b;    // (C, C), (C)
    float *ln_2_w, *ln_2_b;                  // (C), (C)
    float *mlp_c_fc_w, *mlp_c_fc_b;          // (C, 4C), (4C)
    float *mlp_c_proj_w, *mlp_c_proj_b;      // (4C, C), (C)
} BlockTensors;

// pointers into one flat buffer (parameters, gradients and AdamW moments all use this layout)
typedef struct {
    float *wte;      // (V, C)
    float *wpe;      // (block_size, C)
    BlockTensors *h; // n_layer blocks
    float *ln_f_w;   // (C)
    float *ln_f_b;   // (C)
} ParamTensors;

// GPT_OK, or GPT_ERR_CONFIG with one line naming the field, its value and what is allowed (SPEC.md
// "Limits"). The functions below take only configs that pass it: then no size overflows 64 bits.
int gpt_config_check(GPTConfig c, char *err, size_t errlen);
size_t gpt_num_params(GPTConfig c);               // at most 2^40 (size_t is 64 bits: gpt.c asserts it)
int gpt_num_tensors(GPTConfig c);                 // 2 + 12 * n_layer + 2
size_t gpt_tensor_numel(GPTConfig c, int i);      // elements of canonical tensor i
size_t gpt_tensor_offset(GPTConfig c, int i);     // where canonical tensor i starts in the flat buffer
// shape of canonical tensor i into shape[0..1]; returns its number of dimensions (1 or 2; 0: no such i)
int gpt_tensor_shape(GPTConfig c, int i, size_t shape[2]);
// the i-th canonical name into buf ("wte.weight", "h.0.ln_1.weight", ...); returns its length
int gpt_tensor_name(GPTConfig c, int i, char *buf, size_t buflen);

// ---- the model ----

typedef struct GPT GPT;  // defined in gpt.c

// allocates parameters (zeroed), gradients and moments; NULL on failure with a message in err
GPT *gpt_create(GPTConfig c, char *err, size_t errlen);
void gpt_destroy(GPT *m);
const char *gpt_error(const GPT *m);  // message of the last failed call
GPTConfig gpt_config(const GPT *m);

// the flat buffers, gpt_num_params(config) floats each, canonical order; the caller may read and
// write them (Python maps them as numpy arrays)
float *gpt_params(GPT *m);
float *gpt_grads(GPT *m);
float *gpt_adam_m(GPT *m);
float *gpt_adam_v(GPT *m);
int64_t gpt_get_step(const GPT *m);  // AdamW steps taken, 0 .. GPT_MAX_STEP
int gpt_set_step(GPT *m, int64_t step);  // GPT_ERR_INPUT (and no change) outside 0 .. GPT_MAX_STEP

// forward over idx (B, T) row-major. targets (B, T) may be NULL; -1 marks an ignored position.
// Keeps every activation the backward pass needs (and the spec's named activations) until the next
// forward. With targets, *loss receives the mean cross-entropy over counted positions.
int gpt_forward(GPT *m, const int32_t *idx, const int32_t *targets, int B, int T, float *loss);
const float *gpt_logits(const GPT *m);  // (B, T, V) of the last forward

void gpt_zero_grad(GPT *m);
// backward of the last forward (which must have had targets): gradients += d loss / d params
int gpt_backward(GPT *m);

// applies the gradients in gpt_grads(m) as given (the tier's apply_grads): clip (grad_clip > 0: global
// L2 norm over all gradients, torch's formula), then one AdamW step per the spec (decay on 2-D tensors
// only, bias correction, eps outside the sqrt); step += 1. *grad_norm (nullable) receives the norm
// before clipping. Refused with GPT_ERR_INPUT, before anything changes: a gradient that is NaN or
// infinite (the message names its tensor), settings outside AdamWConfig's ranges (lr finite >= 0,
// beta1 and beta2 in [0, 1), eps > 0, weight_decay >= 0, grad_clip finite), a model at GPT_MAX_STEP.
int gpt_adamw_update(GPT *m, float lr, float beta1, float beta2, float eps, float weight_decay,
                     float grad_clip, float *grad_norm);
// one training step (the tier's train_step): forward with targets, zero_grad, backward, then
// gpt_adamw_update's step. A loss or gradient norm that is not finite is GPT_ERR_DIVERGED ("step K:
// the loss is nan; the run diverged ..."), returned before any weight, moment or the step changes
// (SPEC.md "Limits": a diverging run stops). *loss and *grad_norm are nullable.
int gpt_train_step(GPT *m, const int32_t *idx, const int32_t *targets, int B, int T, float lr, float beta1,
                   float beta2, float eps, float weight_decay, float grad_clip, float *loss,
                   float *grad_norm);

// named activations of the last forward (shared/activations.py); layer is ignored for the
// model-level ones. Returns NULL for an unknown kind or layer.
enum {
    ACT_EMB = 0,      // (B, T, C)
    ACT_LN_1,         // per layer: (B, T, C)
    ACT_ATTN_QKV,     // (B, T, 3C)
    ACT_ATTN_ATT,     // (B, NH, T, T), after softmax, masked entries 0
    ACT_ATTN_Y,       // (B, T, C), heads merged, before c_proj
    ACT_ATTN_OUT,     // (B, T, C), after c_proj
    ACT_RES_1,        // (B, T, C)
    ACT_LN_2,         // (B, T, C)
    ACT_MLP_FC,       // (B, T, 4C)
    ACT_MLP_GELU,     // (B, T, 4C)
    ACT_MLP_OUT,      // (B, T, C)
    ACT_RES_2,        // (B, T, C)
    ACT_LN_F,         // (B, T, C)
    ACT_LOGITS,       // (B, T, V)
};
const float *gpt_activation(const GPT *m, int kind, int layer);

// ---- one piece of the forward on its own (the benchmarks time them) ----

// x (B, T, C), block `layer`'s LayerNorm-ed input, through its attention (c_attn, the heads, c_proj);
// out (B, T, C). Like every forward, it overwrites the activations of the last forward.
int gpt_attention_forward(GPT *m, int layer, const float *x, int B, int T, float *out);
// x (B, T, C), the residual stream, through the whole block `layer`; out (B, T, C). The same.
int gpt_block_forward(GPT *m, int layer, const float *x, int B, int T, float *out);

// ---- KV-cache decoding (SPEC.md "Generation") ----

// empties the cache and sizes it for batch B
int gpt_cache_reset(GPT *m, int B);
int gpt_cache_len(const GPT *m);  // positions cached
// runs T new tokens (B, T) at positions len .. len+T-1 through the cache (len + T <= block_size),
// writes their logits (B, T, V) into logits_out
int gpt_cache_forward(GPT *m, const int32_t *idx, int B, int T, float *logits_out);

// ---- threads ----
void gpt_set_num_threads(int n);  // OpenMP threads (results are the same for any n); n < 1: the default
int gpt_get_num_threads(void);

#endif
