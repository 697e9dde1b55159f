"""Error model of the deterministic backward's fixed-point dQ (src/cuda/common/repro_dq.cuh), in numpy.

What it does: for random attention rows (M query rows against N keys, head dim D, 128-key blocks) it
computes the exact dQ in fp64, then dQ as the kernel sums it in deterministic mode -- each key block's
term rounded to the row's unit u_i = 2^(E - 30) with 2^E > 2 B_i, B_i = max|K| (|dO_i| max_j |V_j| + |D_i|)
(the pre-pass's bound), summed as integers -- and as an fp32 accumulation for comparison. It prints the
largest error against the bf16 rounding of the largest element (docs/design.md's floor) and the median
elementwise relative error, for plain random inputs and for inputs that loosen the bound (an outlier
channel of K, an outlier row of V).

A model, not the kernel: dS is not rounded to 16 bits and the softmax scale is 1 / sqrt(D) inside S.
Usage: python3 bench/gpu/det_dq_error.py   (numpy only; a few seconds)
"""
import numpy as np


def run(rng, n, d=128, m=32, k_outlier=1.0, v_outlier=1.0, block_n=128):
    q, k, v, do = (rng.standard_normal((rows, d)) for rows in (m, n, n, m))
    k[:, 5] *= k_outlier  # one outlier channel of K
    v[0] *= v_outlier  # one outlier row of V
    s = q @ k.T / np.sqrt(d)
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d_i = (do * (p @ v)).sum(1, keepdims=True)
    ds = p * (do @ v.T - d_i)
    exact = ds @ k
    bound = np.abs(k).max() * (np.linalg.norm(do, axis=1) * np.linalg.norm(v, axis=1).max() + np.abs(d_i[:, 0]))
    unit = 2.0 ** (np.floor(np.log2(2 * bound)) + 1 - 30)
    fixed = np.zeros_like(exact)
    f32 = np.zeros(exact.shape, np.float32)
    for b in range(n // block_n):
        cols = slice(b * block_n, (b + 1) * block_n)
        term = (ds[:, cols].astype(np.float32) @ k[cols].astype(np.float32)).astype(np.float64)
        fixed += np.rint(term / unit[:, None])
        f32 += term.astype(np.float32)
    det = fixed * unit[:, None]
    floor = np.abs(exact).max() * 2.0**-8
    err = np.abs(det - exact).max()
    rel = np.median(np.abs(det - exact) / np.maximum(np.abs(exact), 1e-300))
    print(f"N={n:6d} K outlier x{k_outlier:<4g} V outlier x{v_outlier:<4g} bound/max|dQ| = 2^{np.log2(bound.max() / np.abs(exact).max()):5.1f}  "
          f"fixed-point max err {err:.2e} = {err / floor:.3f} floor, median rel {rel:.1e}; fp32 max err {np.abs(f32 - exact).max():.1e}")


def main():
    rng = np.random.default_rng(0)
    for n in (8192, 32768, 131072):
        run(rng, n)
    for k_outlier in (10.0, 100.0):
        run(rng, 8192, k_outlier=k_outlier)
    run(rng, 8192, v_outlier=30.0)
    run(rng, 131072, k_outlier=30.0)


if __name__ == "__main__":
    main()
