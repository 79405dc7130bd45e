package org.edgeasr.demo

import java.io.Closeable
import org.edgeasr.core.EdgeAsrException
import org.edgeasr.core.LogMel
import org.edgeasr.core.ModelConfig
import org.edgeasr.core.SpeechModel
import org.edgeasr.core.TextDecoderMethod
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

/**
 * The `.pte` exported by `edgeasr export --target android`, run through ExecuTorch's Module API. Only the
 * calls into the program live here; everything else (features, greedy loop, token decoding) is the plain
 * Kotlin core, tested on the JVM against the Python runner.
 *
 * Method contract (exporter/lower/whisper_modules.py, runtimes/executorch_runner.py):
 *   encoder(features float32 [1, n_mels, 3000]) -> k_0, v_0, ..., k_{L-1}, v_{L-1}, float32 [heads, 1500, head_dim]
 *     (every decoder layer's cross-attention keys and values, computed once per window)
 *   text_decoder(token int64 [1, 1], the encoder's outputs in order, cache position int64 [1])
 *     -> logits float32 [1, 1, vocab]
 * The decoder's KV cache lives inside the program; a new sequence simply starts again at position 0.
 */
class ExecutorchWhisper private constructor(
    private val module: Module,
    override val config: ModelConfig
) : SpeechModel<Array<EValue>>, Closeable {

    override fun encode(features: FloatArray): Array<EValue> {
        val input = Tensor.fromBlob(features, longArrayOf(1, config.nMels.toLong(), LogMel.FRAMES.toLong()))
        val outputs = module.execute("encoder", EValue.from(input))
        // The returned tensors view the encoder's planned memory; copy them so they stay valid however the
        // program's methods are scheduled while the decoder reads them.
        return Array(outputs.size) { i ->
            val output = outputs[i].toTensor()
            EValue.from(Tensor.fromBlob(output.dataAsFloatArray, output.shape()))
        }
    }

    override fun decoderMethod(encoded: Array<EValue>): TextDecoderMethod {
        return object : TextDecoderMethod {
            override fun run(token: Int, position: Int): FloatArray {
                val tokenTensor = Tensor.fromBlob(longArrayOf(token.toLong()), longArrayOf(1, 1))
                val positionTensor = Tensor.fromBlob(longArrayOf(position.toLong()), longArrayOf(1))
                val outputs = module.execute("text_decoder", EValue.from(tokenTensor), *encoded,
                    EValue.from(positionTensor))
                val logits = outputs[0].toTensor().dataAsFloatArray
                if (logits.size != config.vocabSize) {
                    throw EdgeAsrException("text_decoder returned ${logits.size} logits, expected ${config.vocabSize}")
                }
                return logits
            }
        }
    }

    override fun close() = module.destroy()

    companion object {
        /**
         * Loads the program, reads its configuration from its constant methods (not from the file name) and
         * loads both methods, so the first transcription does not pay for XNNPACK's weight packing.
         */
        fun load(path: String, threads: Int = 0): ExecutorchWhisper {
            val module = Module.load(path, Module.LOAD_MODE_MMAP, threads)
            try {
                val config = readConfig(module)
                module.loadMethod("encoder")
                module.loadMethod("text_decoder")
                return ExecutorchWhisper(module, config)
            } catch (e: Exception) {
                module.destroy()
                throw e
            }
        }

        /**
         * The program's configuration from its constant methods alone. Those load without the program's data
         * file, so this reads a base program whose users' adapters are apart too (its encoder and decoder
         * need the file, which only AsrModule takes: ExecutorchAsr).
         */
        fun readConfig(path: String): ModelConfig {
            val module = Module.load(path, Module.LOAD_MODE_MMAP, 1)
            try {
                return readConfig(module)
            } finally {
                module.destroy()
            }
        }

        private fun readConfig(module: Module): ModelConfig =
            ModelConfig.fromProgram(module.getMethods().toSet()) { name -> constant(module, name) }

        /** A constant method's single value as String, Long or Boolean (what ModelConfig expects). */
        private fun constant(module: Module, name: String): Any? {
            val value = module.execute(name)[0]
            return when {
                value.isString() -> value.toStr()
                value.isInt() -> value.toInt()
                value.isBool() -> value.toBool()
                else -> null
            }
        }
    }
}
