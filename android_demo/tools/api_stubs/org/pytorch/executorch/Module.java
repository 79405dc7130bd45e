package org.pytorch.executorch;
public class Module implements java.io.Closeable {
    public static final int LOAD_MODE_MMAP = 1;
    public static Module load(String modelPath, int loadMode, int numThreads) { return null; }
    public EValue[] execute(String methodName, EValue... inputs) { return null; }
    public void loadMethod(String methodName) {}
    public String[] getMethods() { return null; }
    public void destroy() {}
    public void close() {}
}
