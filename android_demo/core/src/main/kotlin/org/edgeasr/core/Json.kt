package org.edgeasr.core

/**
 * A small JSON reader and writer, so the core needs no library (it runs on a plain JVM and on Android).
 *
 * Objects become `Map<String, Any?>` (key order kept), arrays `List<Any?>`, integers without fraction or
 * exponent `Long`, other numbers `Double`. Written doubles must be finite: NaN has no JSON form.
 */
object Json {
    fun parse(text: String): Any? {
        val parser = Parser(text)
        val value = parser.value()
        parser.skipSpace()
        if (!parser.atEnd()) throw parser.error("unexpected text after the JSON value")
        return value
    }

    fun parseObject(text: String, what: String): Map<String, Any?> {
        val value = try {
            parse(text)
        } catch (e: EdgeAsrException) {
            throw EdgeAsrException("$what is not valid JSON: ${e.message}")
        }
        return asObject(value, what)
    }

    fun write(value: Any?): String {
        val out = StringBuilder()
        writeValue(value, out)
        return out.toString()
    }

    private fun writeValue(value: Any?, out: StringBuilder) {
        when (value) {
            null -> out.append("null")
            is String -> writeString(value, out)
            is Boolean -> out.append(if (value) "true" else "false")
            is Int, is Long, is Short, is Byte -> out.append(value.toString())
            is Double -> writeDouble(value, out)
            is Float -> writeDouble(value.toDouble(), out)
            is Map<*, *> -> {
                out.append('{')
                var first = true
                for ((key, item) in value) {
                    if (!first) out.append(", ")
                    first = false
                    writeString(key as? String ?: throw IllegalArgumentException("JSON keys must be strings"), out)
                    out.append(": ")
                    writeValue(item, out)
                }
                out.append('}')
            }
            is Iterable<*> -> {
                out.append('[')
                var first = true
                for (item in value) {
                    if (!first) out.append(", ")
                    first = false
                    writeValue(item, out)
                }
                out.append(']')
            }
            else -> throw IllegalArgumentException("cannot write ${value.javaClass.name} as JSON")
        }
    }

    private fun writeDouble(value: Double, out: StringBuilder) {
        require(!value.isNaN() && !value.isInfinite()) { "JSON has no form for $value" }
        if (value == Math.rint(value) && Math.abs(value) < 1e15) out.append(value.toLong().toString()).append(".0")
        else out.append(value.toString())
    }

    private fun writeString(text: String, out: StringBuilder) {
        out.append('"')
        for (c in text) {
            when (c) {
                '"' -> out.append("\\\"")
                '\\' -> out.append("\\\\")
                '\n' -> out.append("\\n")
                '\r' -> out.append("\\r")
                '\t' -> out.append("\\t")
                else -> if (c < ' ') out.append(String.format("\\u%04x", c - '\u0000')) else out.append(c)
            }
        }
        out.append('"')
    }

    private class Parser(private val text: String) {
        private var pos = 0

        fun atEnd() = pos >= text.length

        fun error(message: String) = EdgeAsrException("JSON: $message at offset $pos")

        fun skipSpace() {
            while (pos < text.length && (text[pos] == ' ' || text[pos] == '\n' || text[pos] == '\r' || text[pos] == '\t')) pos++
        }

        fun value(): Any? {
            skipSpace()
            if (atEnd()) throw error("unexpected end of input")
            return when (text[pos]) {
                '{' -> obj()
                '[' -> array()
                '"' -> string()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> number()
            }
        }

        private fun literal(word: String, result: Any?): Any? {
            if (!text.startsWith(word, pos)) throw error("unexpected character '${text[pos]}'")
            pos += word.length
            return result
        }

        private fun obj(): Map<String, Any?> {
            val result = LinkedHashMap<String, Any?>()
            pos++ // {
            skipSpace()
            if (pos < text.length && text[pos] == '}') {
                pos++
                return result
            }
            members@ while (true) {
                skipSpace()
                if (atEnd() || text[pos] != '"') throw error("expected a string key")
                val key = string()
                skipSpace()
                if (atEnd() || text[pos] != ':') throw error("expected ':'")
                pos++
                result[key] = value()
                skipSpace()
                if (atEnd()) throw error("unterminated object")
                when (text[pos++]) {
                    ',' -> continue@members
                    '}' -> return result
                    else -> { pos--; throw error("expected ',' or '}'") }
                }
            }
        }

        private fun array(): List<Any?> {
            val result = ArrayList<Any?>()
            pos++ // [
            skipSpace()
            if (pos < text.length && text[pos] == ']') {
                pos++
                return result
            }
            items@ while (true) {
                result.add(value())
                skipSpace()
                if (atEnd()) throw error("unterminated array")
                when (text[pos++]) {
                    ',' -> continue@items
                    ']' -> return result
                    else -> { pos--; throw error("expected ',' or ']'") }
                }
            }
        }

        private fun string(): String {
            val out = StringBuilder()
            pos++ // opening quote
            while (true) {
                if (atEnd()) throw error("unterminated string")
                val c = text[pos++]
                when {
                    c == '"' -> return out.toString()
                    c == '\\' -> {
                        if (atEnd()) throw error("unterminated escape")
                        when (val e = text[pos++]) {
                            '"' -> out.append('"')
                            '\\' -> out.append('\\')
                            '/' -> out.append('/')
                            'b' -> out.append('\b')
                            'f' -> out.append('\u000C')
                            'n' -> out.append('\n')
                            'r' -> out.append('\r')
                            't' -> out.append('\t')
                            'u' -> {
                                if (pos + 4 > text.length) throw error("short \\u escape")
                                val code = text.substring(pos, pos + 4).toIntOrNull(16) ?: throw error("bad \\u escape")
                                out.append(code.toChar()) // surrogate pairs arrive as two escapes
                                pos += 4
                            }
                            else -> throw error("unknown escape '\\$e'")
                        }
                    }
                    c < ' ' -> throw error("control character in string")
                    else -> out.append(c)
                }
            }
        }

        private fun number(): Any {
            val start = pos
            if (text[pos] == '-') pos++
            var integral = true
            while (pos < text.length) {
                val c = text[pos]
                if (c in '0'..'9') pos++
                else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') { integral = false; pos++ }
                else break
            }
            val literal = text.substring(start, pos)
            if (literal.length == 0 || literal == "-") throw error("unexpected character '${text[start]}'")
            if (integral) {
                val asLong = literal.toLongOrNull()
                if (asLong != null) return asLong
            }
            return literal.toDoubleOrNull() ?: throw error("bad number '$literal'")
        }
    }
}

// Typed access with errors that name the field, for reading tokenizer.json, constant methods and manifests.

fun asObject(value: Any?, what: String): Map<String, Any?> {
    @Suppress("UNCHECKED_CAST")
    return value as? Map<String, Any?> ?: throw EdgeAsrException("$what: expected a JSON object")
}

fun Map<String, Any?>.field(key: String, what: String): Any? {
    if (!containsKey(key)) throw EdgeAsrException("$what has no \"$key\"")
    return get(key)
}

fun Map<String, Any?>.long(key: String, what: String): Long =
    field(key, what) as? Long ?: throw EdgeAsrException("$what: \"$key\" is not an integer")

fun Map<String, Any?>.int(key: String, what: String): Int {
    val value = long(key, what)
    if (value < Int.MIN_VALUE || value > Int.MAX_VALUE) throw EdgeAsrException("$what: \"$key\" is out of range")
    return value.toInt()
}

fun Map<String, Any?>.double(key: String, what: String): Double =
    (field(key, what) as? Number)?.toDouble() ?: throw EdgeAsrException("$what: \"$key\" is not a number")

fun Map<String, Any?>.string(key: String, what: String): String =
    field(key, what) as? String ?: throw EdgeAsrException("$what: \"$key\" is not a string")

fun Map<String, Any?>.bool(key: String, what: String): Boolean =
    field(key, what) as? Boolean ?: throw EdgeAsrException("$what: \"$key\" is not true/false")

fun Map<String, Any?>.list(key: String, what: String): List<Any?> {
    @Suppress("UNCHECKED_CAST")
    return field(key, what) as? List<Any?> ?: throw EdgeAsrException("$what: \"$key\" is not a list")
}

fun Map<String, Any?>.obj(key: String, what: String): Map<String, Any?> = asObject(field(key, what), "$what.$key")

fun Map<String, Any?>.intList(key: String, what: String): IntArray {
    val items = list(key, what)
    return IntArray(items.size) { i ->
        (items[i] as? Long)?.toInt() ?: throw EdgeAsrException("$what: \"$key\"[$i] is not an integer")
    }
}
