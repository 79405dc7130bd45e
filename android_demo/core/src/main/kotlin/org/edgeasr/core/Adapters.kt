package org.edgeasr.core

/**
 * The per-user adapter files bundled beside a base program that keeps its users' LoRA adapters apart:
 * `adapters/<user>.ptd` in the app's assets (exporter/export/bundle.py writes them, after checking each was
 * written for the bundled program).
 */
object AdapterFiles {
    const val FOLDER = "adapters"
    const val SUFFIX = ".ptd"
    /** The names exporter/export/bundle.py accepts (`check_user_name`). */
    private val USER_NAME = Regex("[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

    /** The users among a folder listing of `adapters/`, sorted; other files are not adapters and are skipped. */
    fun users(fileNames: List<String>): List<String> {
        val users = fileNames.filter { it.endsWith(SUFFIX) }.map { it.removeSuffix(SUFFIX) }
        val bad = users.filter { !USER_NAME.matches(it) }
        if (bad.isNotEmpty()) {
            throw EdgeAsrException("bundled adapter file(s) ${bad.joinToString(", ") { "$it$SUFFIX" }} do not " +
                "name a user; bundle them with `edgeasr adapter --bundle ... --user NAME`")
        }
        return users.sorted()
    }

    fun assetPath(user: String): String = "$FOLDER/$user$SUFFIX"
}
