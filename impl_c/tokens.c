// SPEC.md "Token files": the header check and the reads; see tokens.h. The messages follow
// shared/tokens.py's, so a file is refused for the same reason, in the same words, by both.
#define _POSIX_C_SOURCE 200809L  // pread, O_CLOEXEC

#include "tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UINT16_VOCAB 65536  // the largest vocabulary whose ids fit in uint16

static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return 1;
}

static uint32_t u32_at(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// what a file without the magic may be (shared/tokens.py _hint): text, or a headerless nanoGPT file
static const char *hint(const unsigned char *buf, size_t len, uint64_t file_size) {
    int text = len > 0;
    for (size_t i = 0; i < len && text; i++)  // printable ASCII, whitespace, or UTF-8's high bytes
        text = buf[i] >= 0x20 ? buf[i] != 0x7F : buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\t';
    if (text) return "; it looks like text: make token files with `python transformer.py prepare ...`";
    if (file_size > 0 && file_size % 2 == 0)
        return "; if it is a headerless nanoGPT file (uint16 ids, no header), convert it with "
               "`python -m shared.tokens from-nanogpt FILE OUT --vocab-size V --kind KIND`";
    return "";
}

int tok_parse_header(const unsigned char *buf, size_t len, uint64_t file_size, const char *name,
                     TokenHeader *h, char *err, size_t errlen) {
    if (len < 4 || u32_at(buf) != TOK_MAGIC)
        return fail(err, errlen, "%s: not a token file (it does not start with 'GTOK')%s", name,
                    hint(buf, len < TOK_HEADER_BYTES ? len : TOK_HEADER_BYTES, file_size));
    if (len < TOK_HEADER_BYTES)
        return fail(err, errlen, "%s: truncated header, %zu of %d bytes", name, len, TOK_HEADER_BYTES);
    uint32_t version = u32_at(buf + 4), width = u32_at(buf + 8), vocab = u32_at(buf + 12);
    if (version != TOK_VERSION)
        return fail(err, errlen, "%s: token file version %u; this reader knows version %d", name, version, TOK_VERSION);
    if (width != 2 && width != 4)
        return fail(err, errlen, "%s: %u bytes per token; expected 2 (uint16) or 4 (uint32)", name, width);
    if (vocab < 1 || vocab > 0x7FFFFFFFu)
        return fail(err, errlen, "%s: vocab_size %u outside [1, 2147483647]", name, vocab);
    uint32_t expected_width = vocab <= UINT16_VOCAB ? 2 : 4;
    if (width != expected_width)
        return fail(err, errlen, "%s: %u bytes per token for vocab_size %u; the format uses %u (uint16 up to %d ids, else uint32)",
                    name, width, vocab, expected_width, UINT16_VOCAB);
    // the kind: 1 to 15 of a-z 0-9 _ -, then NULs only
    int n = 0, ok = 1;
    while (n < TOK_KIND_END - TOK_KIND_START && buf[TOK_KIND_START + n]) n++;
    for (int i = 0; i < TOK_KIND_END - TOK_KIND_START; i++) {
        unsigned char c = buf[TOK_KIND_START + i];
        if (i < n) ok &= (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        else ok &= c == 0;
    }
    if (!ok || n == 0 || n > 15)
        return fail(err, errlen, "%s: the tokenizer kind is not a NUL-padded name of a-z, 0-9, _ and -", name);
    for (int i = TOK_KIND_END; i < TOK_HEADER_BYTES; i++)
        if (buf[i]) return fail(err, errlen, "%s: header bytes %d..%d are not zero (a newer format?)", name, TOK_KIND_END, TOK_HEADER_BYTES - 1);
    uint64_t count = (uint64_t)u32_at(buf + 16) | (uint64_t)u32_at(buf + 20) << 32;
    // 1024 + count * width bytes, compared without overflow: a count no file can hold is "truncated"
    uint64_t room = file_size >= TOK_HEADER_BYTES ? file_size - TOK_HEADER_BYTES : 0;
    if (count > room / width || room != count * width) {
        char expected[64] = "more bytes than a file can hold";
        if (count <= (UINT64_MAX - TOK_HEADER_BYTES) / width)
            snprintf(expected, sizeof expected, "%llu bytes with the header", (unsigned long long)(TOK_HEADER_BYTES + count * width));
        return fail(err, errlen, "%s: %llu bytes, but its header says %llu tokens of %u bytes (%s): %s",
                    name, (unsigned long long)file_size, (unsigned long long)count, width, expected,
                    count > room / width ? "truncated" : "trailing bytes");
    }
    h->vocab_size = (int)vocab;
    h->bytes_per_token = (int)width;
    h->count = count;
    memcpy(h->kind, buf + TOK_KIND_START, (size_t)n);
    h->kind[n] = 0;
    return 0;
}

// n bytes at off into buf; 0 on success, else -1 with errno set (0 for a short read: end of file)
static int read_at(int fd, void *buf, size_t n, uint64_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = 0;
            return -1;
        }
        done += (size_t)r;
    }
    return 0;
}

int tok_open(const char *path, TokenFile *tf, char *err, size_t errlen) {
    memset(tf, 0, sizeof *tf);
    tf->fd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block us
    if (fd < 0) {
        if (errno == ENOENT) return fail(err, errlen, "%s: no such file", path);
        return fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, errlen, "%s: not a regular file", path);
    }
    uint64_t size = (uint64_t)st.st_size;
    unsigned char head[TOK_HEADER_BYTES];
    size_t got = size < TOK_HEADER_BYTES ? (size_t)size : TOK_HEADER_BYTES;
    if (read_at(fd, head, got, 0) != 0) {
        close(fd);
        return fail(err, errlen, "%s: read failed: %s", path, errno ? strerror(errno) : "the file shrank");
    }
    int rc = tok_parse_header(head, got, size, path, &tf->h, err, errlen);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    tf->fd = fd;
    tf->path = path;
    return 0;
}

void tok_close(TokenFile *tf) {
    if (tf->fd >= 0) close(tf->fd);
    memset(tf, 0, sizeof *tf);
    tf->fd = -1;
}

int tok_read(const TokenFile *tf, uint64_t start, size_t n, uint32_t *out, char *err, size_t errlen) {
    if (start > tf->h.count || n > tf->h.count - start)
        return fail(err, errlen, "%s: ids %llu..%llu asked of %llu", tf->path, (unsigned long long)start,
                    (unsigned long long)(start + n), (unsigned long long)tf->h.count);
    size_t w = (size_t)tf->h.bytes_per_token;
    unsigned char *bytes = (unsigned char *)out;  // read into out's own memory (4n >= w n bytes) ...
    if (read_at(tf->fd, bytes, n * w, TOK_HEADER_BYTES + start * w) != 0)
        return fail(err, errlen, "%s: read failed: %s", tf->path, errno ? strerror(errno) : "the file shrank since it was opened");
    for (size_t i = n; i-- > 0;) {  // ... and decode from the last id down: out[i] only covers bytes >= w i
        const unsigned char *p = bytes + i * w;
        uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8;
        if (w == 4) v |= (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        out[i] = v;
    }
    return 0;
}
