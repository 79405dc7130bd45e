package org.edgeasr.core

import java.io.File
import java.security.MessageDigest
import java.text.SimpleDateFormat
import java.util.Date
import java.util.Locale
import java.util.TimeZone

/**
 * The benchmark mode's results, in the harness's record schema (schema_version 1): one record per
 * model x runtime x artifact x metric (x group), so phone results append to the host harness's table.
 * See android_demo/README.md, "Benchmark results".
 */
class BenchRecord(
    val model: String,
    val artifactFile: String,
    val artifactSha256: String,
    val device: String,
    val metric: String,
    val value: Double,
    val unit: String,
    val group: String,
    val n: Int,
    val timestamp: String,
    /** per-clip details (clip id, hypothesis, audio seconds); the host collector turns hypotheses into WER */
    val extra: Map<String, Any?>? = null
) {
    fun toMap(): Map<String, Any?> {
        val map = linkedMapOf<String, Any?>(
            "schema_version" to SCHEMA_VERSION, "model" to model, "runtime" to RUNTIME,
            "artifact" to linkedMapOf("file" to artifactFile, "sha256" to artifactSha256),
            "device" to device, "metric" to metric, "value" to value, "unit" to unit, "group" to group,
            "n" to n, "timestamp" to timestamp
        )
        if (extra != null) map["extra"] = extra
        return map
    }

    companion object {
        const val SCHEMA_VERSION = 1
        const val RUNTIME = "executorch-android"
        val REQUIRED_KEYS = listOf("schema_version", "model", "runtime", "artifact", "device", "metric", "value",
            "unit", "group", "n", "timestamp")

        fun toJson(records: List<BenchRecord>): String =
            "[\n" + records.joinToString(",\n") { "  " + Json.write(it.toMap()) } + "\n]\n"
    }
}

/** One clip of the bundled benchmark set (assets/clips/manifest.jsonl, written by tools/bundle_clips.py). */
class BenchClip(val id: String, val file: String, val group: String, val text: String?) {
    companion object {
        fun parseManifest(jsonl: String): List<BenchClip> {
            val clips = ArrayList<BenchClip>()
            for ((index, line) in jsonl.lines().withIndex()) {
                if (line.isBlank()) continue
                val what = "clips manifest line ${index + 1}"
                val row = asObject(try { Json.parse(line) } catch (e: EdgeAsrException) {
                    throw EdgeAsrException("$what is not valid JSON: ${e.message}")
                }, what)
                val group = row.string("group", what)
                if (group == Benchmark.ALL) throw EdgeAsrException("$what: group \"all\" is reserved for the whole set")
                clips.add(BenchClip(row.string("id", what), row.string("file", what), group,
                    row["text"] as? String))
            }
            if (clips.isEmpty()) throw EdgeAsrException("the clips manifest lists no clips")
            return clips
        }
    }
}

object Stats {
    /** numpy.percentile's default (linear interpolation between closest ranks); q in [0, 100]. */
    fun percentile(values: DoubleArray, q: Double): Double {
        require(values.isNotEmpty()) { "percentile of no values" }
        val sorted = values.copyOf()
        sorted.sort()
        val rank = q / 100.0 * (sorted.size - 1)
        val below = Math.floor(rank).toInt()
        val above = minOf(below + 1, sorted.size - 1)
        val fraction = rank - below
        return sorted[below] + (sorted[above] - sorted[below]) * fraction
    }

    fun median(values: DoubleArray) = percentile(values, 50.0)
}

/** Resident-set sizes from /proc/self/status (Linux and Android), in MB (10^6 bytes); null where absent. */
object ProcMemory {
    fun readMb(field: String, status: File = File("/proc/self/status")): Double? {
        if (!status.isFile) return null
        for (line in status.readLines()) {
            if (line.startsWith("$field:")) {
                val kb = line.substring(field.length + 1).trim().split(" ")[0].toLongOrNull() ?: return null
                return kb * 1024 / 1e6
            }
        }
        return null
    }

    fun peakRssMb(): Double? = readMb("VmHWM")
    fun rssMb(): Double? = readMb("VmRSS")
}

object Hashing {
    fun sha256(file: File): String {
        val digest = MessageDigest.getInstance("SHA-256")
        file.inputStream().use { input ->
            val buffer = ByteArray(1 shl 16)
            while (true) {
                val read = input.read(buffer)
                if (read < 0) break
                digest.update(buffer, 0, read)
            }
        }
        return digest.digest().joinToString("") { String.format("%02x", it) }
    }

    fun utcTimestamp(date: Date = Date()): String {
        val format = SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss'Z'", Locale.US)
        format.timeZone = TimeZone.getTimeZone("UTC")
        return format.format(date)
    }
}

class BenchOptions(val warmupRuns: Int = 1, val repeats: Int = 3) {
    init {
        require(warmupRuns >= 0 && repeats >= 1) { "warm-up runs >= 0 and repeats >= 1" }
    }
}

/** What identifies a run in every record. */
class BenchContext(val model: String, val artifactFile: String, val artifactSha256: String, val device: String,
                   val timestamp: String)

/**
 * Runs every clip `repeats` times after `warmupRuns` untimed runs and returns the records: load time, per
 * group and overall latency median / p90 over clips (each clip's latency is the median of its repeats),
 * real-time factor (summed latency / summed audio), peak resident memory, and one per-clip record carrying
 * the hypothesis for WER on the host.
 */
class Benchmark(private val options: BenchOptions = BenchOptions()) {
    class Loaded(val clip: BenchClip, val samples: FloatArray)

    fun run(transcribe: (FloatArray) -> Transcription, clips: List<Loaded>, loadMs: Double,
            context: BenchContext, progress: (String) -> Unit = {}): List<BenchRecord> {
        require(clips.isNotEmpty()) { "no clips to benchmark" }
        for (i in 0 until options.warmupRuns) transcribe(clips[0].samples)
        val records = ArrayList<BenchRecord>()
        fun record(metric: String, value: Double, unit: String, group: String, n: Int, extra: Map<String, Any?>? = null) {
            records.add(BenchRecord(context.model, context.artifactFile, context.artifactSha256, context.device,
                metric, value, unit, group, n, context.timestamp, extra))
        }
        record("load_ms", loadMs, "ms", ALL, 1)
        val latency = DoubleArray(clips.size)
        val audio = DoubleArray(clips.size)
        for ((index, item) in clips.withIndex()) {
            val runs = DoubleArray(options.repeats)
            var last: Transcription? = null
            for (r in 0 until options.repeats) {
                last = transcribe(item.samples)
                runs[r] = last.timingsMs.getValue("total")
            }
            latency[index] = Stats.median(runs)
            audio[index] = last!!.audioSeconds
            record("latency_ms", latency[index], "ms", item.clip.group, options.repeats, linkedMapOf(
                "clip" to item.clip.id, "hypothesis" to last.text, "audio_s" to last.audioSeconds,
                "language" to last.language))
            progress("${index + 1}/${clips.size} ${item.clip.id}: ${String.format("%.0f", latency[index])} ms")
        }
        val groups = LinkedHashMap<String, ArrayList<Int>>()
        groups[ALL] = ArrayList(clips.indices.toList())
        for ((index, item) in clips.withIndex()) groups.getOrPut(item.clip.group) { ArrayList() }.add(index)
        for ((group, members) in groups) {
            val values = DoubleArray(members.size) { latency[members[it]] }
            var latencySum = 0.0
            var audioSum = 0.0
            for (i in members) {
                latencySum += latency[i]
                audioSum += audio[i]
            }
            record("latency_ms_median", Stats.median(values), "ms", group, members.size)
            record("latency_ms_p90", Stats.percentile(values, 90.0), "ms", group, members.size)
            record("rtf", latencySum / 1000.0 / audioSum, "ratio", group, members.size)
        }
        val peak = ProcMemory.peakRssMb()
        if (peak != null) record("peak_rss_mb", peak, "MB", ALL, clips.size)
        return records
    }

    companion object {
        const val ALL = "all"
    }
}
