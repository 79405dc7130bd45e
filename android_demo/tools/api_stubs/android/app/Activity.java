package android.app;
public class Activity extends android.content.Context {
    public static final int RESULT_OK = -1;
    protected void onCreate(android.os.Bundle savedInstanceState) {}
    protected void onDestroy() {}
    protected void onActivityResult(int requestCode, int resultCode, android.content.Intent data) {}
    public void onRequestPermissionsResult(int requestCode, String[] permissions, int[] grantResults) {}
    public android.content.Intent getIntent() { return null; }
    public void setContentView(android.view.View view) {}
    public final void runOnUiThread(Runnable action) {}
    public void finish() {}
    public int checkSelfPermission(String permission) { return 0; }
    public final void requestPermissions(String[] permissions, int requestCode) {}
    public void startActivityForResult(android.content.Intent intent, int requestCode) {}
    public java.io.File getFilesDir() { return null; }
    public java.io.File getCacheDir() { return null; }
    public java.io.File getExternalFilesDir(String type) { return null; }
    public android.content.pm.PackageManager getPackageManager() { return null; }
    public String getPackageName() { return null; }
    public android.content.res.AssetManager getAssets() { return null; }
    public android.content.ContentResolver getContentResolver() { return null; }
}
