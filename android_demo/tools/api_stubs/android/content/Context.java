package android.content;
public abstract class Context {
    public abstract java.io.File getFilesDir();
    public abstract java.io.File getCacheDir();
    public abstract java.io.File getExternalFilesDir(String type);
    public abstract android.content.pm.PackageManager getPackageManager();
    public abstract String getPackageName();
    public abstract android.content.res.AssetManager getAssets();
    public abstract ContentResolver getContentResolver();
}
