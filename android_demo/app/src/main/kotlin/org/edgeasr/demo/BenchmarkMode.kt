package org.edgeasr.demo

import android.content.Context
import android.content.Intent
import android.net.Uri
import android.os.Build
import java.io.File
import org.edgeasr.core.BenchContext
import org.edgeasr.core.BenchOptions
import org.edgeasr.core.BenchRecord
import org.edgeasr.core.Benchmark
import org.edgeasr.core.DeviceInfo
import org.edgeasr.core.EdgeAsrException
import org.edgeasr.core.MemoryReadings
import org.edgeasr.core.ProcMemory
import org.edgeasr.core.Hashing
import org.edgeasr.core.Transcriber

/**
 * The device-farm benchmark: every bundled clip (assets/clips), timed, written as harness records.
 *
 * Started by
 *  - Firebase Test Lab's game loop (action com.google.intent.action.TEST_LOOP): the records go to the
 *    file behind the intent's data URI, which Test Lab stores as the loop's result;
 *  - adb: `adb shell am start -n org.edgeasr.demo/.MainActivity --ez benchmark true [--ei repeats 3]`;
 *    the records go to the app's external files folder (edgeasr-bench/records.json, pull it with adb).
 */
object BenchmarkMode {
    const val TEST_LOOP = "com.google.intent.action.TEST_LOOP"
    const val EXTRA_BENCHMARK = "benchmark"

    fun requested(intent: Intent?): Boolean =
        intent != null && (intent.action == TEST_LOOP || intent.getBooleanExtra(EXTRA_BENCHMARK, false))

    /** Runs the benchmark; returns where the records were written. Call off the UI thread. */
    fun run(context: Context, intent: Intent, progress: (String) -> Unit): List<String> {
        val assets = BundledAssets(context)
        if (assets.adapterUsers().isNotEmpty()) { // its encoder and decoder need a data file Module cannot take
            throw EdgeAsrException("benchmark mode runs single-file programs, and this bundle's program keeps " +
                "its users' adapters apart (assets/adapters/); bundle a merged --lora-pte-mode export to benchmark")
        }
        val modelFile = assets.modelFile()
        val sha256 = Hashing.sha256(modelFile)
        val baseline = ProcMemory.rssBytes()  // before the program is loaded, as the host harness measures
        val loadStart = System.nanoTime()
        val model = ExecutorchWhisper.load(modelFile.path)
        val loadMs = (System.nanoTime() - loadStart) / 1e6
        val memory = MemoryReadings(baseline, ProcMemory.peakRssBytes(), ProcMemory.rssBytes())
        model.use {
            val transcriber = Transcriber(model, assets.tokenDecoder())
            val clips = assets.clips().map { Benchmark.Loaded(it, assets.clipSamples(it)) }
            val options = BenchOptions(warmupRuns = intent.getIntExtra("warmup", 1),
                repeats = intent.getIntExtra("repeats", 3))
            val run = BenchContext(runId = Hashing.runId(sha256), plan = model.config.plan,
                artifactFile = modelFile.name, artifactBytes = modelFile.length(), artifactSha256 = sha256,
                runtimeVersion = RUNTIME_VERSION, device = deviceInfo(), dataName = "bundled clips")
            progress("benchmarking ${clips.size} clips on ${run.device.name}")
            val records = Benchmark(options).run({ transcriber.transcribe(it) }, clips, loadMs, memory, run, progress)
            return write(context, intent.data, BenchRecord.toJson(records))
        }
    }

    private fun write(context: Context, resultUri: Uri?, json: String): List<String> {
        val written = ArrayList<String>()
        val folder = File(context.getExternalFilesDir(null) ?: context.filesDir, "edgeasr-bench")
        folder.mkdirs()
        val partial = File(folder, "records.json.partial")
        partial.writeText(json)
        val target = File(folder, "records.json")
        if (!partial.renameTo(target)) throw IllegalStateException("cannot write $target")
        written.add(target.path)
        if (resultUri != null) { // Test Lab's game-loop result file
            context.contentResolver.openOutputStream(resultUri, "w")!!.use { it.write(json.toByteArray()) }
            written.add(resultUri.toString())
        }
        return written
    }

    /** The ExecuTorch AAR the app is built with (app/build.gradle.kts). */
    const val RUNTIME_VERSION = "executorch-android 1.5.1"

    fun deviceInfo(): DeviceInfo = DeviceInfo(
        kind = "phone", name = "${Build.MANUFACTURER} ${Build.MODEL}", os = "Android ${Build.VERSION.RELEASE}",
        machine = Build.SUPPORTED_ABIS.firstOrNull(), cores = Runtime.getRuntime().availableProcessors(),
        memoryBytes = ProcMemory.totalMemoryBytes()
    )
}
