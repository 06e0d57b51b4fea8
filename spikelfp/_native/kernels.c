/* spikelfp's native CPU kernels: the elementwise recursions of the LFP rules fused into single
 * passes. Built on first use by spikelfp/_native/__init__.py; see kernels_impl.h. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* Neurons per block of the LIF kernels: the T rows of a block are streamed while its state
 * stays in cache. Wide blocks let the hardware prefetcher follow each row (4096 floats is a
 * page); the backward narrows them so that a block's replayed membranes (T x block) fit in
 * REPLAY_BYTES of L2. */
#define MAX_BLOCK 4096
#define MIN_BLOCK 256
#define REPLAY_BYTES (512 * 1024)

#define REAL float
#define SUF f32
#define FABS fabsf
#include "kernels_impl.h"
#undef REAL
#undef SUF
#undef FABS

#define REAL double
#define SUF f64
#define FABS fabs
#include "kernels_impl.h"
#undef REAL
#undef SUF
#undef FABS

int spikelfp_abi_version(void) { return 4; }
