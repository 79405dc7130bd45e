package org.edgeasr.core

/** A clear, actionable problem with the user's input or the bundled artifact (the app shows the message). */
class EdgeAsrException(message: String) : Exception(message)
