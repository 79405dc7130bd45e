package org.pytorch.executorch.extension.asr;
// executorch-android's AsrTranscribeConfig (a Kotlin data class there)
public final class AsrTranscribeConfig {
    public AsrTranscribeConfig(long maxNewTokens, float temperature, long decoderStartTokenId) {}
    public long getMaxNewTokens() { return 0; }
    public float getTemperature() { return 0; }
    public long getDecoderStartTokenId() { return 0; }
}
