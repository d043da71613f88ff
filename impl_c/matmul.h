// The matmuls a GPT needs for training, each fast kernel beside its naive reference (test_gpt.c holds
// them to each other). Shapes use the model's letters: N = B*T rows, C in, OC out, V vocabulary.
// Linear weights are stored (in, out) as in the GPT-2 checkpoint (SPEC.md "Parameters"): y = x @ W + b.
//
// Every fast function returns 0, or -1 if its packing buffers could not be allocated (nothing is
// written then). Results do not depend on the number of OpenMP threads: every output element is
// computed by one thread, summing over the inner dimension in one fixed order, so repeated runs and
// runs with any thread count are bit-identical.
#ifndef MATMUL_H
#define MATMUL_H

// ---- linear layers: W (C, OC) ----

// out (N, OC) = inp (N, C) @ W (C, OC) + bias (OC); bias may be NULL
int matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                   int OC);
// dinp (N, C) = dout @ W^T;  dweight (C, OC) += inp^T @ dout;  dbias (OC) += sum over rows of dout
// (dbias may be NULL). The input's gradient is written, the parameters' gradients accumulated.
int matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                    const float *weight, int N, int C, int OC);

// ---- the tied head: wte (V, C) is used transposed, logits = x @ wte^T (SPEC.md "Architecture") ----

// logits (N, V) = x (N, C) @ wte^T
int head_forward(float *logits, const float *x, const float *wte, int N, int C, int V);
// dx (N, C) = dlogits @ wte;  dwte (V, C) += dlogits^T @ x
int head_backward(float *dx, float *dwte, const float *dlogits, const float *x, const float *wte, int N,
                  int C, int V);

// ---- the naive references: the definitions, as plain loops (single thread, float accumulation) ----

void matmul_forward_naive(float *out, const float *inp, const float *weight, const float *bias, int N,
                          int C, int OC);
void matmul_backward_naive(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, int N, int C, int OC);
void head_forward_naive(float *logits, const float *x, const float *wte, int N, int C, int V);
void head_backward_naive(float *dx, float *dwte, const float *dlogits, const float *x, const float *wte,
                         int N, int C, int V);

// ---- the engine under the fast functions ----

// c (M, N) = [c +] op(A) (M, K) @ op(B) (K, N), where A[i][k] = a[i*rsa + k*csa] and
// B[k][j] = b[k*rsb + j*csb]: the strides say whether an operand is read transposed. c is row-major
// with row stride ldc. accumulate = 0 overwrites c, 1 adds to it.
int gemm(int M, int N, int K, const float *a, long rsa, long csa, const float *b, long rsb, long csb,
         float *c, long ldc, int accumulate);
// the same product by the definition, one element at a time (the reference for gemm)
void gemm_naive(int M, int N, int K, const float *a, long rsa, long csa, const float *b, long rsb,
                long csb, float *c, long ldc, int accumulate);

#endif
