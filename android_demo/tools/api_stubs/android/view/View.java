package android.view;
public class View {
    public View(android.content.Context context) {}
    public void setPadding(int left, int top, int right, int bottom) {}
    public void setOnClickListener(OnClickListener l) {}
    public interface OnClickListener { void onClick(View v); }
    public static final int VISIBLE = 0;
    public static final int GONE = 8;
    public int getVisibility() { return 0; }
    public void setVisibility(int visibility) {}
}
