package org.edgeasr.demo

import android.Manifest
import android.app.Activity
import android.content.Intent
import android.content.pm.PackageManager
import android.os.Bundle
import android.view.View
import android.widget.Button
import android.widget.LinearLayout
import android.widget.ScrollView
import android.widget.TextView
import java.util.concurrent.Executors
import org.edgeasr.core.EdgeAsrException
import org.edgeasr.core.ProcMemory
import org.edgeasr.core.Transcriber
import org.edgeasr.core.Transcription
import org.edgeasr.core.Wav

/**
 * Record (or pick a 16 kHz WAV, or use a bundled clip), transcribe on the phone, and show the text, the
 * time each stage took and the process's memory. Launched for the benchmark, it runs BenchmarkMode instead.
 * A bundle whose program keeps its users' adapters apart (adapters/<user>.ptd) runs through ExecutorchAsr
 * with one user's file; "Switch user" loads the next user's file with the same program.
 * Plain framework views and no AndroidX, so the only dependency is ExecuTorch.
 */
class MainActivity : Activity() {
    private val worker = Executors.newSingleThreadExecutor()
    private val recorder = Recorder()
    private var model: ExecutorchWhisper? = null
    private var transcriber: Transcriber<*>? = null
    // Per-user adapter files: the users bundled, and the program running with the current one's file. Both are
    // set on the worker thread; `asr` is used only there, so a transcription never meets a module being replaced.
    @Volatile private var users: List<String> = emptyList()
    @Volatile private var asr: ExecutorchAsr? = null
    private var recording = false

    private lateinit var status: TextView
    private lateinit var result: TextView
    private lateinit var recordButton: Button
    private lateinit var userButton: Button

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        buildViews()
        if (BenchmarkMode.requested(intent)) runBenchmark(intent) else loadModel()
    }

    override fun onDestroy() {
        worker.shutdown()
        model?.close()
        asr?.close()
        super.onDestroy()
    }

    private fun buildViews() {
        status = TextView(this)
        result = TextView(this).apply { textSize = 18f; setTextIsSelectable(true) }
        recordButton = Button(this).apply { text = "Record"; setOnClickListener { toggleRecording() } }
        val pickButton = Button(this).apply { text = "Pick a 16 kHz WAV"; setOnClickListener { pickWav() } }
        val clipButton = Button(this).apply { text = "Bundled clip"; setOnClickListener { transcribeBundledClip() } }
        userButton = Button(this).apply { text = "Switch user"; visibility = View.GONE; setOnClickListener { switchUser() } }
        val column = LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(32, 32, 32, 32)
            for (view in listOf<View>(status, recordButton, pickButton, clipButton, userButton, result)) addView(view)
        }
        setContentView(ScrollView(this).apply { addView(column) })
    }

    private fun loadModel() {
        status.text = "Loading the model..."
        background {
            val assets = BundledAssets(this)
            val bundledUsers = assets.adapterUsers()
            if (bundledUsers.isNotEmpty()) {
                users = bundledUsers
                runOnUiThread { if (bundledUsers.size > 1) userButton.visibility = View.VISIBLE }
                return@background loadUser(assets, bundledUsers.first())
            }
            val file = assets.modelFile()
            val start = System.nanoTime()
            val loaded = ExecutorchWhisper.load(file.path)
            val loadMs = (System.nanoTime() - start) / 1e6
            model = loaded
            transcriber = Transcriber(loaded, assets.tokenDecoder())
            "${loaded.config.plan.describe()}\nloaded in ${"%.0f".format(loadMs)} ms; ${memory()}"
        }
    }

    /** The program with `user`'s adapter file (the previous user's module closed first: one in memory). */
    private fun loadUser(assets: BundledAssets, user: String): String {
        asr?.close()
        asr = null
        val start = System.nanoTime()
        val loaded = ExecutorchAsr.load(assets, user, cacheDir)
        val loadMs = (System.nanoTime() - start) / 1e6
        asr = loaded
        return "user $user (${users.indexOf(user) + 1} of ${users.size}): ${loaded.config.plan.describe()}\n" +
            "loaded with this user's adapter file in ${"%.0f".format(loadMs)} ms; ${memory()}"
    }

    private fun switchUser() {
        status.text = "Loading the next user..."
        background {
            val next = users[(users.indexOf(asr?.user) + 1) % users.size] // the first again after a failed load
            loadUser(BundledAssets(this), next)
        }
    }

    private fun toggleRecording() {
        if (checkSelfPermission(Manifest.permission.RECORD_AUDIO) != PackageManager.PERMISSION_GRANTED) {
            requestPermissions(arrayOf(Manifest.permission.RECORD_AUDIO), REQUEST_MICROPHONE)
            return
        }
        if (!recording) {
            recorder.start()
            recording = true
            recordButton.text = "Stop and transcribe"
            status.text = "Recording..."
        } else {
            recording = false
            recordButton.text = "Record"
            val samples = recorder.stop()
            transcribe("recording") { Wav.checkSpeechLike(samples, "recording"); samples }
        }
    }

    override fun onRequestPermissionsResult(requestCode: Int, permissions: Array<out String>, grants: IntArray) {
        super.onRequestPermissionsResult(requestCode, permissions, grants)
        if (requestCode == REQUEST_MICROPHONE && grants.firstOrNull() == PackageManager.PERMISSION_GRANTED) {
            toggleRecording()
        } else if (requestCode == REQUEST_MICROPHONE) {
            status.text = "Recording needs the microphone permission; you can still pick a WAV file."
        }
    }

    private fun pickWav() {
        val intent = Intent(Intent.ACTION_OPEN_DOCUMENT).apply {
            addCategory(Intent.CATEGORY_OPENABLE)
            type = "audio/*"
        }
        startActivityForResult(intent, REQUEST_WAV)
    }

    override fun onActivityResult(requestCode: Int, resultCode: Int, data: Intent?) {
        super.onActivityResult(requestCode, resultCode, data)
        val uri = data?.data
        if (requestCode != REQUEST_WAV || resultCode != RESULT_OK || uri == null) return
        transcribe(uri.lastPathSegment ?: "picked file") {
            val bytes = contentResolver.openInputStream(uri)!!.use { it.readBytes() }
            Wav.read(bytes, uri.lastPathSegment ?: "picked file")
        }
    }

    private fun transcribeBundledClip() {
        val assets = BundledAssets(this)
        if (!assets.hasClips()) {
            status.text = "No clips bundled; add some with android_demo/tools/bundle_clips.py"
            return
        }
        val clip = assets.clips().first()
        transcribe(clip.id) { assets.clipSamples(clip) }
    }

    private fun transcribe(name: String, samples: () -> FloatArray) {
        if (users.isNotEmpty()) {
            status.text = "Transcribing $name..."
            background {
                val perUser = asr ?: throw EdgeAsrException("no user's adapter file is loaded; switch user to retry")
                val output = perUser.transcribe(samples())
                runOnUiThread { result.text = output.text }
                "$name (user ${perUser.user}): ${"%.1f".format(output.audioSeconds)} s of audio in " +
                    "${"%.0f".format(output.totalMs)} ms (RTF ${"%.2f".format(output.realTimeFactor)}, ExecuTorch's " +
                    "ASR runner end to end); ${memory()}"
            }
            return
        }
        val current = transcriber
        if (current == null) {
            status.text = "The model is not loaded yet."
            return
        }
        status.text = "Transcribing $name..."
        background {
            val output: Transcription = current.transcribe(samples())
            val t = output.timingsMs
            runOnUiThread { result.text = output.text }
            "$name: ${"%.1f".format(output.audioSeconds)} s of audio in ${"%.0f".format(t["total"])} ms " +
                "(RTF ${"%.2f".format(output.realTimeFactor)}): features ${"%.0f".format(t["features"])} ms, " +
                "encoder ${"%.0f".format(t["encode"])} ms, decoder ${"%.0f".format(t["decode"])} ms " +
                "(${output.tokens.size} tokens); ${memory()}"
        }
    }

    private fun runBenchmark(launch: Intent) {
        status.text = "Benchmark mode"
        background {
            val written = BenchmarkMode.run(this, launch) { line -> runOnUiThread { result.append("$line\n") } }
            if (launch.action == BenchmarkMode.TEST_LOOP) runOnUiThread { finish() } // Test Lab ends the loop here
            "Benchmark written to ${written.joinToString(", ")}"
        }
    }

    /** Runs `work` off the UI thread; its message, or the error's, goes to the status line. */
    private fun background(work: () -> String) {
        worker.execute {
            val message = try {
                work()
            } catch (e: EdgeAsrException) {
                "Error: ${e.message}"
            } catch (e: Exception) {
                "Error: ${e.javaClass.simpleName}: ${e.message}"
            }
            runOnUiThread { status.text = message }
        }
    }

    private fun memory(): String =
        "memory: resident ${"%.0f".format(ProcMemory.rssMb() ?: Double.NaN)} MB, " +
            "peak ${"%.0f".format(ProcMemory.peakRssMb() ?: Double.NaN)} MB"

    companion object {
        private const val REQUEST_MICROPHONE = 1
        private const val REQUEST_WAV = 2
    }
}
