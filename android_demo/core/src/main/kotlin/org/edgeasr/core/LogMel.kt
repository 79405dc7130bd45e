package org.edgeasr.core

/**
 * Whisper's log-mel input for one 30 s window, as runtimes/audio.py `log_mel` computes it (transformers'
 * WhisperFeatureExtractor): zero-pad to 480000 samples; STFT with n_fft 400, hop 160, periodic Hann window,
 * centred frames with reflect padding; power spectrum; Slaney mel filter bank (0-8 kHz, area-normalised);
 * log10 floored at 1e-10; clamp to (max - 8); (x + 4) / 4; the last frame dropped -> (n_mels, 3000).
 *
 * Where it differs: the Python reference runs torch.stft in float32, this runs in double and rounds the
 * result to float32 once; the test vectors bound the difference (see CoreTests).
 */
class LogMel(val nMels: Int) {
    private val window = DoubleArray(N_FFT) { 0.5 - 0.5 * Math.cos(2.0 * Math.PI * it / N_FFT) }
    val filters: Array<DoubleArray> = melFilterBank(N_FREQS, nMels, 0.0, 8000.0, Wav.SAMPLE_RATE)
    private val firstBin = IntArray(nMels) { m -> filters[m].indexOfFirst { it != 0.0 }.coerceAtLeast(0) }
    private val lastBin = IntArray(nMels) { m -> filters[m].indexOfLast { it != 0.0 } }
    private val fft = Fft(N_FFT)

    /** Features for at most 30 s of 16 kHz samples: row-major (nMels, 3000) float32, ready for the encoder. */
    fun compute(samples: FloatArray): FloatArray {
        if (samples.size > CHUNK_SAMPLES) {
            throw IllegalArgumentException("log-mel takes at most one 30 s window; split the audio first")
        }
        val padded = reflectPad(samples)
        val mel = DoubleArray(nMels * FRAMES)
        val re = DoubleArray(N_FFT)
        val im = DoubleArray(N_FFT)
        val power = DoubleArray(N_FREQS)
        for (frame in 0 until FRAMES) {
            val start = frame * HOP
            var silent = true
            for (i in 0 until N_FFT) {
                val x = padded[start + i]
                if (x != 0.0) silent = false
                re[i] = x * window[i]
                im[i] = 0.0
            }
            if (silent) continue // the FFT of zeros is exactly zero; most of a short clip's window is padding
            fft.transform(re, im)
            for (k in 0 until N_FREQS) power[k] = re[k] * re[k] + im[k] * im[k]
            for (m in 0 until nMels) {
                var sum = 0.0
                val filter = filters[m]
                for (k in firstBin[m]..lastBin[m]) sum += filter[k] * power[k]
                mel[m * FRAMES + frame] = sum
            }
        }
        var maximum = Double.NEGATIVE_INFINITY
        for (i in mel.indices) {
            mel[i] = Math.log10(Math.max(mel[i], 1e-10))
            maximum = Math.max(maximum, mel[i])
        }
        val floor = maximum - 8.0
        return FloatArray(mel.size) { ((Math.max(mel[it], floor) + 4.0) / 4.0).toFloat() }
    }

    /** The samples zero-padded to 30 s, with N_FFT / 2 reflected samples on each side (torch.stft center=True). */
    private fun reflectPad(samples: FloatArray): DoubleArray {
        val half = N_FFT / 2
        val signal = DoubleArray(CHUNK_SAMPLES)
        for (i in samples.indices) signal[i] = samples[i].toDouble()
        val out = DoubleArray(CHUNK_SAMPLES + 2 * half)
        System.arraycopy(signal, 0, out, half, CHUNK_SAMPLES)
        for (i in 1..half) {
            out[half - i] = signal[i]
            out[half + CHUNK_SAMPLES - 1 + i] = signal[CHUNK_SAMPLES - 1 - i]
        }
        return out
    }

    companion object {
        const val N_FFT = 400
        const val HOP = 160
        const val N_FREQS = N_FFT / 2 + 1
        const val CHUNK_SAMPLES = 30 * Wav.SAMPLE_RATE
        const val FRAMES = CHUNK_SAMPLES / HOP // 3000: torch.stft gives 3001, Whisper drops the last

        /** Filters as transformers' `mel_filter_bank(norm="slaney", mel_scale="slaney")`: [mel][frequency bin]. */
        fun melFilterBank(nFreqs: Int, nMels: Int, fMin: Double, fMax: Double, sampleRate: Int): Array<DoubleArray> {
            val melMin = hertzToMel(fMin)
            val melMax = hertzToMel(fMax)
            val edges = linspace(melMin, melMax, nMels + 2)
            for (i in edges.indices) edges[i] = melToHertz(edges[i])
            val fftFreqs = linspace(0.0, (sampleRate / 2).toDouble(), nFreqs)
            return Array(nMels) { m ->
                val enorm = 2.0 / (edges[m + 2] - edges[m])
                DoubleArray(nFreqs) { k ->
                    val down = (fftFreqs[k] - edges[m]) / (edges[m + 1] - edges[m])
                    val up = (edges[m + 2] - fftFreqs[k]) / (edges[m + 2] - edges[m + 1])
                    Math.max(0.0, Math.min(down, up)) * enorm
                }
            }
        }

        /** numpy.linspace with its rounding: start + i * ((stop - start) / (n - 1)), the last value exactly stop. */
        fun linspace(start: Double, stop: Double, n: Int): DoubleArray {
            val step = (stop - start) / (n - 1)
            val values = DoubleArray(n) { i -> i * step + start }
            values[n - 1] = stop
            return values
        }

        private const val MIN_LOG_HERTZ = 1000.0
        private const val MIN_LOG_MEL = 15.0
        private val LOG_STEP = 27.0 / Math.log(6.4)

        fun hertzToMel(hz: Double): Double =
            if (hz >= MIN_LOG_HERTZ) MIN_LOG_MEL + Math.log(hz / MIN_LOG_HERTZ) * LOG_STEP else 3.0 * hz / 200.0

        fun melToHertz(mel: Double): Double =
            if (mel >= MIN_LOG_MEL) MIN_LOG_HERTZ * Math.exp(Math.log(6.4) / 27.0 * (mel - MIN_LOG_MEL))
            else 200.0 * mel / 3.0
    }
}
