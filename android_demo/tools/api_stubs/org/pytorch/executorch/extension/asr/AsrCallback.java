package org.pytorch.executorch.extension.asr;
// executorch-android's AsrCallback (a Kotlin interface there, onError with a default body)
public interface AsrCallback {
    void onToken(String token);
    default void onError(int errorCode, String message) {}
}
