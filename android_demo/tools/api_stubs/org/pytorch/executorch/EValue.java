package org.pytorch.executorch;
public class EValue {
    public static EValue from(Tensor tensor) { return null; }
    public boolean isTensor() { return false; }
    public boolean isString() { return false; }
    public boolean isInt() { return false; }
    public boolean isBool() { return false; }
    public Tensor toTensor() { return null; }
    public String toStr() { return null; }
    public long toInt() { return 0; }
    public boolean toBool() { return false; }
}
