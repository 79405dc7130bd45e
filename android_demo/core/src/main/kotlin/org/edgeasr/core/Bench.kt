package org.edgeasr.core

import java.io.File
import java.security.MessageDigest
import java.text.SimpleDateFormat
import java.util.Date
import java.util.Locale
import java.util.TimeZone

/**
 * The benchmark mode's results in the harness's record schema (exporter/schemas/bench_result.schema.json,
 * schema_version 1): one record per model x runtime x artifact x metric (x group), with the same metric names
 * and units as `edgeasr bench`, so phone results append to the host harness's table. The Python side checks
 * them with exporter/bench_schema.py (android_demo/tools/collect_results.py).
 */
class BenchRecord(
    val context: BenchContext,
    val timestamp: String,
    val metric: String,
    val value: Double?,
    val unit: String,
    val group: String,
    val n: Int,
    /** e.g. per-clip details (clip id, hypothesis, audio seconds); the host collector turns hypotheses into WER */
    val extra: Map<String, Any?>? = null
) {
    fun toMap(): Map<String, Any?> {
        val c = context
        val map = linkedMapOf<String, Any?>(
            "schema_version" to SCHEMA_VERSION, "timestamp" to timestamp, "run_id" to c.runId,
            "model" to linkedMapOf("name" to c.plan.modelId, "plan_target" to c.plan.target,
                "order" to c.plan.order, "calibration" to c.plan.calibration, "personalised" to c.plan.personalised),
            "runtime" to linkedMapOf("name" to RUNTIME, "version" to c.runtimeVersion, "backend" to BACKEND,
                "threads" to null),
            "artifact" to linkedMapOf("name" to c.artifactFile, "format" to "pte", "sha256" to c.artifactSha256,
                "bytes" to c.artifactBytes, "budget_bytes" to c.plan.budgetBytes, "n_frames" to null,
                "attention" to null),
            "device" to linkedMapOf("kind" to c.device.kind, "name" to c.device.name, "os" to c.device.os,
                "machine" to c.device.machine, "cores" to c.device.cores, "memory_bytes" to c.device.memoryBytes),
            "data" to linkedMapOf("name" to c.dataName, "split" to null, "n_clips" to c.nClips,
                "audio_seconds" to c.audioSeconds),
            "metric" to linkedMapOf("name" to metric, "value" to value, "unit" to unit),
            "group" to group, "n" to n
        )
        if (extra != null) map["extra"] = extra
        return map
    }

    companion object {
        const val SCHEMA_VERSION = 1
        const val RUNTIME = "executorch-android"
        const val BACKEND = "xnnpack"
        const val CLIP_LATENCY = "clip_latency"
        val UNITS = setOf("ms", "s", "bytes", "ratio", "count")

        /** The results file: {"schema_version": 1, "generated_by": ..., "records": [...]}. */
        fun toJson(records: List<BenchRecord>, generatedBy: String = "edgeasr android_demo benchmark mode"): String =
            "{\"schema_version\": $SCHEMA_VERSION, \"generated_by\": ${Json.write(generatedBy)}, \"records\": [\n" +
                records.joinToString(",\n") { "  " + Json.write(it.toMap()) } + "\n]}\n"
    }
}

/** The schema's device object; `kind` is phone, emulator, board (or host when the JVM tests run it). */
class DeviceInfo(val kind: String, val name: String, val os: String?, val machine: String?, val cores: Int?,
                 val memoryBytes: Long?) {
    init {
        require(kind in setOf("host", "phone", "emulator", "board")) { "device kind $kind" }
    }
}

/** What identifies a run in every record. `nClips` / `audioSeconds` describe the whole clip set. */
class BenchContext(
    val runId: String,
    val plan: PlanSummary,
    val artifactFile: String,
    val artifactBytes: Long,
    val artifactSha256: String,
    val runtimeVersion: String,
    val device: DeviceInfo,
    val dataName: String
) {
    var nClips: Int = 0
        internal set
    var audioSeconds: Double? = null
        internal set
}

/** Resident memory of the process around loading, in bytes, as the host harness measures it. */
class MemoryReadings(val baselineBytes: Long?, val loadPeakBytes: Long?, val afterLoadBytes: Long?)

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

/** Resident-set sizes from /proc/self/status (Linux and Android); null where absent. */
object ProcMemory {
    fun readKb(field: String, status: File = File("/proc/self/status")): Long? {
        if (!status.isFile) return null
        for (line in status.readLines()) {
            if (line.startsWith("$field:")) {
                return line.substring(field.length + 1).trim().split(" ")[0].toLongOrNull()
            }
        }
        return null
    }

    fun readMb(field: String, status: File = File("/proc/self/status")): Double? =
        readKb(field, status)?.let { it * 1024 / 1e6 }

    fun peakRssMb(): Double? = readMb("VmHWM")
    fun rssMb(): Double? = readMb("VmRSS")
    fun peakRssBytes(): Long? = readKb("VmHWM")?.let { it * 1024 }
    fun rssBytes(): Long? = readKb("VmRSS")?.let { it * 1024 }
    /** Physical memory of the device (MemTotal of /proc/meminfo). */
    fun totalMemoryBytes(meminfo: File = File("/proc/meminfo")): Long? = readKb("MemTotal", meminfo)?.let { it * 1024 }
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

    /** A run id shared by one run's records: 12 hex digits from the time and the artifact's hash. */
    fun runId(artifactSha256: String, nanos: Long = System.nanoTime(), millis: Long = System.currentTimeMillis()): String {
        val digest = MessageDigest.getInstance("SHA-256")
        digest.update("$artifactSha256 $millis $nanos".toByteArray())
        return digest.digest().joinToString("") { String.format("%02x", it) }.substring(0, 12)
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

/**
 * Runs every clip `repeats` times after `warmupRuns` untimed runs and returns the records, named as the host
 * harness names them: load_time; per group and overall latency_median / latency_p90 over clips (each clip's
 * latency is the median of its repeats) and real_time_factor (summed latency / summed audio); memory_baseline,
 * memory_load_peak, memory_run_peak (bytes above the baseline, from VmRSS/VmHWM) when readable; artifact_bytes;
 * and one clip_latency record per clip carrying the hypothesis for WER on the host.
 */
class Benchmark(private val options: BenchOptions = BenchOptions()) {
    class Loaded(val clip: BenchClip, val samples: FloatArray)

    fun run(transcribe: (FloatArray) -> Transcription, clips: List<Loaded>, loadMs: Double, memory: MemoryReadings,
            context: BenchContext, progress: (String) -> Unit = {},
            clock: () -> String = { Hashing.utcTimestamp() }): List<BenchRecord> {
        require(clips.isNotEmpty()) { "no clips to benchmark" }
        for (i in 0 until options.warmupRuns) transcribe(clips[0].samples)
        // Records are stamped once the run has finished (the schema's timestamp), so collect them first.
        val pending = ArrayList<(String) -> BenchRecord>()
        fun record(metric: String, value: Double?, unit: String, group: String, n: Int, extra: Map<String, Any?>? = null) {
            require(unit in BenchRecord.UNITS) { "unit $unit is not in the schema" }
            pending.add { finished -> BenchRecord(context, finished, metric, value, unit, group, n, extra) }
        }
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
            record(BenchRecord.CLIP_LATENCY, latency[index], "ms", item.clip.group, options.repeats, linkedMapOf(
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
            record("latency_median", Stats.median(values), "ms", group, members.size,
                if (group == ALL) linkedMapOf<String, Any?>("warmup_runs" to options.warmupRuns,
                    "repeats" to options.repeats) else null)
            record("latency_p90", Stats.percentile(values, 90.0), "ms", group, members.size)
            record("real_time_factor", if (audioSum > 0) latencySum / 1000.0 / audioSum else null, "ratio", group,
                members.size, linkedMapOf<String, Any?>("audio_seconds" to audioSum, "compute_seconds" to latencySum / 1000.0))
        }
        val n = clips.size
        record("load_time", loadMs, "ms", ALL, n)
        val baseline = memory.baselineBytes
        val runPeak = ProcMemory.peakRssBytes()
        if (baseline != null) {
            val how = linkedMapOf<String, Any?>("peak_method" to "VmHWM")
            record("memory_baseline", baseline.toDouble(), "bytes", ALL, n, how)
            if (memory.loadPeakBytes != null) {
                record("memory_load_peak", (memory.loadPeakBytes - baseline).toDouble(), "bytes", ALL, n,
                    linkedMapOf("peak_method" to "VmHWM", "absolute_bytes" to memory.loadPeakBytes,
                        "after_load_bytes" to memory.afterLoadBytes?.let { it - baseline }))
            }
            if (runPeak != null) {
                record("memory_run_peak", (runPeak - baseline).toDouble(), "bytes", ALL, n,
                    linkedMapOf("peak_method" to "VmHWM", "absolute_bytes" to runPeak))
            }
        }
        record("artifact_bytes", context.artifactBytes.toDouble(), "bytes", ALL, 0,
            linkedMapOf<String, Any?>("budget_bytes" to context.plan.budgetBytes))
        context.nClips = n
        context.audioSeconds = audio.sum()
        val finished = clock()
        return pending.map { it(finished) }
    }

    companion object {
        const val ALL = "all"
    }
}
