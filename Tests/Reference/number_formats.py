# Writes Tests/Fixtures/formats/: what an independent implementation computes for every conversion stage 8's
# number formats make, for Stage8Tests/FormatTests to compare bit for bit. fp16 comes from numpy (its own C
# conversion, not the CPU's F16C), bf16 and the two fp8 formats from ml_dtypes (Google's, used by JAX).
# Usage: pip install numpy ml_dtypes; python3 Tests/Reference/number_formats.py   (numpy 2.4.6, ml_dtypes 0.7.0)
#
# Every file is little-endian and headerless:
#   F-decode.bin   for every bit pattern of F (65,536 for fp16 and bf16, 256 for e4m3 and e5m2), in order, the
#                  float32 bit pattern of its value (u32 each).
#   F-ties.bin     for every pair of neighbouring non-negative values a < b of F (patterns p and p + 1, from 0 up
#                  to the largest finite value; past it, b is the next power of two, where the format overflows),
#                  the patterns F gives to three float32 inputs: nextDown(m), m, nextUp(m), m = (a + b) / 2 (u16
#                  for fp16 and bf16, u8 for fp8). m is exact in float32, so m itself is a tie: round to nearest
#                  even decides it.
#   random.bin     4,096 records of a float32 bit pattern drawn uniformly from all 2^32 (u32; NaNs, infinities and
#                  subnormals included), then its fp16, bf16, e4m3 and e5m2 patterns (u16, u16, u8, u8).
# E4M3 saturates, as NVIDIA's conversions with saturation do (the stage's choice, so that a scaled tensor never
# becomes NaN): a finite value beyond 448 and infinity become +-448. ml_dtypes' cast does not saturate (it gives
# NaN), so the expected E4M3 patterns are ml_dtypes' on the input clipped to [-448, 448]. E5M2 overflows to
# infinity, as IEEE formats do, and is ml_dtypes' cast as it is.
import os, numpy as np, ml_dtypes

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), '../Fixtures/formats')
os.makedirs(out, exist_ok=True)
formats = {
    'fp16': (np.float16, np.uint16, 16), 'bf16': (ml_dtypes.bfloat16, np.uint16, 16),
    'e4m3': (ml_dtypes.float8_e4m3fn, np.uint8, 8), 'e5m2': (ml_dtypes.float8_e5m2, np.uint8, 8),
}

def encode(name, x):
    dtype, bits, _ = formats[name]
    x = np.asarray(x, dtype=np.float32)
    if name == 'e4m3':
        x = np.where(np.isnan(x), x, np.clip(x, -448, 448)).astype(np.float32)
    return x.astype(dtype).view(bits)

for name, (dtype, bits, width) in formats.items():
    patterns = np.arange(2 ** width, dtype=np.uint32).astype(bits)
    values = patterns.view(dtype).astype(np.float32)
    values.view(np.uint32).astype('<u4').tofile(os.path.join(out, f'{name}-decode.bin'))
    # Non-negative finite values in pattern order, then the power of two past the largest.
    finite = [float(v) for v in values[: 2 ** (width - 1)] if np.isfinite(v)]
    top = 2.0 ** (np.floor(np.log2(finite[-1])) + 1)
    ladder = np.array(finite + [top], dtype=np.float64)
    mid = ((ladder[:-1] + ladder[1:]) / 2).astype(np.float32)
    assert np.all(mid.astype(np.float64) == (ladder[:-1] + ladder[1:]) / 2), name  # exact in float32
    down = np.nextafter(mid, np.float32(-np.inf)); up = np.nextafter(mid, np.float32(np.inf))
    triples = np.stack([down, mid, up], axis=1).reshape(-1)
    encode(name, triples).astype(bits().dtype.newbyteorder('<')).tofile(os.path.join(out, f'{name}-ties.bin'))

rng = np.random.default_rng(8)
inputs = rng.integers(0, 2 ** 32, size=4096, dtype=np.uint64).astype(np.uint32)
floats = inputs.view(np.float32)
record = np.dtype([('x', '<u4'), ('fp16', '<u2'), ('bf16', '<u2'), ('e4m3', 'u1'), ('e5m2', 'u1')])
table = np.zeros(len(inputs), dtype=record)
table['x'] = inputs
for name in formats:
    table[name] = encode(name, floats)
table.tofile(os.path.join(out, 'random.bin'))
print('wrote', sorted(os.listdir(out)))
