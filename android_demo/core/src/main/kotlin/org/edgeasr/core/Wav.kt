package org.edgeasr.core

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * WAV reading for 16 kHz speech, with the same sample values and checks as runtimes/audio.py `load_audio`.
 *
 * Integer PCM is scaled the way libsndfile (behind Python's soundfile) scales it to float32: 16-bit by
 * 1/32768, 24-bit by 1/2^23, 32-bit by 1/2^31, unsigned 8-bit as (x - 128)/128; float WAVs are read as
 * they are. Channels are averaged to mono. The app has no resampler, so any other rate is an error that
 * says so (the Python side resamples with soxr; on the phone the recorder already captures 16 kHz).
 */
object Wav {
    const val SAMPLE_RATE = 16_000
    const val MIN_SAMPLES = SAMPLE_RATE / 100 // 10 ms
    const val SILENCE_PEAK = 1e-4f // about -80 dBFS

    private const val FORMAT_PCM = 1
    private const val FORMAT_FLOAT = 3
    private const val FORMAT_EXTENSIBLE = 0xFFFE

    class Header(val format: Int, val channels: Int, val sampleRate: Int, val bitsPerSample: Int)

    fun readFile(file: File): FloatArray {
        if (!file.isFile) throw EdgeAsrException("audio file not found: $file")
        return read(file.readBytes(), file.path)
    }

    /** Mono float32 samples at 16 kHz; `source` names the clip in error messages. */
    fun read(bytes: ByteArray, source: String): FloatArray {
        if (bytes.isEmpty()) throw EdgeAsrException("audio file is empty (0 bytes): $source")
        val buffer = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN)
        if (bytes.size < 12 || tag(bytes, 0) != "RIFF" || tag(bytes, 8) != "WAVE") {
            throw EdgeAsrException("$source is not a WAV file (no RIFF/WAVE header); record or convert to 16 kHz WAV")
        }
        var header: Header? = null
        var offset = 12
        while (offset + 8 <= bytes.size) {
            val id = tag(bytes, offset)
            val size = buffer.getInt(offset + 4).toLong() and 0xFFFFFFFFL
            val body = offset + 8
            when (id) {
                "fmt " -> header = parseFormat(buffer, body, size, source)
                "data" -> {
                    val fmt = header ?: throw EdgeAsrException("$source: WAV data comes before its format chunk")
                    // A recorder killed mid-write leaves a data size larger than the file; read what is there.
                    val available = minOf(size, (bytes.size - body).toLong()).toInt()
                    val samples = decode(buffer, body, available, fmt, source)
                    checkSpeechLike(samples, source)
                    return samples
                }
            }
            offset = body + size.toInt() + (size.toInt() and 1) // chunks are padded to even sizes
        }
        throw EdgeAsrException("$source: WAV file has no data chunk")
    }

    private fun tag(bytes: ByteArray, at: Int) = String(bytes, at, 4, Charsets.US_ASCII)

    private fun parseFormat(buffer: ByteBuffer, at: Int, size: Long, source: String): Header {
        if (size < 16) throw EdgeAsrException("$source: WAV format chunk is too short")
        var format = buffer.getShort(at).toInt() and 0xFFFF
        val channels = buffer.getShort(at + 2).toInt()
        val rate = buffer.getInt(at + 4)
        val bits = buffer.getShort(at + 14).toInt()
        if (format == FORMAT_EXTENSIBLE && size >= 26) format = buffer.getShort(at + 24).toInt() and 0xFFFF
        if (channels < 1) throw EdgeAsrException("$source: WAV declares $channels channels")
        if (rate != SAMPLE_RATE) {
            throw EdgeAsrException("$source: sample rate is $rate Hz; the app takes 16000 Hz WAV (resample it, " +
                "e.g. with sox in.wav -r 16000 out.wav)")
        }
        val supported = (format == FORMAT_PCM && bits in intArrayOf(8, 16, 24, 32)) ||
            (format == FORMAT_FLOAT && (bits == 32 || bits == 64))
        if (!supported) {
            throw EdgeAsrException("$source: WAV encoding (format $format, $bits bits) is not supported; " +
                "use PCM 8/16/24/32-bit or float")
        }
        return Header(format, channels, rate, bits)
    }

    private fun decode(buffer: ByteBuffer, at: Int, length: Int, fmt: Header, source: String): FloatArray {
        val width = fmt.bitsPerSample / 8
        val frames = length / (width * fmt.channels)
        val mono = FloatArray(frames)
        for (frame in 0 until frames) {
            var sum = 0.0f
            for (channel in 0 until fmt.channels) {
                sum += sample(buffer, at + (frame * fmt.channels + channel) * width, fmt)
            }
            mono[frame] = if (fmt.channels == 1) sum else sum / fmt.channels
        }
        if (frames == 0) throw EdgeAsrException("audio file has no samples: $source")
        return mono
    }

    private fun sample(buffer: ByteBuffer, at: Int, fmt: Header): Float {
        if (fmt.format == FORMAT_FLOAT) {
            return if (fmt.bitsPerSample == 32) buffer.getFloat(at) else buffer.getDouble(at).toFloat()
        }
        return when (fmt.bitsPerSample) {
            8 -> ((buffer.get(at).toInt() and 0xFF) - 128) / 128.0f
            16 -> buffer.getShort(at) / 32768.0f
            24 -> {
                val value = (buffer.get(at).toInt() and 0xFF) or ((buffer.get(at + 1).toInt() and 0xFF) shl 8) or
                    (buffer.get(at + 2).toInt() shl 16)
                (value.toDouble() / 8388608.0).toFloat()
            }
            else -> (buffer.getInt(at).toDouble() / 2147483648.0).toFloat()
        }
    }

    /** The same checks as audio.py `check_speech_like`: too short, non-finite, silent. */
    fun checkSpeechLike(samples: FloatArray, source: String) {
        if (samples.size < MIN_SAMPLES) {
            throw EdgeAsrException("$source: clip is empty or shorter than 10 ms (${samples.size} samples)")
        }
        var peak = 0.0f
        for (x in samples) {
            if (x.isNaN() || x.isInfinite()) {
                throw EdgeAsrException("$source: clip contains NaN or infinite samples (corrupt file?)")
            }
            peak = maxOf(peak, Math.abs(x))
        }
        if (peak < SILENCE_PEAK) {
            throw EdgeAsrException("$source: clip is silent (peak amplitude ${String.format("%.2e", peak)}); " +
                "nothing to transcribe")
        }
    }

    /** 16-bit PCM mono WAV bytes, e.g. to save a recording. */
    fun encodePcm16(samples: FloatArray): ByteArray {
        val dataBytes = samples.size * 2
        val buffer = ByteBuffer.allocate(44 + dataBytes).order(ByteOrder.LITTLE_ENDIAN)
        buffer.put("RIFF".toByteArray(Charsets.US_ASCII)).putInt(36 + dataBytes)
        buffer.put("WAVE".toByteArray(Charsets.US_ASCII))
        buffer.put("fmt ".toByteArray(Charsets.US_ASCII)).putInt(16)
        buffer.putShort(FORMAT_PCM.toShort()).putShort(1).putInt(SAMPLE_RATE).putInt(SAMPLE_RATE * 2)
        buffer.putShort(2).putShort(16)
        buffer.put("data".toByteArray(Charsets.US_ASCII)).putInt(dataBytes)
        for (x in samples) {
            val clipped = Math.max(-1.0f, Math.min(1.0f, x))
            buffer.putShort(Math.round(clipped * 32767.0f).toShort())
        }
        return buffer.array()
    }
}
