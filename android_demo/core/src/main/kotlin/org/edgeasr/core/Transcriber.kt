package org.edgeasr.core

/**
 * A loaded speech model: the app's ExecuTorch class implements it with the `.pte`'s `encoder` and
 * `text_decoder` methods; tests implement it with recorded outputs. `E` is whatever encode returns.
 */
interface SpeechModel<E> {
    val config: ModelConfig

    /** Run the encoder on row-major (nMels, 3000) features. */
    fun encode(features: FloatArray): E

    /** One decoder call bound to `encoded`; every new session starts at cache position 0. */
    fun decoderMethod(encoded: E): TextDecoderMethod
}

class Transcription(
    val text: String,
    val tokens: IntArray,
    val language: String,
    val audioSeconds: Double,
    /** milliseconds: features, encode, decode, total */
    val timingsMs: Map<String, Double>
) {
    val realTimeFactor: Double get() = timingsMs.getValue("total") / 1000.0 / audioSeconds
}

/**
 * Audio -> text, as runtimes/base.py `Runner.transcribe`: 30 s windows; per window log-mel, encoder,
 * language detection (multilingual models, when no language is given), the prompt, greedy decoding and
 * text decoding; window texts joined by a space.
 */
class Transcriber<E>(private val model: SpeechModel<E>, private val tokens: TokenDecoder) {
    private val logMel = LogMel(model.config.nMels)

    fun transcribe(samples: FloatArray, language: String? = null, task: String = "transcribe",
                   maxNewTokens: Int = Greedy.MAX_NEW_TOKENS): Transcription {
        val special = model.config.special
        val start = System.nanoTime()
        var featuresNs = 0L
        var encodeNs = 0L
        var decodeNs = 0L
        val texts = ArrayList<String>()
        val allTokens = ArrayList<Int>()
        var chosenLanguage = language
        var offset = 0
        while (offset < samples.size) {
            val window = samples.copyOfRange(offset, minOf(samples.size, offset + LogMel.CHUNK_SAMPLES))
            offset += LogMel.CHUNK_SAMPLES
            val t0 = System.nanoTime()
            val features = logMel.compute(window)
            val t1 = System.nanoTime()
            val encoded = model.encode(features)
            val t2 = System.nanoTime()
            if (chosenLanguage == null && special.isMultilingual) {
                chosenLanguage = Greedy.detectLanguage(newSession(encoded).step(intArrayOf(special.sot)), special)
            }
            val prompt = special.prompt(chosenLanguage, task)
            val windowTokens = Greedy.decode(newSession(encoded), prompt, special, maxNewTokens)
            val t3 = System.nanoTime()
            featuresNs += t1 - t0
            encodeNs += t2 - t1
            decodeNs += t3 - t2
            for (t in windowTokens) allTokens.add(t)
            val text = tokens.decode(windowTokens, special.eot)
            if (text.isNotEmpty()) texts.add(text)
        }
        val totalNs = System.nanoTime() - start
        return Transcription(
            text = texts.joinToString(" "),
            tokens = allTokens.toIntArray(),
            language = chosenLanguage ?: "en",
            audioSeconds = samples.size.toDouble() / Wav.SAMPLE_RATE,
            timingsMs = linkedMapOf("features" to featuresNs / 1e6, "encode" to encodeNs / 1e6,
                "decode" to decodeNs / 1e6, "total" to totalNs / 1e6)
        )
    }

    private fun newSession(encoded: E) = KvCacheDecoderSession(model.decoderMethod(encoded), model.config.maxSeqLen)
}
