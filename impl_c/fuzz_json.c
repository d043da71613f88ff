// libFuzzer target for the settings JSON that safetensors.c parses with Python's json.loads dialect:
// the "adamw" metadata value, a Hugging Face config.json, and our "config" metadata value. Any text
// must give GPT_OK or an error code with a message, never a crash, a leak, an out-of-bounds access or
// undefined behaviour; what is accepted must be in range (SPEC.md "Limits"). The first byte picks
// what the rest is (mod 3):
//   0: the "adamw" value: st_parse_adamw; accepted settings are in AdamWConfig's ranges;
//   1: config.json of a Hugging Face directory, with an empty model.safetensors: st_read_hf_buffers;
//   2: the "config" value of a single file without tensors, escaped into its header:
//      st_read_config_buffer (a config it accepts then fails on the file's missing tensors).
// Seeds: test_safetensors --json-seeds DIR. Build and run: make fuzz-json FUZZ_SECONDS=600
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

// what every call must return: a known code, and a message exactly when it failed
static void check_result(int rc, const char *err) {
    int known = rc == GPT_OK || rc == GPT_ERR_CONFIG || rc == GPT_ERR_INPUT || rc == GPT_ERR_MEMORY ||
                rc == ST_ERR_CHECKPOINT;
    if (!known || (rc == GPT_OK) != (err[0] == 0) || strlen(err) >= 512) {
        fprintf(stderr, "bad result: rc %d, err '%s'\n", rc, err);
        abort();
    }
}

// a safetensors file whose only content is {"__metadata__":{"config":"<text>"}}; every byte of the text
// escaped (\u00XX above 0x7F), so the header is always valid JSON and the text reaches the config parser
static unsigned char *file_with_config(const uint8_t *text, size_t n, size_t *len) {
    static const char head[] = "{\"__metadata__\":{\"config\":\"", tail[] = "\"}}";
    unsigned char *out = malloc(8 + sizeof head + 6 * n + sizeof tail);
    size_t k = 8;
    memcpy(out + k, head, sizeof head - 1), k += sizeof head - 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = text[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') out[k++] = c;
        else k += (size_t)sprintf((char *)out + k, "\\u%04x", c);
    }
    memcpy(out + k, tail, sizeof tail - 1), k += sizeof tail - 1;
    for (int b = 0; b < 8; b++) out[b] = (unsigned char)((uint64_t)(k - 8) >> (8 * b));
    *len = k;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    if (size < 1) return 0;
    int mode = data[0] % 3;
    data++, size--;
    if (mode == 0) {
        char *s = malloc(size + 1);
        memcpy(s, data, size);
        s[size] = 0;
        double b1, b2, eps, wd, clip;
        int rc = st_parse_adamw(s, &b1, &b2, &eps, &wd, &clip, err, sizeof err);
        check_result(rc, err);
        int in_range = b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1 && eps > 0 && wd >= 0 && clip != 0;
        if (rc == GPT_OK && !in_range) abort();
        free(s);
    } else if (mode == 1) {
        char *config = malloc(size ? size : 1);  // exactly its size: no terminator to lean on
        memcpy(config, data, size);
        GPTConfig c;
        int rc = st_read_hf_buffers(config, size, "", 0, "fuzz", &c, NULL, err, sizeof err);
        check_result(rc, err);
        if (rc == GPT_OK) abort();  // an empty model.safetensors is never a checkpoint
        free(config);
    } else {
        size_t len;
        unsigned char *file = file_with_config(data, size, &len);
        GPTConfig c;
        int rc = st_read_config_buffer(file, len, "fuzz", &c, NULL, err, sizeof err);
        check_result(rc, err);
        if (rc == GPT_OK) abort();  // no tensors: never a checkpoint
        free(file);
    }
    return 0;
}
