package org.edgeasr.core

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * A minimal test runner, so the JVM tests need nothing but the Kotlin standard library: they compile and
 * run with a bare `kotlinc` (tests/test_android_core.py) as well as from Gradle (core:jvmTests).
 * Ends with the line "N passed, N failed" and a non-zero exit status on any failure.
 */
class Checks {
    private var passed = 0
    private val failures = ArrayList<String>()

    fun test(name: String, body: () -> Unit) {
        try {
            body()
            passed++
            println("PASS $name")
        } catch (e: Throwable) {
            failures.add(name)
            println("FAIL $name: ${e.javaClass.simpleName}: ${e.message}")
        }
    }

    fun finish(): Int {
        println("${passed} passed, ${failures.size} failed")
        return if (failures.isEmpty()) 0 else 1
    }
}

class CheckFailed(message: String) : AssertionError(message)

fun verify(condition: Boolean, message: () -> String) {
    if (!condition) throw CheckFailed(message())
}

fun <T> checkEqual(expected: T, actual: T, what: String) {
    if (expected != actual) throw CheckFailed("$what: expected <$expected>, got <$actual>")
}

fun checkTokens(expected: IntArray, actual: IntArray, what: String) {
    if (!expected.contentEquals(actual)) {
        throw CheckFailed("$what: expected ${expected.joinToString(",")}, got ${actual.joinToString(",")}")
    }
}

/** Runs `body`, which must throw EdgeAsrException (or `type`) whose message contains `fragment`. */
fun expectError(fragment: String, body: () -> Unit): String {
    try {
        body()
    } catch (e: Exception) {
        val message = e.message ?: ""
        verify(message.contains(fragment)) { "error '$message' does not mention '$fragment'" }
        return message
    }
    throw CheckFailed("expected an error mentioning '$fragment', got none")
}

fun readF32(file: File): FloatArray {
    val buffer = ByteBuffer.wrap(file.readBytes()).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
    return FloatArray(buffer.remaining()).also { buffer.get(it) }
}

fun readF64(file: File): DoubleArray {
    val buffer = ByteBuffer.wrap(file.readBytes()).order(ByteOrder.LITTLE_ENDIAN).asDoubleBuffer()
    return DoubleArray(buffer.remaining()).also { buffer.get(it) }
}

fun maxAbsDiff(a: FloatArray, b: FloatArray): Double {
    verify(a.size == b.size) { "sizes differ: ${a.size} vs ${b.size}" }
    var worst = 0.0
    for (i in a.indices) worst = Math.max(worst, Math.abs(a[i].toDouble() - b[i].toDouble()))
    return worst
}
