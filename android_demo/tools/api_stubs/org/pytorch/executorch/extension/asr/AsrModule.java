package org.pytorch.executorch.extension.asr;
// executorch-android's AsrModule (a Kotlin class there; same signatures from Kotlin callers)
public class AsrModule implements java.io.Closeable {
    public AsrModule(String modelPath, String tokenizerPath, String dataPath, String preprocessorPath) {}
    public boolean isValid() { return false; }
    public boolean isLoaded() { return false; }
    public int load() { return 0; }
    public String transcribe(String wavPath, AsrTranscribeConfig config, AsrCallback callback) { return null; }
    public void close() {}
}
