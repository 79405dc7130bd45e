package org.edgeasr.core

/** One recorded greedy step: the tokens fed and the (sparse) logits that came back. */
class ReplayStep(val inputs: IntArray, val ids: IntArray, val values: FloatArray, val fill: Float) {
    fun dense(vocab: Int): FloatArray {
        val logits = FloatArray(vocab) { fill }
        for (i in ids.indices) logits[ids[i]] = values[i]
        return logits
    }
}

class ReplayCase(val variant: String, val maxNewTokens: Int, val steps: List<ReplayStep>,
                 val expectedTokens: IntArray, val expectedText: String)

class ReplayClip(val clip: String, val audio: String, val prompt: IntArray, val vocab: Int, val pythonText: String,
                 val cases: List<ReplayCase>)

class ReplayFile(val special: SpecialTokens, val specialJson: String, val maxSeqLen: Int, val clips: List<ReplayClip>) {
    companion object {
        fun parse(text: String): ReplayFile {
            val root = Json.parseObject(text, "decoder_replay.json")
            val specialMap = root.obj("special_tokens", "replay")
            val specialJson = Json.write(specialMap)
            val clips = root.list("clips", "replay").map { clipValue ->
                val clip = asObject(clipValue, "replay clip")
                val cases = clip.list("cases", "replay clip").map { caseValue ->
                    val case = asObject(caseValue, "replay case")
                    val steps = case.list("steps", "replay case").map { stepValue ->
                        val step = asObject(stepValue, "replay step")
                        val values = step.list("values", "replay step")
                        ReplayStep(step.intList("inputs", "step"), step.intList("ids", "step"),
                            FloatArray(values.size) { (values[it] as Number).toFloat() },
                            step.double("fill", "step").toFloat())
                    }
                    ReplayCase(case.string("variant", "case"), case.int("max_new_tokens", "case"), steps,
                        case.intList("expected_tokens", "case"), case.string("expected_text", "case"))
                }
                ReplayClip(clip.string("clip", "clip"), clip.string("audio", "clip"), clip.intList("prompt", "clip"),
                    clip.int("vocab", "clip"), clip.string("python_text", "clip"), cases)
            }
            return ReplayFile(SpecialTokens.fromJson(specialJson), specialJson, root.int("max_seq_len", "replay"),
                clips)
        }
    }
}

/**
 * A fake `text_decoder` that replays recorded steps and fails unless it is driven exactly as the exported
 * program must be: one token per call, cache positions 0, 1, 2, ... in order, the recorded tokens. Calls
 * inside the prompt get NaN logits, which the greedy loop must never look at (argmax rejects NaN).
 */
class ReplayDecoderMethod(private val steps: List<ReplayStep>, private val vocab: Int) : TextDecoderMethod {
    private val expected = ArrayList<IntArray>() // (token, position, step index or -1)
    var calls = 0
        private set

    init {
        var position = 0
        for ((index, step) in steps.withIndex()) {
            for ((i, token) in step.inputs.withIndex()) {
                expected.add(intArrayOf(token, position++, if (i == step.inputs.size - 1) index else -1))
            }
        }
    }

    override fun run(token: Int, position: Int): FloatArray {
        if (calls >= expected.size) throw CheckFailed("decoder called ${calls + 1} times, ${expected.size} recorded")
        val (wantToken, wantPosition, stepIndex) = expected[calls].let { Triple(it[0], it[1], it[2]) }
        if (token != wantToken || position != wantPosition) {
            throw CheckFailed("call $calls: got token $token at position $position, recorded token $wantToken at " +
                "position $wantPosition")
        }
        calls++
        return if (stepIndex < 0) FloatArray(vocab) { Float.NaN } else steps[stepIndex].dense(vocab)
    }

    fun allCallsMade() = calls == expected.size
}
