package org.edgeasr.demo

import android.content.Context
import java.io.File
import java.io.FileNotFoundException
import org.edgeasr.core.BenchClip
import org.edgeasr.core.EdgeAsrException
import org.edgeasr.core.TokenDecoder
import org.edgeasr.core.Wav

/**
 * The files `edgeasr export --bundle app/src/main/assets/` put into the APK (model.pte, tokenizer.json,
 * plan.json) and the clips tools/bundle_clips.py adds (clips/manifest.jsonl + WAVs).
 */
class BundledAssets(private val context: Context) {

    /** model.pte copied to app storage once per installed APK (ExecuTorch loads from a file path). */
    fun modelFile(): File {
        val target = File(context.filesDir, MODEL)
        val stamp = File(context.filesDir, "$MODEL.installed")
        val version = context.packageManager.getPackageInfo(context.packageName, 0).lastUpdateTime.toString()
        if (target.isFile && stamp.isFile && stamp.readText() == version) return target
        val partial = File(context.filesDir, "$MODEL.partial")
        try {
            context.assets.open(MODEL).use { input -> partial.outputStream().use { input.copyTo(it, 1 shl 20) } }
        } catch (e: FileNotFoundException) {
            throw EdgeAsrException("no $MODEL in the app's assets; build the app after " +
                "`edgeasr export ... --bundle android_demo/app/src/main/assets/`")
        }
        if (!partial.renameTo(target)) throw EdgeAsrException("cannot install $MODEL into ${context.filesDir}")
        stamp.writeText(version)
        return target
    }

    fun tokenDecoder(): TokenDecoder = TokenDecoder.fromTokenizerJson(readText(TOKENIZER))

    fun hasClips(): Boolean = try {
        context.assets.open(CLIPS_MANIFEST).close()
        true
    } catch (e: FileNotFoundException) {
        false
    }

    fun clips(): List<BenchClip> = BenchClip.parseManifest(readText(CLIPS_MANIFEST))

    fun clipSamples(clip: BenchClip): FloatArray {
        val path = "clips/${clip.file}"
        return Wav.read(context.assets.open(path).use { it.readBytes() }, path)
    }

    private fun readText(name: String): String = try {
        context.assets.open(name).use { String(it.readBytes(), Charsets.UTF_8) }
    } catch (e: FileNotFoundException) {
        throw EdgeAsrException("no $name in the app's assets; see android_demo/README.md, \"Bundling a model\"")
    }

    companion object {
        const val MODEL = "model.pte"
        const val TOKENIZER = "tokenizer.json"
        const val CLIPS_MANIFEST = "clips/manifest.jsonl"
    }
}
