package org.edgeasr.demo

import java.io.Closeable
import java.io.File
import org.edgeasr.core.EdgeAsrException
import org.edgeasr.core.ModelConfig
import org.edgeasr.core.TokenDecoder
import org.edgeasr.core.Wav
import org.pytorch.executorch.extension.asr.AsrModule
import org.pytorch.executorch.extension.asr.AsrTranscribeConfig

/** What one AsrModule transcription gives: the text and the clock around the whole call. */
class AsrTranscription(val text: String, val audioSeconds: Double, val totalMs: Double) {
    val realTimeFactor: Double get() = totalMs / 1000.0 / audioSeconds
}

/**
 * A base program in the ASR-runner layout (`--pte-layout runner`) whose users' LoRA adapters are kept apart
 * (`edgeasr export --lora`, a branch --lora-pte-mode), run with one user's adapter file through ExecuTorch's
 * AsrModule: executorch-android's `Module` takes no data file, AsrModule does (its `dataPath`). Switching users
 * closes this and loads the same program with another user's file; the program itself is never re-written.
 *
 * AsrModule runs the whole pipeline in C++ (reads a WAV file, the bundled preprocessor.pte's log-mel, greedy
 * decoding from the start token until the program's get_eos_ids), so the core's features and greedy loop are
 * not used here and only the total time is known. Its streamed text carries the special tokens' own text,
 * which the tokenizer removes.
 */
class ExecutorchAsr private constructor(
    private val module: AsrModule,
    val config: ModelConfig,
    val user: String,
    private val tokens: TokenDecoder,
    private val scratchWav: File
) : Closeable {

    fun transcribe(samples: FloatArray): AsrTranscription {
        val start = System.nanoTime()
        val partial = File(scratchWav.path + ".partial")
        partial.writeBytes(Wav.encodePcm16(samples)) // AsrModule reads a 16 kHz WAV file, not samples
        if (!partial.renameTo(scratchWav)) throw EdgeAsrException("cannot write $scratchWav")
        // The runner counts new tokens after the start token; the decoder's cache holds maxSeqLen positions.
        val settings = AsrTranscribeConfig((config.maxSeqLen - 1).toLong(), 0.0f, config.special.sot.toLong())
        val streamed = module.transcribe(scratchWav.path, settings, null)
        val totalMs = (System.nanoTime() - start) / 1e6
        return AsrTranscription(tokens.removeSpecialTokens(streamed), samples.size / 16000.0, totalMs)
    }

    override fun close() = module.close()

    companion object {
        /**
         * Reads the program's configuration (its constant methods load without the data file), then creates
         * and loads AsrModule with `user`'s adapter file, so the first transcription pays no loading.
         */
        fun load(assets: BundledAssets, user: String, scratchDir: File): ExecutorchAsr {
            val program = assets.modelFile()
            val config = ExecutorchWhisper.readConfig(program.path)
            val module = AsrModule(program.path, assets.tokenizerFile().path, assets.adapterFile(user).path,
                assets.preprocessorFile().path)
            try {
                val status = module.load()
                if (status != 0) {
                    throw EdgeAsrException("ExecuTorch could not load ${program.name} with user $user's adapter " +
                        "file (error 0x${Integer.toHexString(status)}); re-bundle both with edgeasr")
                }
                return ExecutorchAsr(module, config, user, assets.tokenDecoder(), File(scratchDir, "edgeasr-asr.wav"))
            } catch (e: Exception) {
                module.close()
                throw e
            }
        }
    }
}
