// Tests of tokens.c (SPEC.md "Token files"): round trips of uint16 and uint32 files, a count above 2^32
// in the header, and every malformed header and file, each of which must come back as one error line
// naming the file and the problem, never a crash. The headers are built here byte by byte, so the test
// does not trust the code it tests. Prints one line per check; exits non-zero if any failed.
//   test_tokens --seeds DIR   write a seed corpus for fuzz_tokens into DIR
#define _POSIX_C_SOURCE 200809L  // mkdtemp

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tokens.h"

static int n_checks, n_failed;
static char tmpdir[1024];

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

static void put32(unsigned char *p, uint32_t v) {
    for (int k = 0; k < 4; k++) p[k] = (unsigned char)(v >> (8 * k));
}

// a valid header: magic, version 1, width, vocab, count, kind
static void header(unsigned char *h, uint32_t width, uint32_t vocab, uint64_t count, const char *kind) {
    memset(h, 0, 1024);
    memcpy(h, "GTOK", 4);
    put32(h + 4, 1);
    put32(h + 8, width);
    put32(h + 12, vocab);
    put32(h + 16, (uint32_t)count);
    put32(h + 20, (uint32_t)(count >> 32));
    memcpy(h + 24, kind, strlen(kind));
}

static const char *path_in(const char *name) {
    static char buf[4][1200];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_file(const char *path, const void *a, size_t na, const void *b, size_t nb) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, 1, na, f) != na || (nb && fwrite(b, 1, nb, f) != nb) || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

// opens path expecting an error whose message names the file and contains want
static void expect_error(const char *path, const char *want, const char *what) {
    TokenFile tf;
    char err[512] = "";
    int rc = tok_open(path, &tf, err, sizeof err);
    check(rc != 0 && strstr(err, path) && strstr(err, want) && !strchr(err, '\n'), "%s: %s", what, err);
    if (rc == 0) tok_close(&tf);
}

static void test_round_trip(void) {
    unsigned char h[1024], ids[8];
    // uint16: vocab 65536, ids 0, 65535, 258, 1
    header(h, 2, 65536, 4, "bpe");
    const uint32_t want16[4] = {0, 65535, 258, 1};
    for (int i = 0; i < 4; i++) ids[2 * i] = (unsigned char)want16[i], ids[2 * i + 1] = (unsigned char)(want16[i] >> 8);
    write_file(path_in("u16.bin"), h, 1024, ids, 8);
    TokenFile tf;
    char err[512];
    int rc = tok_open(path_in("u16.bin"), &tf, err, sizeof err);
    check(rc == 0 && tf.h.vocab_size == 65536 && tf.h.bytes_per_token == 2 && tf.h.count == 4 && !strcmp(tf.h.kind, "bpe"),
          "uint16 file: header read %s", err);
    uint32_t got[4] = {0};
    int rr = rc == 0 ? tok_read(&tf, 0, 4, got, err, sizeof err) : 1;
    check(rr == 0 && !memcmp(got, want16, sizeof got), "uint16 file: ids read back %s", err);
    rr = rc == 0 ? tok_read(&tf, 1, 2, got, err, sizeof err) : 1;
    check(rr == 0 && got[0] == 65535 && got[1] == 258, "uint16 file: a window inside %s", err);
    rr = rc == 0 ? tok_read(&tf, 3, 2, got, err, sizeof err) : 0;
    check(rr != 0 && strstr(err, "u16.bin: ids 3..5 asked of 4"), "a window past the end: %s", err);
    if (rc == 0) tok_close(&tf);
    // uint32: vocab 2^31 - 1, ids 65536 and 2^31 - 2
    header(h, 4, 0x7FFFFFFF, 2, "word");
    const uint32_t want32[2] = {65536, 0x7FFFFFFE};
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++) ids[4 * i + k] = (unsigned char)(want32[i] >> (8 * k));
    write_file(path_in("u32.bin"), h, 1024, ids, 8);
    rc = tok_open(path_in("u32.bin"), &tf, err, sizeof err);
    rr = rc == 0 ? tok_read(&tf, 0, 2, got, err, sizeof err) : 1;
    check(rc == 0 && rr == 0 && tf.h.bytes_per_token == 4 && tf.h.count == 2 && !strcmp(tf.h.kind, "word") &&
              got[0] == want32[0] && got[1] == want32[1],
          "uint32 file: header and ids read back %s", err);
    if (rc == 0) {  // the file cut short after it was opened: a short read is an error, not a crash
        truncate(path_in("u32.bin"), 1024 + 6);
        rr = tok_read(&tf, 0, 2, got, err, sizeof err);
        check(rr != 0 && strstr(err, "u32.bin: read failed: the file shrank"), "a file cut while open: %s", err);
    }
    if (rc == 0) tok_close(&tf);
    // no ids: valid, nothing mapped
    header(h, 2, 10, 0, "char");
    write_file(path_in("empty_ids.bin"), h, 1024, NULL, 0);
    rc = tok_open(path_in("empty_ids.bin"), &tf, err, sizeof err);
    check(rc == 0 && tf.h.count == 0, "a file of no ids %s", err);
    if (rc == 0) tok_close(&tf);
}

static void test_large_counts(void) {
    // the header alone, with the file size it implies: counts past 2^31 and 2^32 are not truncated
    const uint64_t counts[] = {0x7FFFFFFFull + 1, 0xFFFFFFFFull + 6, (1ull << 40) + 3};
    unsigned char h[1024];
    for (int i = 0; i < 3; i++) {
        TokenHeader th;
        char err[512] = "";
        header(h, 2, 50257, counts[i], "bpe");
        int rc = tok_parse_header(h, 1024, 1024 + 2 * counts[i], "big", &th, err, sizeof err);
        check(rc == 0 && th.count == counts[i], "count %llu (2^31 and beyond) decoded %s", (unsigned long long)counts[i], err);
    }
    TokenHeader th;
    char err[512];
    header(h, 4, 70000, UINT64_MAX, "bpe");  // 1024 + 4 * count overflows: truncated, not wrapped around
    int rc = tok_parse_header(h, 1024, 1024 + 8, "huge", &th, err, sizeof err);
    check(rc != 0 && strstr(err, "truncated") && strstr(err, "more bytes than a file can hold"), "count 2^64 - 1: %s", err);
}

static void test_malformed(void) {
    unsigned char h[1024], ids[32] = {0};
    struct {
        int offset;
        uint32_t value;
        const char *want;
    } cases[] = {
        {4, 2, "version 2; this reader knows version 1"},
        {4, 0, "version 0"},
        {8, 3, "3 bytes per token; expected 2 (uint16) or 4 (uint32)"},
        {8, 1, "1 bytes per token"},
        {8, 4, "4 bytes per token for vocab_size 100; the format uses 2"},
        {12, 70000, "2 bytes per token for vocab_size 70000; the format uses 4"},
        {12, 0, "vocab_size 0 outside"},
        {12, 0x80000000u, "vocab_size 2147483648 outside"},
        {24, 0, "tokenizer kind"},           // empty
        {24, 0x20726863, "tokenizer kind"},  // "chr "
        {28, 0x41, "tokenizer kind"},        // "char", NUL, "A"
        {40, 1, "header bytes 40..1023 are not zero"},
        {1020, 1, "not zero"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        header(h, 2, 100, 10, "char");
        put32(h + cases[i].offset, cases[i].value);
        write_file(path_in("bad.bin"), h, 1024, ids, 20);
        char what[64];
        snprintf(what, sizeof what, "header int at byte %d = %u", cases[i].offset, cases[i].value);
        expect_error(path_in("bad.bin"), cases[i].want, what);
    }
    header(h, 2, 100, 10, "char");
    memcpy(h + 24, "aaaaaaaaaaaaaaaa", 16);  // 16 bytes, no NUL
    write_file(path_in("bad.bin"), h, 1024, ids, 20);
    expect_error(path_in("bad.bin"), "tokenizer kind", "a kind of 16 bytes");
    header(h, 2, 100, 10, "char");
    const int sizes[] = {18, 19, 21, 22};
    for (int i = 0; i < 4; i++) {
        write_file(path_in("size.bin"), h, 1024, ids, (size_t)sizes[i]);
        char want[128];
        snprintf(want, sizeof want, "%d bytes, but its header says 10 tokens of 2 bytes (1044 bytes with the header): %s",
                 1024 + sizes[i], sizes[i] < 20 ? "truncated" : "trailing bytes");
        expect_error(path_in("size.bin"), want, "a size that is not the header's");
    }
    const int cuts[] = {4, 8, 100, 1023};
    for (int i = 0; i < 4; i++) {
        write_file(path_in("cut.bin"), h, (size_t)cuts[i], NULL, 0);
        char want[64];
        snprintf(want, sizeof want, "truncated header, %d of 1024 bytes", cuts[i]);
        expect_error(path_in("cut.bin"), want, "a truncated header");
    }
}

static void test_not_token_files(void) {
    const char *text = "First Citizen:\nBefore we proceed any further, hear me speak.\n";
    write_file(path_in("input.txt"), text, strlen(text), NULL, 0);
    expect_error(path_in("input.txt"), "not a token file", "text");
    expect_error(path_in("input.txt"), "python transformer.py prepare", "text: how to convert");
    unsigned char nano[1000];  // nanoGPT's train.bin: uint16 ids and nothing else
    for (int i = 0; i < 1000; i++) nano[i] = (unsigned char)(i % 2 ? i % 197 : 0);
    write_file(path_in("train.bin"), nano, sizeof nano, NULL, 0);
    expect_error(path_in("train.bin"), "headerless nanoGPT", "a headerless nanoGPT file");
    expect_error(path_in("train.bin"), "from-nanogpt", "a headerless nanoGPT file: how to convert");
    write_file(path_in("odd.bin"), "\xff\xfe\x00", 3, NULL, 0);
    expect_error(path_in("odd.bin"), "not a token file (it does not start with 'GTOK')", "three odd bytes");
    write_file(path_in("zero.bin"), "", 0, NULL, 0);
    expect_error(path_in("zero.bin"), "not a token file", "an empty file");
    expect_error(path_in("nowhere.bin"), "no such file", "a missing file");
    mkdir(path_in("folder"), 0777);
    expect_error(path_in("folder"), "not a regular file", "a folder");
}

// seeds for fuzz_tokens: valid files of both widths, and a few broken ones
static int write_seeds(const char *dir) {
    unsigned char h[1024], ids[64];
    for (int i = 0; i < 64; i++) ids[i] = (unsigned char)(i * 7);
    const struct {
        uint32_t width, vocab;
        uint64_t count;
        const char *kind;
        size_t nbytes;
    } seeds[] = {
        {2, 65, 32, "char", 64}, {4, 70000, 16, "bpe", 64}, {2, 65, 0, "word", 0},
        {2, 65, 1ull << 40, "char", 64}, {4, 65, 16, "char", 64}, {2, 65, 33, "char", 64},
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/seed%zu", dir, i);
        header(h, seeds[i].width, seeds[i].vocab, seeds[i].count, seeds[i].kind);
        write_file(path, h, sizeof h, ids, seeds[i].nbytes);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--seeds")) return write_seeds(argv[2]);
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_tokens.XXXXXX", t && t[0] ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_large_counts();
    test_malformed();
    test_not_token_files();
    const char *names[] = {"u16.bin", "u32.bin", "empty_ids.bin", "bad.bin", "size.bin", "cut.bin",
                           "input.txt", "train.bin", "odd.bin", "zero.bin"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(path_in(names[i]));
    rmdir(path_in("folder"));
    rmdir(tmpdir);
    printf("%d checks, %d failed\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
