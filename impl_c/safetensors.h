// SPEC.md "Checkpoints" in C: the reader and atomic writer of shared/checkpoint.py, with the same
// layouts, names and checks, so that each reads every file the other writes. libc (and POSIX file
// calls) only.
//
// Two layouts are read (SPEC.md "Checkpoints"):
//   - our single .safetensors file: "config" (GPTConfig.to_json()) and "format" in __metadata__, the
//     canonical tensors, and for a training checkpoint "step", "adamw" and optim.m.<name> /
//     optim.v.<name> for every parameter;
//   - a Hugging Face directory: config.json (GPT2Config keys) + model.safetensors, names with or
//     without "transformer.", mask buffers *.attn.bias / *.attn.masked_bias ignored, lm_head.weight
//     accepted only if it equals wte.weight.
// The same name normalization applies to single files, as in shared/checkpoint.py.
//
// Everything a hostile file can get wrong is checked, and reported as an error code with a message
// naming the file and the problem (err is "" after a success); nothing aborts, nothing leaks. The
// safetensors rules are those of the reference (Rust) implementation: 8-byte little-endian header
// length, at most 100 MB and within the file; the header a JSON object (parsed strictly: UTF-8,
// escapes, depth <= 128); every tensor
// {"dtype", "shape", "data_offsets"} with a known dtype, begin <= end, end - begin = numel * dtype
// size, and the tensors, sorted by offset, tiling the data section exactly (no gap, no overlap, no
// trailing bytes). On top of those, the checks of SPEC.md "Bad input" and "Limits": the config valid
// (gpt.c's gpt_config_check, the C tier's one config check and parameter table), the file big enough
// for it (at least 4 + 12 n_layer tensors and 2 bytes per parameter, checked before anything is sized
// from the config), no tensor missing, unexpected or present twice, shapes as the config says, a float
// dtype, finite values, second moments >= 0, the step in 0 .. 2^53, the AdamW settings in range.
//
// Deliberate differences from the Python reader (all stricter, none affects a file either writer makes):
//   - duplicate keys in the header (a tensor or a metadata key listed twice) are rejected; JSON parsers
//     keep the last one;
//   - the header's tensor entries must be JSON objects (serde also accepts [dtype, shape, offsets]);
//   - JSON nests at most 128 deep in config.json and the metadata's JSON strings too (Python's limit is
//     its recursion limit, about 1000);
//   - parameter and moment tensors must be F32, F16 or F64 (numpy's float types; F16 and F64 are
//     converted to float32, and an F64 value outside float32's range is rejected); sub-byte dtypes
//     (F4, F6_*) are not supported even for ignored buffers; lm_head.weight must have a float dtype;
//   - "adamw" must be a JSON object whose keys are among beta1, beta2, eps, weight_decay, grad_clip
//     (as in Python) and whose values are finite numbers, never bools (grad_clip: a number or null),
//     in AdamWConfig's ranges;
//   - "step" accepts what Python's int() does, except non-ASCII digits.
// As in Python, "format" is stored but not checked on reading.
#ifndef SAFETENSORS_H
#define SAFETENSORS_H

#include <stddef.h>

#include "gpt.h"

// error codes beyond gpt.h's (GPT_OK, GPT_ERR_CONFIG for ConfigError, GPT_ERR_INPUT for a bad
// argument, GPT_ERR_MEMORY): the Python binding maps ST_ERR_CHECKPOINT to CheckpointError
enum {
    ST_ERR_CHECKPOINT = 5,  // missing, corrupt, truncated, or the wrong tensors (CheckpointError)
    ST_ERR_IO = 6,          // the operating system refused a read or a write (permissions, disk full)
    ST_ERR_BUFFER = 7,      // an output buffer is too small; the message says how many bytes it needs
    ST_ERR_NOT_FOUND = 8,   // st_get_metadata: the file has no such metadata key
};

#define ST_MAX_HEADER 100000000ull  // the reference implementation's limit on the JSON header
#define ST_FORMAT "gpt-tiers/1"

// Reading is two calls: st_read_config, which runs every check that needs only the header, then
// st_read_checkpoint into buffers of gpt_num_params(cfg) floats each. `path` is a .safetensors file or
// a Hugging Face directory. err receives a message (may be NULL, errlen 0). Returns GPT_OK or a code.

// *cfg: the checkpoint's config; *has_optimizer (nullable): 1 for a training checkpoint, else 0.
// The ablations (SPEC.md "Ablations") are JSON true or false in the config (config.json too, where
// Hugging Face's scale_attn_weights means ours); one that is absent is true (1), any other value is
// GPT_ERR_CONFIG. The writer writes one only when it is false, as GPTConfig.to_json() does.
int st_read_config(const char *path, GPTConfig *cfg, int *has_optimizer, char *err, size_t errlen);

// Fills params (required) and, when not NULL, m and v with the weights and AdamW moments in the
// canonical order (shared/params.py), and *step (nullable) with the AdamW steps taken (0 .. 2^53). cfg must be the
// file's config (from st_read_config; else GPT_ERR_CONFIG). A checkpoint without optimizer state gives
// m = v = 0 and step 0. metadata_json_out (nullable) receives __metadata__ as one JSON object
// {"key": "value", ...} ("{}" for a Hugging Face directory); if metadata_cap is too small,
// ST_ERR_BUFFER is returned before anything is read. Also checks what the header cannot show: every
// value finite, lm_head.weight equal to wte.weight. On an error the buffers hold unspecified values.
int st_read_checkpoint(const char *path, GPTConfig cfg, float *params, float *m, float *v, int64_t *step,
                       char *metadata_json_out, size_t metadata_cap, char *err, size_t errlen);

// The __metadata__ value of key, NUL-terminated, into out (cap bytes); key NULL gives the whole
// __metadata__ as a JSON object. ST_ERR_NOT_FOUND if the key is absent (a Hugging Face directory has no
// metadata); ST_ERR_BUFFER if cap is too small. The file's header is fully checked first. (A value
// holding U+0000 ends there as a C string; the whole-metadata JSON escapes it.)
int st_get_metadata(const char *path, const char *key, char *out, size_t cap, char *err, size_t errlen);

// Writes our single-file format, atomically: a uniquely named temporary file in the destination's
// folder (created if missing), written, fsync'ed and renamed over path; on any failure it is removed
// and path is untouched. m and v both NULL: a weights-only file (step ignored); both given: a training
// checkpoint with "step" (0 .. 2^53). extra_keys/extra_values: n_extra more metadata strings (UTF-8),
// e.g. "tokenizer", "train_settings"; "format", "config" and "step" are the writer's own
// (ST_ERR_CHECKPOINT, as in Python); "adamw" is accepted only in a training checkpoint and must be
// readable (see above). ST_ERR_CHECKPOINT for what the readers would reject: a non-finite weight or
// moment, a negative second moment, a step outside 0 .. 2^53.
// The layout is that of safetensors' own serializer (tensors sorted by name, their data in that order,
// the header padded with spaces to a multiple of 8), so for the same content the two writers produce
// the same tensor entries and byte-identical data; only the order of the __metadata__ keys differs
// (sorted here, a hash map's order there).
int st_write_checkpoint(const char *path, GPTConfig cfg, const float *params, const float *m, const float *v,
                        int64_t step, const char *const *extra_keys, const char *const *extra_values, int n_extra,
                        char *err, size_t errlen);

// ---- in-memory twins, for tests and fuzzing: `name` labels the messages ----

// st_read_config and st_read_checkpoint on the bytes of a single .safetensors file
int st_read_config_buffer(const void *data, size_t len, const char *name, GPTConfig *cfg, int *has_optimizer,
                          char *err, size_t errlen);
int st_read_checkpoint_buffer(const void *data, size_t len, const char *name, GPTConfig cfg, float *params,
                              float *m, float *v, int64_t *step, char *metadata_json_out, size_t metadata_cap,
                              char *err, size_t errlen);
// a Hugging Face directory given as the text of config.json and the bytes of model.safetensors.
// params NULL: *cfg receives the config (header checks only); params given: *cfg is the expected
// config, and params receives the weights.
int st_read_hf_buffers(const char *config_json, size_t config_len, const void *weights, size_t weights_len,
                       const char *name, GPTConfig *cfg, float *params, char *err, size_t errlen);

// The "adamw" metadata value (a JSON object, as shared/checkpoint.py writes it) as numbers; keys that
// are absent keep AdamWConfig's defaults (0.9, 0.95, 1e-8, 0.1, 1.0). *grad_clip is negative when the
// file says null (no clipping). Values outside AdamWConfig's ranges (beta1, beta2 in [0, 1), eps > 0,
// weight_decay >= 0, grad_clip null or > 0) are refused. Returns GPT_OK or ST_ERR_CHECKPOINT.
int st_parse_adamw(const char *json, double *beta1, double *beta2, double *eps, double *weight_decay,
                   double *grad_clip, char *err, size_t errlen);

#endif
