package org.edgeasr.demo

import android.content.Context
import java.io.File
import java.io.FileNotFoundException
import org.edgeasr.core.AdapterFiles
import org.edgeasr.core.BenchClip
import org.edgeasr.core.EdgeAsrException
import org.edgeasr.core.TokenDecoder
import org.edgeasr.core.Wav

/**
 * The files `edgeasr export --bundle app/src/main/assets/` put into the APK (model.pte, tokenizer.json,
 * plan.json; for the ASR-runner layout preprocessor.pte; for a base program whose users' adapters are apart,
 * adapters/<user>.ptd, more added by `edgeasr adapter --bundle`) and the clips tools/bundle_clips.py adds
 * (clips/manifest.jsonl + WAVs).
 */
class BundledAssets(private val context: Context) {

    /** model.pte copied to app storage once per installed APK (ExecuTorch loads from a file path). */
    fun modelFile(): File = installed(MODEL)

    /**
     * The users whose adapter files are bundled (adapters/<user>.ptd), sorted. Empty for a single-file
     * program; otherwise the program keeps its adapter apart and runs only with one of these files.
     */
    fun adapterUsers(): List<String> = AdapterFiles.users(context.assets.list(AdapterFiles.FOLDER)?.toList() ?: emptyList())

    /** One user's adapter file, the program's tokenizer and its preprocessor, as files (AsrModule takes paths). */
    fun adapterFile(user: String): File = installed(AdapterFiles.assetPath(user))

    fun tokenizerFile(): File = installed(TOKENIZER)

    fun preprocessorFile(): File = installed(PREPROCESSOR)

    /** The asset `name` copied to app storage once per installed APK, through a partial file renamed into place. */
    private fun installed(name: String): File {
        val target = File(context.filesDir, name)
        val stamp = File(context.filesDir, "$name.installed")
        val version = context.packageManager.getPackageInfo(context.packageName, 0).lastUpdateTime.toString()
        if (target.isFile && stamp.isFile && stamp.readText() == version) return target
        target.parentFile?.mkdirs()
        val partial = File(context.filesDir, "$name.partial")
        try {
            context.assets.open(name).use { input -> partial.outputStream().use { input.copyTo(it, 1 shl 20) } }
        } catch (e: FileNotFoundException) {
            throw EdgeAsrException("no $name in the app's assets; build the app after " +
                "`edgeasr export ... --bundle android_demo/app/src/main/assets/`")
        }
        if (!partial.renameTo(target)) throw EdgeAsrException("cannot install $name into ${context.filesDir}")
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
        const val PREPROCESSOR = "preprocessor.pte"
        const val CLIPS_MANIFEST = "clips/manifest.jsonl"
    }
}
