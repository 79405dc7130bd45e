package org.edgeasr.core

/**
 * Token ids -> text with the exported `tokenizer.json` (byte-level BPE, as Whisper's), the way
 * runtimes/tokenizer.py `decode_text` does it with Hugging Face tokenizers:
 *
 *  1. ids at or above end-of-text (special, timestamp) are dropped, and so are added tokens marked special;
 *  2. each token string is mapped back to bytes through the byte-level alphabet (GPT-2's bytes_to_unicode);
 *     a token with a character outside that alphabet contributes its own UTF-8 bytes (as tokenizers does);
 *  3. the bytes are decoded as UTF-8, each maximal invalid subsequence becoming U+FFFD (Rust's
 *     from_utf8_lossy, which tokenizers uses), so a character split across a window edge shows as U+FFFD;
 *  4. surrounding whitespace is stripped with Python's definition of whitespace (str.strip).
 */
class TokenDecoder private constructor(
    private val tokens: Array<String?>,
    private val special: BooleanArray
) {
    val vocabSize: Int get() = tokens.size

    fun decode(ids: IntArray, endOfText: Int): String {
        val bytes = java.io.ByteArrayOutputStream()
        for (id in ids) {
            if (id >= endOfText || id < 0 || id >= tokens.size || special[id]) continue
            val token = tokens[id] ?: throw EdgeAsrException("token id $id is not in tokenizer.json")
            appendTokenBytes(token, bytes)
        }
        return pythonStrip(Utf8.decodeLossy(bytes.toByteArray()))
    }

    /**
     * The text ExecuTorch's ASR runner (AsrModule) hands back: it decodes every id it generates, so the
     * special tokens' own text (`<|notimestamps|>`, `<|endoftext|>`, ...) is in it. Those are removed, longest
     * first, and the rest stripped as `decode` strips.
     */
    fun removeSpecialTokens(text: String): String {
        var cleaned = text
        for (content in specialTexts) cleaned = cleaned.replace(content, "")
        return pythonStrip(cleaned)
    }

    private val specialTexts: List<String> by lazy {
        tokens.indices.filter { special[it] }.mapNotNull { tokens[it] }.filter { it.isNotEmpty() }
            .sortedByDescending { it.length }
    }

    private fun appendTokenBytes(token: String, out: java.io.ByteArrayOutputStream) {
        val mapped = ByteArray(token.length)
        for (i in token.indices) {
            val code = token[i] - '\u0000'
            val byte = if (code < UNICODE_TO_BYTE.size) UNICODE_TO_BYTE[code] else -1
            if (byte < 0) {
                val raw = token.toByteArray(Charsets.UTF_8)
                out.write(raw, 0, raw.size)
                return
            }
            mapped[i] = byte.toByte()
        }
        out.write(mapped, 0, mapped.size)
    }

    companion object {
        /** Reads `model.vocab`, `added_tokens` and checks the decoder is byte-level. */
        fun fromTokenizerJson(text: String): TokenDecoder {
            val root = Json.parseObject(text, "tokenizer.json")
            val decoder = asObject(root.field("decoder", "tokenizer.json"), "tokenizer.json decoder")
            val type = decoder.string("type", "tokenizer.json decoder")
            if (type != "ByteLevel") {
                throw EdgeAsrException("tokenizer.json uses a $type decoder; the app decodes byte-level BPE " +
                    "(Whisper) tokenizers only")
            }
            val model = root.obj("model", "tokenizer.json")
            val vocab = model.obj("vocab", "tokenizer.json model")
            val added = root.list("added_tokens", "tokenizer.json")
            var size = 0
            for (value in vocab.values) size = maxOf(size, ((value as? Long) ?: 0L).toInt() + 1)
            for (entry in added) size = maxOf(size, asObject(entry, "added token").int("id", "added token") + 1)
            val tokens = arrayOfNulls<String>(size)
            val special = BooleanArray(size)
            for ((token, id) in vocab) {
                tokens[(id as? Long ?: throw EdgeAsrException("tokenizer.json: vocab id of $token")).toInt()] = token
            }
            for (entry in added) {
                val item = asObject(entry, "added token")
                val id = item.int("id", "added token")
                tokens[id] = item.string("content", "added token")
                special[id] = item.bool("special", "added token")
            }
            return TokenDecoder(tokens, special)
        }

        /** GPT-2's byte <-> printable-character table: printable Latin-1 bytes map to themselves, the rest to 256+. */
        private val UNICODE_TO_BYTE: IntArray = run {
            val table = IntArray(512) { -1 }
            var extra = 0
            for (b in 0 until 256) {
                val printable = b in 33..126 || b in 161..172 || b in 174..255
                val code = if (printable) b else 256 + extra++
                table[code] = b
            }
            table
        }

        /** Python's str.isspace set: characters with bidirectional type WS, B or S, or category Zs. */
        fun isPythonSpace(c: Char): Boolean = when (c) {
            ' ', '\t', '\n', '\u000B', '\u000C', '\r', '\u001C', '\u001D', '\u001E', '\u001F',
            '\u0085', '\u00A0', '\u1680', '\u2028', '\u2029', '\u202F', '\u205F', '\u3000' -> true
            else -> c in '\u2000'..'\u200A'
        }

        fun pythonStrip(text: String): String {
            var start = 0
            var end = text.length
            while (start < end && isPythonSpace(text[start])) start++
            while (end > start && isPythonSpace(text[end - 1])) end--
            return text.substring(start, end)
        }
    }
}

/** UTF-8 decoding that replaces each maximal invalid subsequence with one U+FFFD (Unicode's recommended practice). */
object Utf8 {
    fun decodeLossy(bytes: ByteArray): String {
        val out = StringBuilder(bytes.size)
        var i = 0
        chars@ while (i < bytes.size) {
            val b0 = bytes[i].toInt() and 0xFF
            if (b0 < 0x80) {
                out.append(b0.toChar())
                i++
                continue
            }
            // Expected length and the allowed range of the second byte (Unicode Table 3-7).
            val length: Int
            var lo = 0x80
            var hi = 0xBF
            when (b0) {
                in 0xC2..0xDF -> length = 2
                in 0xE0..0xEF -> { length = 3; if (b0 == 0xE0) lo = 0xA0; if (b0 == 0xED) hi = 0x9F }
                in 0xF0..0xF4 -> { length = 4; if (b0 == 0xF0) lo = 0x90; if (b0 == 0xF4) hi = 0x8F }
                else -> { out.append('\uFFFD'); i++; continue@chars }
            }
            var code = b0 and (0xFF shr (length + 1))
            var consumed = 1
            while (consumed < length) {
                if (i + consumed >= bytes.size) break
                val b = bytes[i + consumed].toInt() and 0xFF
                val low = if (consumed == 1) lo else 0x80
                val high = if (consumed == 1) hi else 0xBF
                if (b < low || b > high) break
                code = (code shl 6) or (b and 0x3F)
                consumed++
            }
            if (consumed < length) {
                out.append('\uFFFD') // the valid prefix so far is one maximal subpart
            } else if (code >= 0x10000) {
                out.append(((code - 0x10000) shr 10 or 0xD800).toChar())
                out.append(((code - 0x10000) and 0x3FF or 0xDC00).toChar())
            } else {
                out.append(code.toChar())
            }
            i += consumed
        }
        return out.toString()
    }
}
