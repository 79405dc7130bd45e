package org.edgeasr.core

/** Feed tokens, get the logits (vocab) predicted after the last one; the session keeps its own KV cache. */
interface DecoderSession {
    fun step(tokens: IntArray): FloatArray
}

/**
 * One call of the exported `text_decoder` method: token id at cache position -> logits for the next token.
 * The ExecuTorch class implements this with Module.execute; tests replay recorded logits.
 */
interface TextDecoderMethod {
    fun run(token: Int, position: Int): FloatArray
}

/**
 * The KV-cache protocol of the exported decoder (runtimes/executorch_runner.py): one token per call, its
 * cache position counting up from 0 for a fresh session; positions past the program's cache are an error.
 */
class KvCacheDecoderSession(private val method: TextDecoderMethod, private val maxSeqLen: Int) : DecoderSession {
    var position = 0
        private set

    override fun step(tokens: IntArray): FloatArray {
        require(tokens.isNotEmpty()) { "step needs at least one token" }
        var logits: FloatArray? = null
        for (token in tokens) {
            if (position >= maxSeqLen) {
                throw IllegalStateException("decoder cache is full ($maxSeqLen positions)")
            }
            logits = method.run(token, position)
            position++
        }
        return logits!!
    }
}

/** Greedy decoding with the rules of runtimes/decoding.py `greedy_decode` and `detect_language`. */
object Greedy {
    /** Whisper's text context is 448 positions; openai/whisper samples at most half of it. */
    const val MAX_NEW_TOKENS = 224
    const val MAX_POSITIONS = 448

    /** The loop guard of runtimes/decoding.py `repeated_tail`, with the same thresholds. */
    const val LOOP_MIN_COPIES = 3
    const val LOOP_MIN_TOKENS = 16
    const val LOOP_MAX_PERIOD = 64

    /**
     * How many tokens to keep when `tokens` ends in a loop (one span repeated back to back at least
     * LOOP_MIN_COPIES times over at least LOOP_MIN_TOKENS tokens; the first copy stays), else null.
     */
    fun repeatedTail(tokens: List<Int>): Int? {
        val n = tokens.size
        for (period in 1..minOf(LOOP_MAX_PERIOD, n / LOOP_MIN_COPIES)) {
            var copies = 1
            while ((copies + 1) * period <= n && sameSpan(tokens, n - (copies + 1) * period, n - period, period)) {
                copies++
            }
            if (copies >= LOOP_MIN_COPIES && copies * period >= LOOP_MIN_TOKENS) return n - (copies - 1) * period
        }
        return null
    }

    private fun sameSpan(tokens: List<Int>, a: Int, b: Int, length: Int): Boolean {
        for (i in 0 until length) if (tokens[a + i] != tokens[b + i]) return false
        return true
    }

    /**
     * Tokens that may not be generated: the model's suppress list, every special token but end of text (no
     * timestamps, no prompt tokens in the text), and on the first step the suppress-begin list too.
     */
    fun mask(special: SpecialTokens, vocab: Int, first: Boolean): BooleanArray {
        val mask = BooleanArray(vocab)
        for (t in special.suppress) if (t in 0 until vocab) mask[t] = true
        for (t in special.eot + 1 until vocab) mask[t] = true
        if (first) for (t in special.suppressBegin) if (t in 0 until vocab) mask[t] = true
        return mask
    }

    /** Index of the largest unmasked logit, the first on ties (numpy's argmax). NaN logits are an error. */
    fun argmax(logits: FloatArray, mask: BooleanArray?): Int {
        var best = -1
        var bestValue = Float.NEGATIVE_INFINITY
        for (i in logits.indices) {
            val value = logits[i]
            if (value.isNaN()) throw IllegalStateException("the decoder produced NaN logits (token $i)")
            if (mask != null && mask[i]) continue
            if (best < 0 || value > bestValue) {
                best = i
                bestValue = value
            }
        }
        if (best < 0) throw IllegalStateException("every token is suppressed")
        return best
    }

    /** Generated tokens after `prompt`, end of text excluded; with `loopGuard`, a loop stops decoding. */
    fun decode(session: DecoderSession, prompt: IntArray, special: SpecialTokens,
               maxNewTokens: Int = MAX_NEW_TOKENS, loopGuard: Boolean = true): IntArray {
        val limit = minOf(maxNewTokens, MAX_POSITIONS - prompt.size)
        var logits = session.step(prompt)
        val firstMask = mask(special, logits.size, first = true)
        val laterMask = mask(special, logits.size, first = false)
        val generated = ArrayList<Int>()
        while (generated.size < limit) {
            val token = argmax(logits, if (generated.isEmpty()) firstMask else laterMask)
            if (token == special.eot) break
            generated.add(token)
            if (loopGuard) {
                val keep = repeatedTail(generated)
                if (keep != null) return generated.subList(0, keep).toIntArray()
            }
            if (generated.size < limit) logits = session.step(intArrayOf(token))
        }
        return generated.toIntArray()
    }

    /** Most likely language from the logits after <|startoftranscript|>. */
    fun detectLanguage(logits: FloatArray, special: SpecialTokens): String {
        var bestCode: String? = null
        var bestValue = Float.NEGATIVE_INFINITY
        for ((code, id) in special.languages) {
            if (bestCode == null || logits[id] > bestValue) {
                bestCode = code
                bestValue = logits[id]
            }
        }
        return bestCode ?: throw EdgeAsrException("the model lists no languages to detect")
    }
}
