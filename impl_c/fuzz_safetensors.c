// libFuzzer target for safetensors.c: any bytes, as a checkpoint, must give GPT_OK or an error code with
// a message, never a crash, a leak, an out-of-bounds access or undefined behaviour (run it under
// AddressSanitizer and UBSan). The first byte picks what the rest is (mod 3):
//   0: a single .safetensors file: st_read_config_buffer, then st_read_checkpoint_buffer with the config
//      it gave, then with a fixed small config whatever the file says;
//   1: a Hugging Face directory: 2 bytes (little-endian) of config.json length, config.json, then
//      model.safetensors: st_read_hf_buffers for the config, then for the weights;
//   2: the "adamw" metadata value: st_parse_adamw.
// Build and run (a seed corpus comes from test_safetensors --seeds DIR): see the Makefile,
//   make fuzz-safetensors FUZZ_SECONDS=600
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

static const GPTConfig FIXED = {1, 1, 2, 2, 3, 1, 1, 1};  // the seeds' config (GPT-2: no ablation)

static size_t num_params(GPTConfig c) {  // SPEC.md "Config": V*C + T*C + L*(12C^2 + 13C) + 2C
    size_t C = (size_t)c.n_embd;
    return (size_t)c.vocab_size * C + (size_t)c.block_size * C + (size_t)c.n_layer * (12 * C * C + 13 * C) + 2 * C;
}

// what every call must return: a known code, and a message exactly when it failed
static void check_result(int rc, const char *err) {
    int known = rc == GPT_OK || rc == GPT_ERR_CONFIG || rc == GPT_ERR_INPUT || rc == GPT_ERR_MEMORY ||
                rc == ST_ERR_CHECKPOINT || rc == ST_ERR_IO || rc == ST_ERR_BUFFER || rc == ST_ERR_NOT_FOUND;
    if (!known || (rc == GPT_OK) != (err[0] == 0) || strlen(err) >= 512) {
        fprintf(stderr, "bad result: rc %d, err '%s'\n", rc, err);
        abort();
    }
}

// a config that passed the reader's checks names tensors that are all in the file, at 2 bytes or more
// per element (F16): so it can never ask for more memory than the file's size allows
static float *alloc_params(GPTConfig c, size_t size) {
    size_t n = num_params(c);
    if (n > size / 2) {
        fprintf(stderr, "config with %zu parameters accepted from %zu bytes\n", n, size);
        abort();
    }
    return malloc(n * sizeof(float));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    if (size < 1) return 0;
    int mode = data[0] % 3;
    data++, size--;
    if (mode == 0) {
        GPTConfig c;
        int has_optimizer = 0;
        int64_t step = 0;
        char meta[256];
        int rc = st_read_config_buffer(data, size, "fuzz", &c, &has_optimizer, err, sizeof err);
        check_result(rc, err);
        if (rc == GPT_OK) {
            float *p = alloc_params(c, size), *m = alloc_params(c, size), *v = alloc_params(c, size);
            // a metadata buffer that is sometimes too small
            rc = st_read_checkpoint_buffer(data, size, "fuzz", c, p, m, v, &step, meta, size % 2 ? sizeof meta : 16, err,
                                           sizeof err);
            check_result(rc, err);
            if (rc == GPT_OK && (step < 0 || step > GPT_MAX_STEP || strlen(meta) >= sizeof meta)) abort();
            if (rc == GPT_OK && has_optimizer)  // SPEC.md "Limits": every second moment read is >= 0
                for (size_t i = 0; i < num_params(c); i++)
                    if (!(v[i] >= 0.0f)) abort();
            free(p), free(m), free(v);
        }
        size_t n = num_params(FIXED);
        float *p = malloc(n * 4), *m = malloc(n * 4), *v = malloc(n * 4);
        rc = st_read_checkpoint_buffer(data, size, "fuzz", FIXED, p, m, v, &step, NULL, 0, err, sizeof err);
        check_result(rc, err);
        free(p), free(m), free(v);
    } else if (mode == 1) {
        if (size < 2) return 0;
        size_t config_len = (size_t)data[0] | (size_t)data[1] << 8;
        data += 2, size -= 2;
        if (config_len > size) config_len = size;
        char *config = malloc(config_len ? config_len : 1);  // exactly its size: no terminator to lean on
        memcpy(config, data, config_len);
        GPTConfig c;
        int rc = st_read_hf_buffers(config, config_len, data + config_len, size - config_len, "fuzz", &c, NULL, err, sizeof err);
        check_result(rc, err);
        if (rc == GPT_OK) {
            float *p = alloc_params(c, size - config_len);
            rc = st_read_hf_buffers(config, config_len, data + config_len, size - config_len, "fuzz", &c, p, err, sizeof err);
            check_result(rc, err);
            free(p);
        }
        free(config);
    } else {
        char *s = malloc(size + 1);
        memcpy(s, data, size);
        s[size] = 0;
        double b1, b2, eps, wd, clip;
        int rc = st_parse_adamw(s, &b1, &b2, &eps, &wd, &clip, err, sizeof err);
        check_result(rc, err);
        // accepted settings are in AdamWConfig's ranges (clip < 0: null)
        if (rc == GPT_OK && !(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1 && eps > 0 && wd >= 0 && clip != 0)) abort();
        free(s);
    }
    return 0;
}
