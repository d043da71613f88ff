// SPEC.md "Token files" in C: the reader of shared/tokens.py's files, with the same checks. The ids are
// read window by window (pread) as batches need them, as llm.c's dataloader reads its .bin files, so a
// program training on a corpus takes memory for its batches, not for the corpus. Not mmap: on Linux a
// mapping keeps every page it has touched resident, and the kernel maps a large folio of the file (up
// to megabytes) per touch, so a run's memory grew toward the file's size (211 MB after 50 steps on a
// 286 MB file, benchmarks/token_memory.py); and a file truncated under a mapping kills the reader with
// SIGBUS, where pread returns a short read, an error. libc and POSIX (open, fstat, pread) only.
//
// The header: 256 little-endian int32 (1024 bytes), then count ids of 2 (uint16) or 4 (uint32) bytes:
//   [0] magic "GTOK" (0x4B4F5447)  [1] version 1  [2] bytes per token  [3] vocab_size
//   [4], [5] count, low and high 32 bits  [6..9] tokenizer kind, NUL-padded ASCII  [10..255] zero
#ifndef TOKENS_H
#define TOKENS_H

#include <stddef.h>
#include <stdint.h>

#define TOK_HEADER_BYTES 1024
#define TOK_MAGIC 0x4B4F5447u  // the bytes "GTOK"
#define TOK_VERSION 1
#define TOK_KIND_START 24  // bytes [24, 40): the tokenizer kind
#define TOK_KIND_END 40

typedef struct {
    int vocab_size;       // in [1, 2^31)
    int bytes_per_token;  // 2 when vocab_size <= 65536, else 4
    uint64_t count;       // ids in the file
    char kind[16];        // "char", "bpe", "word": 1 to 15 of a-z 0-9 _ -, NUL-terminated
} TokenHeader;

typedef struct {
    TokenHeader h;
    int fd;  // open for reading, -1 when closed
    const char *path;
} TokenFile;

// Checks the header at the start of buf (len bytes: the file's first bytes, up to 1024) against
// everything the header and the file's size show. 0 on success; otherwise non-zero, and err holds one
// line "name: problem" (for a file without the magic, with a hint of what it may be and how to convert).
int tok_parse_header(const unsigned char *buf, size_t len, uint64_t file_size, const char *name,
                     TokenHeader *h, char *err, size_t errlen);

// Opens and checks a token file (path must outlive it). 0 on success (close with tok_close); otherwise
// non-zero with one line in err, and nothing to close.
int tok_open(const char *path, TokenFile *tf, char *err, size_t errlen);
void tok_close(TokenFile *tf);

// ids [start, start + n) into out (n <= count - start), decoded from little-endian: the same on any
// host. 0 on success; otherwise non-zero with one line in err (a range past the end, a failed or short
// read: the file changed since it was opened).
int tok_read(const TokenFile *tf, uint64_t start, size_t n, uint32_t *out, char *err, size_t errlen);

#endif
