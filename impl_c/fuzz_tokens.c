// libFuzzer target for tokens.c: any bytes, as a token file, must give 0 or one error line, never a
// crash, a leak, an out-of-bounds access or undefined behaviour. Each input is checked twice:
//   tok_parse_header with the input's true size, and with a size taken from its last 8 bytes (any
//   64-bit value: the count and size arithmetic must not overflow);
//   then, as a file (an in-memory memfd): tok_open, and when it opens, tok_read over every id in
//   windows of up to 100, each id below vocab_size's bound of 2^31 - 1.
// Seeds: test_tokens --seeds DIR. Build and run: make fuzz-tokens FUZZ_SECONDS=600
#define _GNU_SOURCE  // memfd_create
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tokens.h"

static void check_message(int rc, const char *err) {
    if (rc != 0 && (err[0] == 0 || strlen(err) >= 511)) {
        fprintf(stderr, "bad result: rc %d, err '%s'\n", rc, err);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512] = "";
    TokenHeader h;
    size_t head = size < TOK_HEADER_BYTES ? size : TOK_HEADER_BYTES;
    int rc = tok_parse_header(data, head, size, "fuzz", &h, err, sizeof err);
    check_message(rc, err);
    if (rc == 0 && (uint64_t)TOK_HEADER_BYTES + h.count * (uint64_t)h.bytes_per_token != size) abort();
    if (size >= 8) {
        uint64_t claimed = 0;
        for (int k = 0; k < 8; k++) claimed |= (uint64_t)data[size - 8 + k] << (8 * k);
        err[0] = 0;
        check_message(tok_parse_header(data, head, claimed, "fuzz", &h, err, sizeof err), err);
    }

    int fd = memfd_create("fuzz_tokens", 0);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    TokenFile tf;
    err[0] = 0;
    rc = tok_open(path, &tf, err, sizeof err);
    check_message(rc, err);
    if (rc == 0) {
        uint32_t ids[100];
        for (uint64_t start = 0; start < tf.h.count; start += 100) {
            size_t n = tf.h.count - start < 100 ? (size_t)(tf.h.count - start) : 100;
            if (tok_read(&tf, start, n, ids, err, sizeof err) != 0) abort();  // the file is as checked
        }
        if (tok_read(&tf, tf.h.count, 1, ids, err, sizeof err) == 0) abort();  // past the end: refused
        tok_close(&tf);
    }
    close(fd);
    return 0;
}
