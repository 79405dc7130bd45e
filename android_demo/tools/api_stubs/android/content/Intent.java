package android.content;
public class Intent {
    public static final String ACTION_OPEN_DOCUMENT = "android.intent.action.OPEN_DOCUMENT";
    public static final String CATEGORY_OPENABLE = "android.intent.category.OPENABLE";
    public Intent(String action) {}
    public String getAction() { return null; }
    public android.net.Uri getData() { return null; }
    public boolean getBooleanExtra(String name, boolean defaultValue) { return defaultValue; }
    public int getIntExtra(String name, int defaultValue) { return defaultValue; }
    public Intent addCategory(String category) { return this; }
    public String getType() { return null; }
    public Intent setType(String type) { return this; }
}
