package org.edgeasr.core

/** Whisper's special tokens as the exporter stores them (the `edgeasr_special_tokens` constant method). */
class SpecialTokens(
    val sot: Int,
    val eot: Int,
    val transcribe: Int,
    val translate: Int,
    val noTimestamps: Int,
    val timestampBegin: Int,
    val isMultilingual: Boolean,
    /** language code -> token id, in the stored order (language detection breaks ties by this order). */
    val languages: LinkedHashMap<String, Int>,
    val suppress: IntArray,
    val suppressBegin: IntArray
) {
    /** Decoder prompt without timestamps, as runtimes/tokenizer.py `SpecialTokens.prompt`. */
    fun prompt(language: String?, task: String = "transcribe"): IntArray {
        if (!isMultilingual) {
            if (language != null && language != "en") {
                throw EdgeAsrException("this model is English-only; cannot transcribe language '$language'")
            }
            if (task != "transcribe") throw EdgeAsrException("this model is English-only; it cannot translate")
            return intArrayOf(sot, noTimestamps)
        }
        if (language == null) throw IllegalStateException("multilingual prompt needs a language (detect it first)")
        val languageToken = languages[language]
            ?: throw EdgeAsrException("unknown language '$language'; use an ISO code such as en, de, fr, es")
        val taskToken = when (task) {
            "transcribe" -> transcribe
            "translate" -> translate
            else -> throw EdgeAsrException("unknown task '$task': use transcribe or translate")
        }
        return intArrayOf(sot, languageToken, taskToken, noTimestamps)
    }

    companion object {
        fun fromJson(text: String): SpecialTokens {
            val what = "edgeasr_special_tokens"
            val data = Json.parseObject(text, what)
            val languages = LinkedHashMap<String, Int>()
            for ((code, id) in data.obj("languages", what)) {
                languages[code] = (id as? Long)?.toInt() ?: throw EdgeAsrException("$what: language $code")
            }
            return SpecialTokens(
                sot = data.int("sot", what), eot = data.int("eot", what),
                transcribe = data.int("transcribe", what), translate = data.int("translate", what),
                noTimestamps = data.int("no_timestamps", what), timestampBegin = data.int("timestamp_begin", what),
                isMultilingual = data.bool("is_multilingual", what), languages = languages,
                suppress = data.intList("suppress", what), suppressBegin = data.intList("suppress_begin", what)
            )
        }
    }
}

/** What the app shows about the plan the program was lowered from (the `edgeasr_plan` constant method). */
class PlanSummary(
    val modelId: String,
    val target: String,
    val personalised: Boolean,
    val totalBytes: Long,
    val budgetBytes: Long?,
    val formatCounts: Map<String, Long>,
    /** allocation order and scale calibration of the plan (myqasr, uniform, ...; minmax, cosine, ...) */
    val order: String? = null,
    val calibration: String? = null
) {
    fun describe(): String {
        val formats = formatCounts.entries.sortedBy { it.key }.joinToString(", ") { "${it.key} x${it.value}" }
        val budget = if (budgetBytes != null) " of a ${budgetBytes / 1_000_000} MB budget" else ""
        val personal = if (personalised) "personalised" else "not personalised"
        return "$modelId for $target, ${String.format("%.1f", totalBytes / 1e6)} MB of weights$budget ($personal); $formats"
    }

    companion object {
        fun fromJson(text: String): PlanSummary {
            val what = "edgeasr_plan"
            val data = Json.parseObject(text, what)
            val version = data.long("schema_version", what)
            if (version != 1L) throw EdgeAsrException("plan schema version $version is not supported (expected 1)")
            val counts = LinkedHashMap<String, Long>()
            for ((name, count) in data.obj("format_counts", what)) counts[name] = count as? Long ?: 0L
            return PlanSummary(
                modelId = data.string("model_id", what), target = data.string("target", what),
                personalised = data.bool("personalised", what),
                totalBytes = data.obj("totals", what).long("total", "$what.totals"),
                budgetBytes = data["budget_bytes"] as? Long, formatCounts = counts,
                order = data["order"] as? String, calibration = data["calibration"] as? String
            )
        }
    }
}

/**
 * Everything the app needs to run a program, read from the program's constant methods (never from file
 * names), with consistency checks so a program from another exporter fails with a clear message.
 */
class ModelConfig(
    val special: SpecialTokens,
    val plan: PlanSummary,
    val nMels: Int,
    val maxSeqLen: Int,
    val vocabSize: Int
) {
    companion object {
        /** The constant methods exporter/lower/executorch.py writes; `encoder` and `text_decoder` must exist too. */
        val CONSTANT_METHODS = listOf(
            "edgeasr_plan", "edgeasr_special_tokens", "get_max_seq_len", "decoder_start_token_id", "get_eos_id",
            "get_vocab_size", "get_n_mels", "use_kv_cache"
        )
        val PROGRAM_METHODS = listOf("encoder", "text_decoder")

        /**
         * `methods`: the program's method names; `constant(name)`: the single value a constant method returns
         * (String, Long or Boolean, as ExecuTorch's EValue gives them).
         */
        fun fromProgram(methods: Collection<String>, constant: (String) -> Any?): ModelConfig {
            val missing = (PROGRAM_METHODS + CONSTANT_METHODS).filter { it !in methods }
            if (missing.isNotEmpty()) {
                throw EdgeAsrException("the program lacks ${missing.joinToString(", ")}; export it with " +
                    "`edgeasr export --target android` (this app does not guess settings from file names)")
            }
            fun long(name: String): Long = constant(name) as? Long
                ?: throw EdgeAsrException("constant method $name did not return an integer")
            fun string(name: String): String = constant(name) as? String
                ?: throw EdgeAsrException("constant method $name did not return a string")

            val special = SpecialTokens.fromJson(string("edgeasr_special_tokens"))
            if (constant("use_kv_cache") != true) {
                throw EdgeAsrException("the program's text_decoder has no KV cache (use_kv_cache is not true)")
            }
            if (long("decoder_start_token_id").toInt() != special.sot || long("get_eos_id").toInt() != special.eot) {
                throw EdgeAsrException("the program's decoder_start_token_id/get_eos_id disagree with its special tokens")
            }
            val config = ModelConfig(
                special = special, plan = PlanSummary.fromJson(string("edgeasr_plan")),
                nMels = long("get_n_mels").toInt(), maxSeqLen = long("get_max_seq_len").toInt(),
                vocabSize = long("get_vocab_size").toInt()
            )
            if (config.nMels != 80 && config.nMels != 128) {
                throw EdgeAsrException("the program expects ${config.nMels} mel bins; Whisper uses 80 or 128")
            }
            return config
        }
    }
}
