package org.edgeasr.demo

import android.annotation.SuppressLint
import android.media.AudioFormat
import android.media.AudioRecord
import android.media.MediaRecorder
import org.edgeasr.core.EdgeAsrException
import org.edgeasr.core.Wav

/**
 * Microphone capture at the model's rate (16 kHz mono PCM16), so no resampling is needed on the phone.
 * Samples are scaled like a 16-bit WAV (x / 32768), the same as Wav.read. Caller holds RECORD_AUDIO.
 */
class Recorder {
    private var record: AudioRecord? = null
    private var thread: Thread? = null
    private val chunks = ArrayList<ShortArray>()
    @Volatile private var running = false

    @SuppressLint("MissingPermission") // MainActivity asks for RECORD_AUDIO before starting
    fun start() {
        val minBuffer = AudioRecord.getMinBufferSize(Wav.SAMPLE_RATE, AudioFormat.CHANNEL_IN_MONO,
            AudioFormat.ENCODING_PCM_16BIT)
        if (minBuffer <= 0) throw EdgeAsrException("this device cannot record 16 kHz mono audio")
        val audio = AudioRecord(MediaRecorder.AudioSource.VOICE_RECOGNITION, Wav.SAMPLE_RATE,
            AudioFormat.CHANNEL_IN_MONO, AudioFormat.ENCODING_PCM_16BIT, maxOf(minBuffer, Wav.SAMPLE_RATE))
        if (audio.state != AudioRecord.STATE_INITIALIZED) {
            audio.release()
            throw EdgeAsrException("the microphone could not be opened (is another app recording?)")
        }
        synchronized(chunks) { chunks.clear() }
        record = audio
        running = true
        audio.startRecording()
        thread = Thread {
            val buffer = ShortArray(Wav.SAMPLE_RATE / 10)
            while (running) {
                val read = audio.read(buffer, 0, buffer.size)
                if (read > 0) synchronized(chunks) { chunks.add(buffer.copyOf(read)) }
            }
        }.also { it.start() }
    }

    /** Stops and returns what was recorded, as float samples. */
    fun stop(): FloatArray {
        running = false
        thread?.join()
        record?.stop()
        record?.release()
        record = null
        synchronized(chunks) {
            var total = 0
            for (chunk in chunks) total += chunk.size
            val samples = FloatArray(total)
            var offset = 0
            for (chunk in chunks) {
                for (value in chunk) samples[offset++] = value / 32768.0f
            }
            return samples
        }
    }
}
