/* One instantiation of the kernels for the floating type REAL (suffix SUF); included twice by
 * kernels.c. Every kernel repeats the eager implementation's operations in the same order,
 * each rounded on its own (built with -ffp-contract=off), so results are bit-identical. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUF)

/* One LIF step for a block of `len` neurons: V = beta*U + Z, then the reset.
 * Writes the new membrane into v and, if s is not NULL, the output (spike or membrane). */
static inline void FN(lif_step_)(REAL *restrict v, const REAL *restrict z, const REAL *restrict b,
                                 const REAL *restrict th, REAL *restrict s, int64_t len,
                                 int reset, int delay, int readout)
{
    if (readout) {
        for (int64_t j = 0; j < len; ++j) {
            REAL vp = v[j] * b[j];
            vp = vp + z[j];
            v[j] = vp;
            if (s) s[j] = vp;
        }
        return;
    }
    for (int64_t j = 0; j < len; ++j) {
        const REAL u = v[j];
        REAL vp = u * b[j];
        vp = vp + z[j];
        REAL spike;
        if (delay) {
            /* R_t = H(U_{t-1} - theta), the previous step's spike */
            const REAL r = (u > th[j]) ? (REAL)1 : (REAL)0;
            if (reset == 0) vp = vp * ((u <= th[j]) ? (REAL)1 : (REAL)0);
            else if (reset == 1) vp = vp + (((REAL)-1 * r) * th[j]);
            spike = (vp > th[j]) ? (REAL)1 : (REAL)0;
        } else {
            spike = (vp > th[j]) ? (REAL)1 : (REAL)0;
            if (reset == 0) vp = vp * ((vp <= th[j]) ? (REAL)1 : (REAL)0);
            else if (reset == 1) vp = vp + (((REAL)-1 * spike) * th[j]);
        }
        v[j] = vp;
        if (s) s[j] = spike;
    }
}

static inline void FN(load_param_)(REAL *restrict dst, const REAL *restrict src, int64_t per_neuron,
                                   int64_t i0, int64_t len)
{
    for (int64_t j = 0; j < len; ++j) dst[j] = per_neuron ? src[i0 + j] : src[0];
}

/* A thread's scratch buffer of `count` values; sets *failed if it cannot be allocated. */
static REAL *FN(thread_buffer_)(size_t count, int *failed)
{
    REAL *buf = (REAL *)malloc(sizeof(REAL) * count);
    if (!buf) {
#pragma omp atomic write
        *failed = 1;
    }
    return buf;
}

/* A block's start: its parameters into b and th, its initial membrane into v; returns its
 * length (the last block may be partial). */
static inline int64_t FN(block_start_)(REAL *v, REAL *b, REAL *th, const REAL *v0,
                                       const REAL *beta, int64_t beta_full, const REAL *theta,
                                       int64_t theta_full, int64_t i0, int64_t n, int64_t block)
{
    const int64_t len = (n - i0) < block ? (n - i0) : block;
    FN(load_param_)(b, beta, beta_full, i0, len);
    FN(load_param_)(th, theta, theta_full, i0, len);
    for (int64_t j = 0; j < len; ++j) v[j] = v0[i0 + j];
    return len;
}

/* Forward of the LIF recursion over T steps for n neurons (z: T x n, row-major).
 * out: T x n outputs; v_last: n final membranes. Returns -1 if a buffer cannot be allocated. */
int FN(spikelfp_lif_forward_)(const REAL *z, const REAL *v0, const REAL *beta, int64_t beta_full,
                              const REAL *theta, int64_t theta_full, REAL *out, REAL *v_last,
                              int64_t steps, int64_t n, int reset, int delay, int readout,
                              int threads)
{
    const int64_t block = MAX_BLOCK;
    const int64_t nblocks = (n + block - 1) / block;
    int failed = 0;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        REAL *buf = FN(thread_buffer_)(3 * (size_t)block, &failed);
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < nblocks; ++blk) {
            if (!buf) continue;
            REAL *v = buf, *b = buf + block, *th = buf + 2 * block;
            const int64_t i0 = blk * block;
            const int64_t len = FN(block_start_)(v, b, th, v0, beta, beta_full, theta,
                                                 theta_full, i0, n, block);
            for (int64_t t = 0; t < steps; ++t)
                FN(lif_step_)(v, z + t * n + i0, b, th, out + t * n + i0, len, reset, delay,
                              readout);
            for (int64_t j = 0; j < len; ++j) v_last[i0 + j] = v[j];
        }
        free(buf);
    }
    return failed ? -1 : 0;
}

/* Backward of the LIF rule (see spikelfp/lfp/neuron_rules.py), block by block: the forward is
 * replayed to recover U_{t-1} (kept for the block only), then for t = T..1
 *   a = r_t + q;  D = |(beta U + Z) - U| + |U| + eps;  n = a / D;  q = (beta U / D) a;
 *   rho_t = n Z.
 * rho: T x n; q0: n (reward to the initial membrane); n_out / u_out: T x n or NULL. */
int FN(spikelfp_lif_backward_)(const REAL *r, const REAL *q_last, const REAL *z, const REAL *v0,
                               const REAL *beta, int64_t beta_full, const REAL *theta,
                               int64_t theta_full, REAL eps, REAL *rho, REAL *q0, REAL *n_out,
                               REAL *u_out, int64_t steps, int64_t n, int reset, int delay,
                               int readout, int threads)
{
    /* a block's replayed membranes (steps x block) should stay in L2 */
    int64_t block = REPLAY_BYTES / ((int64_t)sizeof(REAL) * (steps > 0 ? steps : 1));
    block = block < MIN_BLOCK ? MIN_BLOCK : (block > MAX_BLOCK ? MAX_BLOCK : block);
    const int64_t nblocks = (n + block - 1) / block;
    int failed = 0;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        REAL *buf = FN(thread_buffer_)((size_t)((steps > 0 ? steps : 1) + 4) * block, &failed);
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < nblocks; ++blk) {
            if (!buf) continue;
            REAL *v = buf, *b = buf + block, *th = buf + 2 * block, *q = buf + 3 * block;
            REAL *ubuf = buf + 4 * block;
            const int64_t i0 = blk * block;
            const int64_t len = FN(block_start_)(v, b, th, v0, beta, beta_full, theta,
                                                 theta_full, i0, n, block);
            for (int64_t t = 0; t < steps; ++t) {
                REAL *u = ubuf + t * block;
                for (int64_t j = 0; j < len; ++j) u[j] = v[j];
                FN(lif_step_)(v, z + t * n + i0, b, th, NULL, len, reset, delay, readout);
            }
            for (int64_t j = 0; j < len; ++j) q[j] = q_last[i0 + j];
            for (int64_t t = steps - 1; t >= 0; --t) {
                const REAL *u = ubuf + t * block;
                const REAL *rt = r + t * n + i0;
                const REAL *zt = z + t * n + i0;
                REAL *rhot = rho + t * n + i0;
                REAL *nt = n_out ? n_out + t * n + i0 : NULL;
                REAL *ut = u_out ? u_out + t * n + i0 : NULL;
                for (int64_t j = 0; j < len; ++j) {
                    const REAL a = rt[j] + q[j];
                    const REAL bu = u[j] * b[j];
                    REAL d = bu + zt[j];
                    d = d - u[j];
                    d = FABS(d);
                    d = d + FABS(u[j]);
                    d = d + eps;
                    const REAL inv = (REAL)1 / d;
                    const REAL nn = a * inv;
                    REAL qn = bu * inv;
                    q[j] = qn * a;
                    rhot[j] = nn * zt[j];
                    if (nt) nt[j] = nn;
                    if (ut) ut[j] = u[j];
                }
            }
            for (int64_t j = 0; j < len; ++j) q0[i0 + j] = q[j];
        }
        free(buf);
    }
    return failed ? -1 : 0;
}

/* n = num / (den + eps sign(den)) (sign(0) = +1); with eps = 0, n = 0 where den == 0. */
void FN(spikelfp_divide_)(const REAL *num, const REAL *den, REAL eps, REAL *out, int64_t count,
                          int threads)
{
    if (eps == 0) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
        for (int64_t i = 0; i < count; ++i) {
            const REAL q = num[i] / den[i];
            out[i] = (den[i] == 0) ? (REAL)0 : q;
        }
    } else {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
        for (int64_t i = 0; i < count; ++i) {
            const REAL d = (den[i] >= 0) ? den[i] + eps : den[i] - eps;
            out[i] = num[i] / d;
        }
    }
}

/* 2-d max pooling of planes (planes x H x W) with torch's window scan and tie/NaN rules; y gets
 * the maxima, off each arg-max's offset (ih - hs) * W + (iw - ws) from its window's start. */
void FN(spikelfp_maxpool2d_forward_)(const REAL *x, REAL *y, uint8_t *off, int64_t planes,
                                     int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t kh,
                                     int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                                     int64_t dh, int64_t dw, int threads)
{
    if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && dh == 1 && dw == 1 &&
        2 * OH <= H && 2 * OW <= W) {
        /* the common 2x2 / stride 2 case: the same scan order (a, b, then c, d below them) */
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
        for (int64_t p = 0; p < planes; ++p) {
            for (int64_t oh = 0; oh < OH; ++oh) {
                const REAL *r0 = x + p * H * W + 2 * oh * W, *r1 = r0 + W;
                REAL *yr = y + (p * OH + oh) * OW;
                uint8_t *orow = off + (p * OH + oh) * OW;
                for (int64_t ow = 0; ow < OW; ++ow) {
                    const REAL a = r0[2 * ow], b = r0[2 * ow + 1];
                    const REAL c = r1[2 * ow], d = r1[2 * ow + 1];
                    /* branch-free: the first element always wins against -inf (an all -inf
                     * window keeps offset 0), later ones if greater or NaN */
                    REAL m = a;
                    uint8_t k = 0;
                    const int tb = (b > m) | (b != b);
                    m = tb ? b : m;
                    k = tb ? (uint8_t)1 : k;
                    const int tc = (c > m) | (c != c);
                    m = tc ? c : m;
                    k = tc ? (uint8_t)W : k;
                    const int td = (d > m) | (d != d);
                    m = td ? d : m;
                    k = td ? (uint8_t)(W + 1) : k;
                    yr[ow] = m;
                    orow[ow] = k;
                }
            }
        }
        return;
    }
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t p = 0; p < planes; ++p) {
        const REAL *xp = x + p * H * W;
        REAL *yp = y + p * OH * OW;
        uint8_t *op = off + p * OH * OW;
        for (int64_t oh = 0; oh < OH; ++oh) {
            const int64_t hs = oh * sh - ph;
            int64_t h0 = hs;
            while (h0 < 0) h0 += dh;
            const int64_t he = (hs + (kh - 1) * dh + 1) < H ? (hs + (kh - 1) * dh + 1) : H;
            for (int64_t ow = 0; ow < OW; ++ow) {
                const int64_t ws = ow * sw - pw;
                int64_t w0 = ws;
                while (w0 < 0) w0 += dw;
                const int64_t we = (ws + (kw - 1) * dw + 1) < W ? (ws + (kw - 1) * dw + 1) : W;
                int64_t best = h0 * W + w0;
                REAL maxval = -INFINITY;
                for (int64_t ih = h0; ih < he; ih += dh) {
                    for (int64_t iw = w0; iw < we; iw += dw) {
                        const int64_t idx = ih * W + iw;
                        const REAL val = xp[idx];
                        if ((val > maxval) || isnan(val)) {
                            maxval = val;
                            best = idx;
                        }
                    }
                }
                yp[oh * OW + ow] = maxval;
                op[oh * OW + ow] = (uint8_t)(best - (hs * W + ws));
            }
        }
    }
}

/* Reward of each window to its arg-max: r_in = 0, then r_in[start + off] += rho in output order
 * (the order of max-pooling's own gradient, so ties of overlapping windows add up the same). */
void FN(spikelfp_maxpool2d_backward_)(const REAL *rho, const uint8_t *off, REAL *r_in,
                                      int64_t planes, int64_t H, int64_t W, int64_t OH,
                                      int64_t OW, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                                      int threads)
{
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t p = 0; p < planes; ++p) {
        const REAL *rp = rho + p * OH * OW;
        const uint8_t *op = off + p * OH * OW;
        REAL *ip = r_in + p * H * W;
        for (int64_t i = 0; i < H * W; ++i) ip[i] = 0;
        for (int64_t oh = 0; oh < OH; ++oh) {
            const int64_t hs = oh * sh - ph;
            for (int64_t ow = 0; ow < OW; ++ow) {
                const int64_t ws = ow * sw - pw;
                const int64_t k = oh * OW + ow;
                ip[hs * W + ws + op[k]] += rp[k];
            }
        }
    }
}

#undef FN
#undef CAT
#undef CAT_
