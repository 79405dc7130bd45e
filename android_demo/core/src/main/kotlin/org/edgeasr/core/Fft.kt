package org.edgeasr.core

/**
 * Complex FFT for any length made of small prime factors (Whisper's n_fft = 400 = 2^4 * 5^2), by recursive
 * decimation in time. Double precision; the twiddles are computed once per length.
 */
class Fft(val size: Int) {
    private val factors = factorize(size)
    private val cosTable = DoubleArray(size) { Math.cos(-2.0 * Math.PI * it / size) }
    private val sinTable = DoubleArray(size) { Math.sin(-2.0 * Math.PI * it / size) }
    private val scratchRe = DoubleArray(size)
    private val scratchIm = DoubleArray(size)

    init {
        require(factors.all { it <= 7 }) { "FFT length $size has a prime factor above 7" }
    }

    /** Transform `re`/`im` in place (not thread-safe: one instance per thread). */
    fun transform(re: DoubleArray, im: DoubleArray) {
        require(re.size == size && im.size == size) { "FFT input must have $size values" }
        System.arraycopy(re, 0, scratchRe, 0, size)
        System.arraycopy(im, 0, scratchIm, 0, size)
        recurse(scratchRe, scratchIm, 0, 1, size, re, im, 0, 0)
    }

    private fun recurse(
        inRe: DoubleArray, inIm: DoubleArray, inStart: Int, stride: Int, n: Int,
        outRe: DoubleArray, outIm: DoubleArray, outStart: Int, level: Int
    ) {
        if (n == 1) {
            outRe[outStart] = inRe[inStart]
            outIm[outStart] = inIm[inStart]
            return
        }
        val radix = factors[level]
        val m = n / radix
        // Sub-transforms of the `radix` decimated sequences land in consecutive blocks of the output.
        for (r in 0 until radix) {
            recurse(inRe, inIm, inStart + r * stride, stride * radix, m, outRe, outIm, outStart + r * m, level + 1)
        }
        val twiddleStep = size / n
        val blockRe = DoubleArray(radix)
        val blockIm = DoubleArray(radix)
        for (k in 0 until m) {
            // Gather X_r[k] * W_n^(r k) for each sub-sequence r, then a radix-point DFT across r.
            for (r in 0 until radix) {
                val index = outStart + r * m + k
                val w = (r * k * twiddleStep) % size
                val xr = outRe[index]
                val xi = outIm[index]
                blockRe[r] = xr * cosTable[w] - xi * sinTable[w]
                blockIm[r] = xr * sinTable[w] + xi * cosTable[w]
            }
            for (q in 0 until radix) {
                var sumRe = 0.0
                var sumIm = 0.0
                for (r in 0 until radix) {
                    val w = (r * q * m * twiddleStep) % size // W_radix^(r q)
                    sumRe += blockRe[r] * cosTable[w] - blockIm[r] * sinTable[w]
                    sumIm += blockRe[r] * sinTable[w] + blockIm[r] * cosTable[w]
                }
                outRe[outStart + q * m + k] = sumRe
                outIm[outStart + q * m + k] = sumIm
            }
        }
    }

    companion object {
        fun factorize(n: Int): IntArray {
            require(n >= 1) { "FFT length must be positive" }
            val result = ArrayList<Int>()
            var rest = n
            var p = 2
            while (rest > 1) {
                while (rest % p == 0) {
                    result.add(p)
                    rest /= p
                }
                p++
            }
            return result.toIntArray()
        }
    }
}
