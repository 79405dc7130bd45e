package org.edgeasr.core

import java.io.File

/**
 * JVM tests of the app's model-independent core against vectors from the Python side
 * (android_demo/tools/make_test_vectors.py). Usage: CoreTestsKt VECTORS_DIR/vectors.json
 */
fun main(args: Array<String>) {
    if (args.size != 1) {
        System.err.println("usage: CoreTestsKt VECTORS_DIR/vectors.json")
        System.exit(2)
    }
    val vectorsFile = File(args[0])
    val vectors = Json.parseObject(vectorsFile.readText(), "vectors.json")
    val dir = vectorsFile.parentFile
    val replay = ReplayFile.parse(File(vectors.string("replay", "vectors")).readText())
    val checks = Checks()
    jsonTests(checks)
    wavTests(checks, vectors, dir)
    logMelTests(checks, vectors, dir)
    tokenizerTests(checks, vectors)
    greedyTests(checks, replay)
    configTests(checks, replay)
    transcriberTests(checks, vectors, dir, replay)
    benchTests(checks, vectors, dir)
    System.exit(checks.finish())
}

private fun file(dir: File, name: String) = if (File(name).isAbsolute) File(name) else File(dir, name)

private fun jsonTests(checks: Checks) {
    checks.test("json round trip keeps types, order, escapes and surrogate pairs") {
        val text = """{"b": [1, -2.5e-3, true, null], "a": "x\"\\\n\u00e9\ud83d\ude42", "c": {}}"""
        val value = Json.parseObject(text, "sample")
        checkEqual(listOf("b", "a", "c"), value.keys.toList(), "key order")
        checkEqual(listOf<Any?>(1L, -2.5e-3, true, null), value["b"], "array")
        checkEqual("x\"\\\n\u00e9\ud83d\ude42", value["a"], "string")
        checkEqual(value, Json.parseObject(Json.write(value), "rewritten"), "round trip")
    }
    checks.test("json errors name the problem") {
        expectError("unterminated") { Json.parse("""{"a": [1, 2""") }
        expectError("after the JSON value") { Json.parse("1 2") }
        expectError("no \"x\"") { Json.parseObject("{}", "thing").int("x", "thing") }
    }
}

private fun wavTests(checks: Checks, vectors: Map<String, Any?>, dir: File) {
    for (clipValue in vectors.list("clips", "vectors")) {
        val clip = asObject(clipValue, "clip")
        if (clip.long("wav_rate", "clip") != Wav.SAMPLE_RATE.toLong()) continue // resampled in Python; see bad_wavs
        checks.test("wav: ${clip["id"]} reads the samples soundfile reads") {
            val ours = Wav.readFile(File(clip.string("wav", "clip")))
            val reference = readF32(file(dir, clip.string("samples", "clip")))
            checkEqual(reference.size, ours.size, "sample count")
            checkEqual(0.0, maxAbsDiff(reference, ours), "max abs difference")
        }
    }
    for (variantValue in vectors.list("wav_variants", "vectors")) {
        val variant = asObject(variantValue, "variant")
        val name = variant.string("wav", "variant")
        checks.test("wav: $name matches load_audio") {
            val ours = Wav.readFile(file(dir, name))
            val reference = readF32(file(dir, variant.string("samples", "variant")))
            val diff = maxAbsDiff(reference, ours)
            // stereo is averaged in float32 by both sides; integer scalings are exact
            verify(diff <= 1e-7) { "max abs difference $diff" }
        }
    }
    for (badValue in vectors.list("bad_wavs", "vectors")) {
        val bad = asObject(badValue, "bad wav")
        checks.test("wav: ${File(bad.string("wav", "bad")).name} is rejected clearly") {
            expectError(bad.string("error", "bad")) { Wav.readFile(file(dir, bad.string("wav", "bad"))) }
        }
    }
    checks.test("wav: a recording saved as PCM16 reads back within one quantisation step") {
        val tone = FloatArray(16000) { (0.3 * Math.sin(2 * Math.PI * 440 * it / 16000.0)).toFloat() }
        val back = Wav.read(Wav.encodePcm16(tone), "tone")
        verify(maxAbsDiff(tone, back) <= 1.0 / 32767) { "round trip error ${maxAbsDiff(tone, back)}" }
    }
}

private fun logMelTests(checks: Checks, vectors: Map<String, Any?>, dir: File) {
    checks.test("fft matches a direct DFT for n = 400 and other lengths") {
        for (n in intArrayOf(400, 7, 12, 50)) {
            val random = java.util.Random(n.toLong())
            val re = DoubleArray(n) { random.nextGaussian() }
            val im = DoubleArray(n) { random.nextGaussian() }
            val outRe = re.copyOf()
            val outIm = im.copyOf()
            Fft(n).transform(outRe, outIm)
            for (k in 0 until n) {
                var sr = 0.0
                var si = 0.0
                for (t in 0 until n) {
                    val angle = -2.0 * Math.PI * k * t / n
                    sr += re[t] * Math.cos(angle) - im[t] * Math.sin(angle)
                    si += re[t] * Math.sin(angle) + im[t] * Math.cos(angle)
                }
                verify(Math.abs(sr - outRe[k]) < 1e-9 && Math.abs(si - outIm[k]) < 1e-9) { "n=$n bin $k differs" }
            }
        }
    }
    val filters = vectors.obj("mel_filters", "vectors")
    for ((nMels, name) in filters) {
        checks.test("mel filter bank ($nMels) equals transformers' mel_filter_bank") {
            val reference = readF64(file(dir, name as String))
            val ours = LogMel(nMels.toInt()).filters
            var worst = 0.0
            for (m in ours.indices) for (k in ours[m].indices) {
                worst = Math.max(worst, Math.abs(ours[m][k] - reference[m * LogMel.N_FREQS + k]))
            }
            verify(worst < 1e-12) { "max abs difference $worst" }
        }
    }
    val logMel = LogMel(80)
    for (clipValue in vectors.list("clips", "vectors")) {
        val clip = asObject(clipValue, "clip")
        checks.test("log-mel: ${clip["id"]} matches runtimes.audio.log_mel") {
            val reference = readF32(file(dir, clip.string("mel80", "clip")))
            val ours = logMel.compute(readF32(file(dir, clip.string("samples", "clip"))))
            val diff = maxAbsDiff(reference, ours)
            println("  log-mel ${clip["id"]}: max abs difference $diff (features span about -1.5..1.5)")
            // float32 torch.stft vs double here; 1e-4 is far below what changes an encoder's output
            verify(diff < 1e-4) { "max abs difference $diff" }
        }
    }
}

private fun tokenizerTests(checks: Checks, vectors: Map<String, Any?>) {
    val decoder = TokenDecoder.fromTokenizerJson(File(vectors.string("tokenizer_json", "vectors")).readText())
    val replaySpecialEot = 50256 // checked against the replay's special tokens in configTests
    checks.test("token decoding: real, special, cut and random id sequences give decode_text's text") {
        val cases = vectors.list("tokenizer_cases", "vectors")
        var replaced = 0
        for ((i, caseValue) in cases.withIndex()) {
            val case = asObject(caseValue, "tokenizer case")
            val expected = case.string("text", "case")
            val got = decoder.decode(case.intList("ids", "case"), replaySpecialEot)
            checkEqual(expected, got, "case $i (${case.list("ids", "case")})")
            if (expected.contains('\uFFFD')) replaced++
        }
        verify(replaced >= 5) { "only $replaced cases exercise invalid UTF-8" }
    }
    checks.test("the ASR runner's text loses its special tokens' text, not other angle brackets") {
        val streamed = "<|startoftranscript|><|notimestamps|> He could wait no longer.<|endoftext|>"
        checkEqual("He could wait no longer.", decoder.removeSpecialTokens(streamed), "runner text")
        checkEqual("a <|x|> b", decoder.removeSpecialTokens(" a <|x|> b<|endoftext|>"), "not a token")
    }
    checks.test("bundled adapter files name their users") {
        checkEqual(listOf("b", "user-a"), AdapterFiles.users(listOf("user-a.ptd", "README.md", "b.ptd")), "users")
        checkEqual("adapters/b.ptd", AdapterFiles.assetPath("b"), "asset path")
        expectError("do not name a user") { AdapterFiles.users(listOf("-a.ptd")) }
    }
    checks.test("utf-8: maximal invalid subsequences become one U+FFFD each") {
        val bytes = byteArrayOf(0x61, 0xE6.toByte(), 0x97.toByte(), 0x62, 0xF0.toByte(), 0x9F.toByte(),
            0x99.toByte(), 0x82.toByte(), 0xC0.toByte(), 0xED.toByte(), 0xA0.toByte(), 0x80.toByte())
        checkEqual("a\uFFFDb\ud83d\ude42\uFFFD\uFFFD\uFFFD\uFFFD", Utf8.decodeLossy(bytes), "decoded")
    }
}

private fun replayMethod(case: ReplayCase, clip: ReplayClip) = ReplayDecoderMethod(case.steps, clip.vocab)

private fun greedyTests(checks: Checks, replay: ReplayFile) {
    for (clip in replay.clips) {
        for (case in clip.cases) {
            checks.test("greedy: ${clip.clip}/${case.variant} gives greedy_decode's tokens") {
                val method = replayMethod(case, clip)
                val session = KvCacheDecoderSession(method, replay.maxSeqLen)
                val tokens = Greedy.decode(session, clip.prompt, replay.special, case.maxNewTokens)
                checkTokens(case.expectedTokens, tokens, "tokens")
                verify(method.allCallsMade()) { "only ${method.calls} decoder calls were made" }
            }
        }
    }
    checks.test("greedy: the adversarial variants actually lift forbidden tokens to the top") {
        val special = replay.special
        for (clip in replay.clips) {
            val case = clip.cases.first { it.variant == "adversarial" }
            for ((index, step) in case.steps.withIndex()) {
                val logits = step.dense(clip.vocab)
                val raw = Greedy.argmax(logits, null)
                verify(Greedy.mask(special, clip.vocab, index == 0)[raw]) { "${clip.clip} step $index: raw argmax $raw is allowed" }
            }
        }
    }
    checks.test("greedy: length limits as in greedy_decode") {
        val special = replay.special
        val vocab = replay.clips[0].vocab
        val alwaysSame = object : DecoderSession {
            var calls = 0
            override fun step(tokens: IntArray): FloatArray {
                calls++
                return FloatArray(vocab).also { it[1000] = 5f }
            }
        }
        checkEqual(7, Greedy.decode(alwaysSame, intArrayOf(special.sot, special.noTimestamps), special, 7).size, "cap")
        checkEqual(7, alwaysSame.calls, "decoder calls")
        val longPrompt = IntArray(Greedy.MAX_POSITIONS - 3) { special.sot }
        checkEqual(3, Greedy.decode(alwaysSame, longPrompt, special).size, "context limit")
    }
    checks.test("greedy: the loop guard of greedy_decode") {
        val special = replay.special
        val vocab = replay.clips[0].vocab
        val cycle = object : DecoderSession {  // 1000 1001 1000 1001 ...: a decoder loop of period 2
            var calls = 0
            override fun step(tokens: IntArray): FloatArray {
                calls++
                return FloatArray(vocab).also { it[1000 + calls % 2] = 5f }
            }
        }
        val prompt = intArrayOf(special.sot, special.noTimestamps)
        checkEqual(listOf(1001, 1000), Greedy.decode(cycle, prompt, special, 30).toList(), "first copy kept")
        checkEqual(30, Greedy.decode(cycle, prompt, special, 30, loopGuard = false).size, "guard off")
        checkEqual(null, Greedy.repeatedTail(List(15) { 7 }), "15 repeats of one token are speech")
        checkEqual(1, Greedy.repeatedTail(List(16) { 7 }), "16 are a loop")
        checkEqual(7, Greedy.repeatedTail(listOf(5) + List(3) { listOf(1, 2, 3, 4, 5, 6) }.flatten()), "phrase x3")
    }
    checks.test("kv cache: positions past the program's cache are refused") {
        val method = object : TextDecoderMethod {
            override fun run(token: Int, position: Int) = FloatArray(4)
        }
        val session = KvCacheDecoderSession(method, 3)
        session.step(intArrayOf(1, 2, 3))
        expectError("cache is full") { session.step(intArrayOf(4)) }
    }
    checks.test("greedy: NaN logits are an error, not a token") {
        expectError("NaN") { Greedy.argmax(floatArrayOf(1f, Float.NaN, 0f), null) }
    }
    checks.test("language detection picks the best language token, first on ties") {
        val special = SpecialTokens(1, 0, 2, 3, 4, 5, true, linkedMapOf("en" to 6, "de" to 7, "fr" to 8),
            IntArray(0), IntArray(0))
        checkEqual("de", Greedy.detectLanguage(floatArrayOf(0f, 0f, 0f, 0f, 0f, 0f, 1f, 3f, 3f), special), "best")
        checkTokens(intArrayOf(1, 7, 3, 4), special.prompt("de", "translate"), "prompt")
        expectError("unknown language") { special.prompt("xx") }
    }
}

private fun constants(replay: ReplayFile, overrides: Map<String, Any?> = emptyMap()): Map<String, Any?> {
    val plan = """{"schema_version": 1, "model_id": "tiny.en", "target": "android", "personalised": false,
        "budget_bytes": 45000000, "totals": {"total": 31000000}, "format_counts": {"8da4_g32": 65, "fp32": 2}}"""
    val values = linkedMapOf<String, Any?>(
        "encoder" to null, "text_decoder" to null, "edgeasr_plan" to plan, "edgeasr_special_tokens" to replay.specialJson,
        "get_max_seq_len" to replay.maxSeqLen.toLong(), "decoder_start_token_id" to replay.special.sot.toLong(),
        "get_eos_id" to replay.special.eot.toLong(), "get_vocab_size" to replay.clips[0].vocab.toLong(),
        "get_n_mels" to 80L, "use_kv_cache" to true
    )
    values.putAll(overrides)
    return values.filterValues { it != REMOVED }
}

private val REMOVED = Any()

private fun configTests(checks: Checks, replay: ReplayFile) {
    checks.test("config: read from the program's constant methods") {
        val values = constants(replay)
        val config = ModelConfig.fromProgram(values.keys) { values[it] }
        checkEqual(80, config.nMels, "n_mels")
        checkEqual(50256, config.special.eot, "eot (the token decoder test assumes it)")
        checkEqual(false, config.special.isMultilingual, "tiny.en")
        verify(config.plan.describe().startsWith("tiny.en for android, 31.0 MB")) { config.plan.describe() }
    }
    checks.test("config: a program without edgeasr's constant methods is refused clearly") {
        val values = constants(replay, mapOf("edgeasr_plan" to REMOVED))
        expectError("lacks edgeasr_plan") { ModelConfig.fromProgram(values.keys) { values[it] } }
    }
    checks.test("config: inconsistent or unexpected constants are refused") {
        val eos = constants(replay, mapOf("get_eos_id" to 7L))
        expectError("disagree") { ModelConfig.fromProgram(eos.keys) { eos[it] } }
        val noCache = constants(replay, mapOf("use_kv_cache" to false))
        expectError("no KV cache") { ModelConfig.fromProgram(noCache.keys) { noCache[it] } }
        val mels = constants(replay, mapOf("get_n_mels" to 64L))
        expectError("64 mel bins") { ModelConfig.fromProgram(mels.keys) { mels[it] } }
    }
}

/** A model whose encoder checks it got the Python features and whose decoder replays the recorded steps. */
private class ReplayModel(override val config: ModelConfig, private val features: FloatArray,
                          private val clip: ReplayClip, private val case: ReplayCase) : SpeechModel<String> {
    var encoderDiff = Double.NaN

    override fun encode(features: FloatArray): String {
        encoderDiff = maxAbsDiff(this.features, features)
        verify(encoderDiff < 1e-4) { "encoder input differs from log_mel by $encoderDiff" }
        return clip.clip
    }

    override fun decoderMethod(encoded: String): TextDecoderMethod {
        checkEqual(clip.clip, encoded, "encoder output handed to the decoder")
        return ReplayDecoderMethod(case.steps, clip.vocab)
    }
}

private fun transcriberTests(checks: Checks, vectors: Map<String, Any?>, dir: File, replay: ReplayFile) {
    val values = constants(replay)
    val config = ModelConfig.fromProgram(values.keys) { values[it] }
    val tokens = TokenDecoder.fromTokenizerJson(File(vectors.string("tokenizer_json", "vectors")).readText())
    val clips = vectors.list("clips", "vectors").map { asObject(it, "clip") }
    for (clip in replay.clips) {
        checks.test("transcribe: ${clip.clip} WAV -> text equals the Python ExecuTorch runner's") {
            val vector = clips.first { it["id"] == clip.clip }
            val features = readF32(file(dir, vector.string("mel80", "clip")))
            val model = ReplayModel(config, features, clip, clip.cases.first { it.variant == "recorded" })
            // 16 kHz clips go through the WAV reader too; others (JFK is 44.1 kHz) use load_audio's resampled samples
            val samples = if (vector.long("wav_rate", "clip") == Wav.SAMPLE_RATE.toLong()) {
                Wav.readFile(File(vector.string("wav", "clip")))
            } else {
                readF32(file(dir, vector.string("samples", "clip")))
            }
            val result = Transcriber(model, tokens).transcribe(samples)
            checkEqual(clip.pythonText, result.text, "text")
            checkEqual("en", result.language, "language")
            verify(result.timingsMs.getValue("total") > 0) { "no timing" }
        }
    }
}

private fun benchTests(checks: Checks, vectors: Map<String, Any?>, dir: File) {
    checks.test("stats: percentiles match numpy.percentile") {
        for (caseValue in vectors.list("stats_cases", "vectors")) {
            val case = asObject(caseValue, "stats case")
            val values = case.list("values", "case").map { (it as Number).toDouble() }.toDoubleArray()
            val got = Stats.percentile(values, case.double("q", "case"))
            verify(Math.abs(got - case.double("expected", "case")) < 1e-9) { "$got vs ${case["expected"]}" }
        }
    }
    checks.test("bench: records carry the harness schema, per group and per clip") {
        val clips = listOf(BenchClip("a", "a.wav", "male", "x"), BenchClip("b", "b.wav", "female", null),
            BenchClip("c", "c.wav", "male", null))
        var calls = 0
        val fake: (FloatArray) -> Transcription = { samples ->
            calls++
            Transcription("hello", intArrayOf(1), "en", samples.size / 16000.0,
                mapOf("total" to 100.0 * samples.size / 16000.0))
        }
        val loaded = clips.mapIndexed { i, c -> Benchmark.Loaded(c, FloatArray(16000 * (i + 1))) }
        val plan = PlanSummary("tiny.en", "android", true, 40_000_000L, 45_000_000L, mapOf("8da4_g32" to 3L),
            "myqasr", "cosine")
        val context = BenchContext(Hashing.runId("ab".repeat(32)), plan, "model.pte", 41_000_000L, "ab".repeat(32),
            "executorch-android 1.5.1", DeviceInfo("host", "JVM test", System.getProperty("os.name"),
                System.getProperty("os.arch"), Runtime.getRuntime().availableProcessors(), ProcMemory.totalMemoryBytes()),
            "test clips")
        val baseline = ProcMemory.rssBytes()
        val memory = MemoryReadings(baseline, ProcMemory.peakRssBytes(), baseline)
        val records = Benchmark(BenchOptions(warmupRuns = 1, repeats = 2)).run(fake, loaded, 12.5, memory, context)
        checkEqual(1 + 2 * 3, calls, "transcriptions (warm-up + repeats)")
        val parsed = asObject(Json.parse(BenchRecord.toJson(records)), "results")
        checkEqual(1L, parsed["schema_version"], "results schema_version")
        for (item in parsed.list("records", "results")) {
            val record = asObject(item, "record")
            checkEqual("executorch-android", record.obj("runtime", "record")["name"], "runtime")
            checkEqual(context.runId, record["run_id"], "run id")
        }
        fun value(metric: String, group: String) =
            records.first { it.metric == metric && it.group == group }.value!!
        checkEqual(200.0, value("latency_median", "all"), "median over clips (100, 200, 300 ms)")
        checkEqual(200.0, value("latency_median", "male"), "male median (100, 300 ms)")
        verify(Math.abs(value("real_time_factor", "all") - 0.1) < 1e-12) { "real-time factor ${value("real_time_factor", "all")}" }
        checkEqual(2, records.count { it.metric == "clip_latency" && it.group == "male" }, "per-clip records")
        checkEqual(41_000_000.0, value("artifact_bytes", "all"), "artifact bytes")
        verify(records.any { it.metric == "memory_run_peak" && it.value!! >= 0.0 }) { "no run peak record" }
        checkEqual(1, records.map { it.timestamp }.distinct().size, "one finish timestamp")
        // the Python side validates these against the schema (tests/test_android_core.py, collect_results.py)
        File(dir, "kotlin_records.json").writeText(BenchRecord.toJson(records))
    }
    checks.test("bench: clip manifests are validated") {
        checkEqual(2, BenchClip.parseManifest("""{"id": "a", "file": "a.wav", "group": "f", "text": "x"}
            |{"id": "b", "file": "b.wav", "group": "m"}""".trimMargin()).size, "clips")
        expectError("reserved") { BenchClip.parseManifest("""{"id": "a", "file": "a.wav", "group": "all"}""") }
        expectError("no \"file\"") { BenchClip.parseManifest("""{"id": "a", "group": "m"}""") }
    }
}
